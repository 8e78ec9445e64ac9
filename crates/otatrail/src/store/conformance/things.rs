//! Conformance of the IoT registry methods: things, thing groups, memberships.

use std::sync::Arc;

use crate::domain::Scope;
use crate::domain::streams::Tag;
use crate::domain::things::{Attributes, Thing, ThingFilter, ThingGroup};
use crate::domain::time::Millis;
use crate::store::{StateTx, Store, StoreError, read, write};

pub(super) async fn run(store: &Arc<dyn Store>) {
    thing_crud(store).await;
    thing_listing_and_filters(store).await;
    groups_and_hierarchy(store).await;
    memberships(store).await;
    registry_scopes_are_isolated(store).await;
}

fn thing(scope: &Scope, name: &str, ty: Option<&str>, attrs: &[(&str, &str)]) -> Thing {
    Thing {
        scope: scope.clone(),
        name: name.to_string(),
        thing_id: format!("id-{}-{}-{name}", scope.account_id, scope.region),
        thing_type_name: ty.map(str::to_string),
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        version: 1,
        created_at: Millis(10),
        updated_at: Millis(10),
    }
}

fn group(scope: &Scope, name: &str, parent: Option<&str>) -> ThingGroup {
    ThingGroup {
        scope: scope.clone(),
        name: name.to_string(),
        group_id: format!("gid-{}-{}-{name}", scope.account_id, scope.region),
        parent: parent.map(str::to_string),
        description: Some(format!("group {name}")),
        attributes: Attributes::from([("site".to_string(), "lab".to_string())]),
        tags: vec![Tag { key: "k".into(), value: Some("v".into()) }],
        version: 1,
        created_at: Millis(20),
        updated_at: Millis(20),
    }
}

async fn w<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl for<'c> FnOnce(&'c mut dyn StateTx) -> futures::future::BoxFuture<'c, Result<T, StoreError>> + Clone + Send + 'static,
) -> Result<T, StoreError> {
    write::<T, StoreError, _>(&**store, f).await
}

async fn r<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl for<'c> FnOnce(&'c mut dyn StateTx) -> futures::future::BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
) -> T {
    read::<T, StoreError, _>(&**store, f).await.unwrap()
}

async fn thing_crud(store: &Arc<dyn Store>) {
    let scope = Scope::new("500000000001", "us-east-1");
    let t = thing(&scope, "crud:1", Some("sensor"), &[("a", "1"), ("b", "x=[y]")]);
    let t2 = t.clone();
    w(store, move |tx| Box::pin(async move { tx.insert_thing(&t2).await })).await.unwrap();
    let t2 = t.clone();
    let dup = w(store, move |tx| Box::pin(async move { tx.insert_thing(&t2).await })).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate thing: {dup:?}");

    let sc = scope.clone();
    let got = r(store, move |tx| Box::pin(async move { tx.get_thing(&sc, "crud:1").await })).await;
    assert_eq!(got, Some(t.clone()));
    let sc = scope.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_thing(&sc, "CRUD:1").await })).await, None, "names are case-sensitive");

    let mut u = t.clone();
    u.thing_type_name = None;
    u.attributes = Attributes::from([("c".to_string(), "3".to_string())]);
    u.version = 2;
    u.updated_at = Millis(11);
    let u2 = u.clone();
    w(store, move |tx| Box::pin(async move { tx.update_thing(&u2).await })).await.unwrap();
    let sc = scope.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_thing(&sc, "crud:1").await })).await, Some(u));

    let sc = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_thing(&sc, "crud:1").await })).await.unwrap());
    let sc = scope.clone();
    assert!(!w(store, move |tx| Box::pin(async move { tx.delete_thing(&sc, "crud:1").await })).await.unwrap());
    let gone = thing(&scope, "crud:1", None, &[]);
    let upd = w(store, move |tx| Box::pin(async move { tx.update_thing(&gone).await })).await;
    assert!(upd.is_err(), "updating a deleted thing: {upd:?}");
}

async fn list_names(store: &Arc<dyn Store>, scope: &Scope, filter: ThingFilter, after: Option<&str>, limit: i64) -> Vec<String> {
    let (sc, after) = (scope.clone(), after.map(str::to_string));
    r(store, move |tx| Box::pin(async move { tx.list_things(&sc, &filter, after.as_deref(), limit).await }))
        .await
        .into_iter()
        .map(|t| t.name)
        .collect()
}

async fn thing_listing_and_filters(store: &Arc<dyn Store>) {
    let scope = Scope::new("500000000002", "eu-west-1");
    let things = [
        thing(&scope, "d", None, &[("color", "red")]),
        thing(&scope, "a", Some("bulb"), &[("color", "redish"), ("w", "60")]),
        thing(&scope, "c", Some("bulb"), &[("color", "blue")]),
        thing(&scope, "b", None, &[]),
        thing(&scope, "e", Some("switch"), &[("w", "60")]),
    ];
    for t in things {
        w(store, move |tx| Box::pin(async move { tx.insert_thing(&t).await })).await.unwrap();
    }
    let all = ThingFilter::default();
    assert_eq!(list_names(store, &scope, all.clone(), None, 10).await, ["a", "b", "c", "d", "e"]);
    assert_eq!(list_names(store, &scope, all.clone(), None, 2).await, ["a", "b"]);
    assert_eq!(list_names(store, &scope, all.clone(), Some("b"), 2).await, ["c", "d"]);
    assert_eq!(list_names(store, &scope, all.clone(), Some("e"), 2).await, Vec::<String>::new());

    let by_type = ThingFilter { thing_type_name: Some("bulb".into()), ..Default::default() };
    assert_eq!(list_names(store, &scope, by_type, None, 10).await, ["a", "c"]);
    let has_attr = ThingFilter { attribute_name: Some("w".into()), ..Default::default() };
    assert_eq!(list_names(store, &scope, has_attr, None, 10).await, ["a", "e"]);
    let exact = ThingFilter { attribute_name: Some("color".into()), attribute_value: Some("red".into()), ..Default::default() };
    assert_eq!(list_names(store, &scope, exact, None, 10).await, ["d"]);
    let prefix = ThingFilter {
        attribute_name: Some("color".into()),
        attribute_value: Some("red".into()),
        value_prefix: true,
        ..Default::default()
    };
    assert_eq!(list_names(store, &scope, prefix, None, 10).await, ["a", "d"]);
    let both = ThingFilter {
        attribute_name: Some("w".into()),
        attribute_value: Some("60".into()),
        thing_type_name: Some("switch".into()),
        ..Default::default()
    };
    assert_eq!(list_names(store, &scope, both, None, 10).await, ["e"]);
    // LIKE wildcards are not wildcards.
    let wild = ThingFilter {
        attribute_name: Some("color".into()),
        attribute_value: Some("%".into()),
        value_prefix: true,
        ..Default::default()
    };
    assert_eq!(list_names(store, &scope, wild, None, 10).await, Vec::<String>::new());
}

async fn groups_and_hierarchy(store: &Arc<dyn Store>) {
    let scope = Scope::new("500000000003", "us-west-2");
    for (n, p) in [("root", None), ("b-child", Some("root")), ("a-child", Some("root")), ("leaf", Some("a-child")), ("other", None)] {
        let g = group(&scope, n, p);
        w(store, move |tx| Box::pin(async move { tx.insert_thing_group(&g).await })).await.unwrap();
    }
    let g = group(&scope, "root", None);
    let dup = w(store, move |tx| Box::pin(async move { tx.insert_thing_group(&g).await })).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate group: {dup:?}");

    let sc = scope.clone();
    let got = r(store, move |tx| Box::pin(async move { tx.get_thing_group(&sc, "leaf").await })).await.unwrap();
    assert_eq!(got, group(&scope, "leaf", Some("a-child")));

    let sc = scope.clone();
    let names: Vec<String> =
        r(store, move |tx| Box::pin(async move { tx.list_thing_groups(&sc).await })).await.into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["a-child", "b-child", "leaf", "other", "root"]);
    let sc = scope.clone();
    let roots: Vec<String> =
        r(store, move |tx| Box::pin(async move { tx.child_thing_groups(&sc, None).await })).await.into_iter().map(|g| g.name).collect();
    assert_eq!(roots, ["other", "root"]);
    let sc = scope.clone();
    let kids: Vec<String> = r(store, move |tx| Box::pin(async move { tx.child_thing_groups(&sc, Some("root")).await }))
        .await
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(kids, ["a-child", "b-child"]);

    let mut u = group(&scope, "other", None);
    u.description = None;
    u.attributes = Attributes::new();
    u.version = 2;
    u.updated_at = Millis(21);
    let u2 = u.clone();
    w(store, move |tx| Box::pin(async move { tx.update_thing_group(&u2).await })).await.unwrap();
    let sc = scope.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_thing_group(&sc, "other").await })).await, Some(u));

    // A group with children is not deleted (the domain refuses first; the store must not
    // leave orphans either way).
    let sc = scope.clone();
    let parent_delete = w(store, move |tx| Box::pin(async move { tx.delete_thing_group(&sc, "a-child").await })).await;
    assert!(parent_delete.is_err(), "deleting a parent group: {parent_delete:?}");
    let sc = scope.clone();
    assert!(r(store, move |tx| Box::pin(async move { tx.get_thing_group(&sc, "a-child").await })).await.is_some());
    let sc = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_thing_group(&sc, "leaf").await })).await.unwrap());
    let sc = scope.clone();
    assert!(!w(store, move |tx| Box::pin(async move { tx.delete_thing_group(&sc, "leaf").await })).await.unwrap());
}

async fn members(store: &Arc<dyn Store>, scope: &Scope, group: &str, recursive: bool, after: Option<&str>, limit: i64) -> Vec<String> {
    let (sc, g, after) = (scope.clone(), group.to_string(), after.map(str::to_string));
    r(store, move |tx| Box::pin(async move { tx.things_in_group(&sc, &g, recursive, after.as_deref(), limit).await })).await
}

async fn groups_of(store: &Arc<dyn Store>, scope: &Scope, thing: &str) -> Vec<String> {
    let (sc, t) = (scope.clone(), thing.to_string());
    r(store, move |tx| Box::pin(async move { tx.groups_of_thing(&sc, &t).await })).await
}

async fn add(store: &Arc<dyn Store>, scope: &Scope, group: &str, thing: &str) -> bool {
    let (sc, g, t) = (scope.clone(), group.to_string(), thing.to_string());
    w(store, move |tx| Box::pin(async move { tx.add_thing_to_group(&sc, &g, &t, Millis(30)).await })).await.unwrap()
}

async fn memberships(store: &Arc<dyn Store>) {
    let scope = Scope::new("500000000004", "ap-south-1");
    for (n, p) in [("fleet", None), ("eu", Some("fleet")), ("de", Some("eu")), ("us", Some("fleet")), ("lab", None)] {
        let g = group(&scope, n, p);
        w(store, move |tx| Box::pin(async move { tx.insert_thing_group(&g).await })).await.unwrap();
    }
    for n in ["t1", "t2", "t3", "t4", "t5"] {
        let t = thing(&scope, n, None, &[]);
        w(store, move |tx| Box::pin(async move { tx.insert_thing(&t).await })).await.unwrap();
    }
    assert!(add(store, &scope, "fleet", "t5").await);
    assert!(add(store, &scope, "eu", "t3").await);
    assert!(add(store, &scope, "de", "t1").await);
    assert!(add(store, &scope, "de", "t2").await);
    assert!(add(store, &scope, "us", "t4").await);
    assert!(add(store, &scope, "lab", "t1").await);
    assert!(!add(store, &scope, "lab", "t1").await, "adding twice reports no change");

    assert_eq!(members(store, &scope, "fleet", false, None, 10).await, ["t5"]);
    assert_eq!(members(store, &scope, "fleet", true, None, 10).await, ["t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(members(store, &scope, "eu", true, None, 10).await, ["t1", "t2", "t3"]);
    assert_eq!(members(store, &scope, "fleet", true, Some("t2"), 2).await, ["t3", "t4"]);
    assert_eq!(members(store, &scope, "nosuch", true, None, 10).await, Vec::<String>::new());
    assert_eq!(groups_of(store, &scope, "t1").await, ["de", "lab"]);

    // A thing in two groups of one subtree is listed once.
    assert!(add(store, &scope, "eu", "t1").await);
    assert_eq!(members(store, &scope, "fleet", true, None, 10).await, ["t1", "t2", "t3", "t4", "t5"]);

    let (sc, g, t) = (scope.clone(), "eu".to_string(), "t1".to_string());
    assert!(w(store, move |tx| Box::pin(async move { tx.remove_thing_from_group(&sc, &g, &t).await })).await.unwrap());
    let (sc, g, t) = (scope.clone(), "eu".to_string(), "t1".to_string());
    assert!(!w(store, move |tx| Box::pin(async move { tx.remove_thing_from_group(&sc, &g, &t).await })).await.unwrap());

    // Deleting a thing or a group removes its memberships.
    let sc = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_thing(&sc, "t1").await })).await.unwrap());
    assert_eq!(members(store, &scope, "lab", true, None, 10).await, Vec::<String>::new());
    assert_eq!(members(store, &scope, "de", false, None, 10).await, ["t2"]);
    let sc = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_thing_group(&sc, "us").await })).await.unwrap());
    assert_eq!(groups_of(store, &scope, "t4").await, Vec::<String>::new());
    let t = thing(&scope, "t1", None, &[]);
    w(store, move |tx| Box::pin(async move { tx.insert_thing(&t).await })).await.unwrap();
    assert_eq!(groups_of(store, &scope, "t1").await, Vec::<String>::new(), "a re-created thing starts in no group");
}

async fn registry_scopes_are_isolated(store: &Arc<dyn Store>) {
    let a = Scope::new("500000000005", "us-east-1");
    let other_region = Scope::new("500000000005", "us-east-2");
    let other_account = Scope::new("500000000006", "us-east-1");
    for sc in [&a, &other_region, &other_account] {
        let (t, g) = (thing(sc, "same", None, &[]), group(sc, "same", None));
        w(store, move |tx| {
            Box::pin(async move {
                tx.insert_thing(&t).await?;
                tx.insert_thing_group(&g).await
            })
        })
        .await
        .unwrap();
    }
    assert!(add(store, &a, "same", "same").await);
    assert_eq!(members(store, &a, "same", true, None, 10).await, ["same"]);
    assert_eq!(members(store, &other_region, "same", true, None, 10).await, Vec::<String>::new());
    assert_eq!(members(store, &other_account, "same", true, None, 10).await, Vec::<String>::new());
    let sc = other_region.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_thing(&sc, "same").await })).await.unwrap());
    let sc = a.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_thing(&sc, "same").await })).await.map(|t| t.scope), Some(a.clone()));
    assert_eq!(groups_of(store, &a, "same").await, ["same"]);
    assert_eq!(list_names(store, &other_account, ThingFilter::default(), None, 10).await, ["same"]);
}
