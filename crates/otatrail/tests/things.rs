//! The registry queries the jobs engine builds on (`App::thing_exists`,
//! `App::thing_group_exists`, `App::things_in_group_recursive`), in-process.

use std::sync::Arc;

use otatrail::app::App;
use otatrail::app::audit::Call;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use otatrail::domain::things::{CreateThingBody, CreateThingGroupBody, MembershipBody};
use otatrail::domain::{Principal, Scope};

const ACCOUNT: &str = "111122223333";

fn root() -> Principal {
    Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1")
}

fn call(app: &App, region: &str, name: &str) -> Arc<Call> {
    Arc::new(Call::internal(root(), region, "iot.amazonaws.com", name, false, app.clock.now()))
}

#[tokio::test]
async fn job_target_queries() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let config = ServerConfig::merge(&args, FileConfig::default()).unwrap();
    let app = App::open(&config).await.unwrap();
    let scope = Scope::new(ACCOUNT, "us-east-1");

    // fleet ─┬─ eu ── de
    //        └─ us
    for (g, parent) in [("fleet", None), ("eu", Some("fleet")), ("de", Some("eu")), ("us", Some("fleet"))] {
        let body = CreateThingGroupBody { parent_group_name: parent.map(Into::into), ..Default::default() };
        app.create_thing_group(&call(&app, "us-east-1", "CreateThingGroup"), g, &body).await.unwrap();
    }
    for (t, g) in [("t-de-2", "de"), ("t-de-1", "de"), ("t-eu", "eu"), ("t-us", "us"), ("t-fleet", "fleet")] {
        app.create_thing(&call(&app, "us-east-1", "CreateThing"), t, &CreateThingBody::default()).await.unwrap();
        let m = MembershipBody { thing_group_name: Some(g.into()), thing_name: Some(t.into()), ..Default::default() };
        app.change_thing_group_membership(&call(&app, "us-east-1", "AddThingToThingGroup"), &m, true).await.unwrap();
    }
    app.create_thing(&call(&app, "us-east-1", "CreateThing"), "loner", &CreateThingBody::default()).await.unwrap();

    assert!(app.thing_exists(&scope, "loner").await.unwrap());
    assert!(!app.thing_exists(&scope, "nosuch").await.unwrap());
    assert!(app.thing_group_exists(&scope, "de").await.unwrap());
    assert!(!app.thing_group_exists(&scope, "nosuch").await.unwrap());

    let all = app.things_in_group_recursive(&scope, "fleet").await.unwrap();
    assert_eq!(all, ["t-de-1", "t-de-2", "t-eu", "t-fleet", "t-us"]);
    assert_eq!(app.things_in_group_recursive(&scope, "eu").await.unwrap(), ["t-de-1", "t-de-2", "t-eu"]);
    assert_eq!(app.things_in_group_recursive(&scope, "us").await.unwrap(), ["t-us"]);
    let missing = app.things_in_group_recursive(&scope, "nosuch").await.unwrap_err();
    assert_eq!(missing.code, "ResourceNotFoundException");

    // Another region of the same account sees none of it.
    let west = Scope::new(ACCOUNT, "eu-west-1");
    assert!(!app.thing_exists(&west, "loner").await.unwrap());
    assert!(!app.thing_group_exists(&west, "fleet").await.unwrap());

    // More things than one store batch (1000), all returned once.
    app.create_thing_group(&call(&app, "eu-west-1", "CreateThingGroup"), "big", &CreateThingGroupBody::default())
        .await
        .unwrap();
    for i in 0..1005 {
        let t = format!("dev-{i:04}");
        app.create_thing(&call(&app, "eu-west-1", "CreateThing"), &t, &CreateThingBody::default()).await.unwrap();
        let m = MembershipBody { thing_group_name: Some("big".into()), thing_name: Some(t), ..Default::default() };
        app.change_thing_group_membership(&call(&app, "eu-west-1", "AddThingToThingGroup"), &m, true).await.unwrap();
    }
    let big = app.things_in_group_recursive(&west, "big").await.unwrap();
    assert_eq!(big.len(), 1005);
    assert!(big.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
}
