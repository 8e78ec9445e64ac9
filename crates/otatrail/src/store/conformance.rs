//! The conformance suite every [`Store`] backend must pass. Backends call [`run`] from their
//! own test with a fresh, empty store.

use std::sync::Arc;

use super::{Store, StoreError, read, write};
use crate::domain::Scope;
use crate::domain::Principal;
use crate::domain::identity::{AccessKeyRecord, Account, IamTag, KeyStatus, Role, SessionRecord, User};
use crate::domain::streams::{Stream, StreamFile, Tag};
use crate::domain::time::Millis;

mod jobs;
mod ota;
mod things;

/// Runs every check against `store`, which must be empty.
pub async fn run(store: Arc<dyn Store>) {
    identities(&store).await;
    roles_and_sessions(&store).await;
    stream_crud(&store).await;
    stream_listing_order_and_keyset(&store).await;
    failed_unit_rolls_back_alone(&store).await;
    concurrent_writers_all_commit(&store).await;
    appended_records(&store).await;
    regions_with_records(&store).await;
    records_after_a_cursor(&store).await;
    ota_stream_uses(&store).await;
    scopes_are_isolated(&store).await;
    things::run(&store).await;
    jobs::run(&store).await;
    ota::run(&store).await;
    sns(&store).await;
}

fn stream(scope: &Scope, id: &str, t: i64) -> Stream {
    Stream {
        scope: scope.clone(),
        stream_id: id.to_string(),
        description: Some(format!("stream {id}")),
        version: 1,
        files: vec![StreamFile {
            file_id: 0,
            bucket: "fw".into(),
            key: format!("{id}.bin"),
            version: None,
            size: 10,
            sha256: "ab".repeat(32),
        }],
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        tags: vec![Tag { key: "k".into(), value: Some("v".into()) }],
        created_at: Millis(t),
        updated_at: Millis(t),
    }
}

async fn identities(store: &Arc<dyn Store>) {
    let acct = Account { id: "123456789012".into(), created_at: Millis(1) };
    let user = User {
        account_id: acct.id.clone(),
        name: "alice".into(),
        user_id: "AIDAEXAMPLE0000000001".into(),
        path: "/".into(),
        tags: vec![IamTag { key: "team".into(), value: "fw".into() }],
        created_at: Millis(2),
    };
    let key = AccessKeyRecord {
        access_key_id: "AKIAEXAMPLE000000001".into(),
        account_id: acct.id.clone(),
        user_name: Some("alice".into()),
        status: KeyStatus::Active,
        sealed_secret: vec![1, 2, 3, 0, 255],
        created_at: Millis(3),
    };
    let (a, u, k) = (acct.clone(), user.clone(), key.clone());
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.insert_account(&a).await?;
            tx.insert_user(&u).await?;
            tx.insert_access_key(&k).await
        })
    })
    .await
    .expect("insert identities");

    let (a, u, k) = (acct.clone(), user.clone(), key.clone());
    read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            assert_eq!(tx.get_account(&a.id).await?, Some(a.clone()));
            assert_eq!(tx.list_accounts().await?, vec![a.clone()]);
            assert_eq!(tx.get_user(&a.id, "alice").await?, Some(u));
            assert_eq!(tx.get_user(&a.id, "bob").await?, None);
            assert_eq!(tx.get_access_key(&k.access_key_id).await?, Some(k));
            assert_eq!(tx.get_access_key("AKIANOSUCHKEY0000000").await?, None);
            assert_eq!(tx.list_access_keys(&a.id, Some("alice")).await?.len(), 1);
            assert_eq!(tx.list_access_keys(&a.id, None).await?.len(), 0);
            Ok(())
        })
    })
    .await
    .expect("read identities");

    // Duplicate primary keys are refused as conflicts.
    let a = acct.clone();
    let dup = write::<(), StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_account(&a).await })).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate account: {dup:?}");

    let id = key.access_key_id.clone();
    let changed = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { tx.set_access_key_status(&id, KeyStatus::Inactive).await })
    })
    .await
    .unwrap();
    assert!(changed);
    let id = key.access_key_id.clone();
    let k = read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.get_access_key(&id).await }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.status, KeyStatus::Inactive);
}

async fn stream_crud(store: &Arc<dyn Store>) {
    let scope = Scope::new("123456789012", "us-east-1");
    let s = stream(&scope, "crud", 100);
    let s2 = s.clone();
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s2).await }))
        .await
        .unwrap();

    let s2 = s.clone();
    let dup = write::<(), StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s2).await })).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate stream: {dup:?}");

    let mut updated = s.clone();
    updated.version = 2;
    updated.description = None;
    updated.files[0].size = 99;
    updated.updated_at = Millis(200);
    let u2 = updated.clone();
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.update_stream(&u2).await }))
        .await
        .unwrap();
    let sc = scope.clone();
    let got = read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.get_stream(&sc, "crud").await }))
        .await
        .unwrap();
    assert_eq!(got, Some(updated));

    let sc = scope.clone();
    let deleted =
        write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.delete_stream(&sc, "crud").await }))
            .await
            .unwrap();
    assert!(deleted);
    let sc = scope.clone();
    let again =
        write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.delete_stream(&sc, "crud").await }))
            .await
            .unwrap();
    assert!(!again);
}

async fn list_ids(store: &Arc<dyn Store>, scope: &Scope, after: Option<i64>, asc: bool, limit: i64) -> Vec<(i64, String)> {
    let sc = scope.clone();
    read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { tx.list_streams(&sc, after, asc, limit).await })
    })
    .await
    .unwrap()
    .into_iter()
    .map(|(seq, s)| (seq, s.stream_id))
    .collect()
}

async fn stream_listing_order_and_keyset(store: &Arc<dyn Store>) {
    let scope = Scope::new("210987654321", "eu-west-1");
    for i in 0..5 {
        let s = stream(&scope, &format!("list-{i}"), 1000 + i);
        write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s).await }))
            .await
            .unwrap();
    }
    let asc = list_ids(store, &scope, None, true, 10).await;
    let names: Vec<_> = asc.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["list-0", "list-1", "list-2", "list-3", "list-4"]);
    let desc = list_ids(store, &scope, None, false, 10).await;
    let names: Vec<_> = desc.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["list-4", "list-3", "list-2", "list-1", "list-0"]);

    // Keyset paging survives a delete of the anchor and an insert between pages.
    let page1 = list_ids(store, &scope, None, true, 2).await;
    assert_eq!(page1.len(), 2);
    let anchor = page1[1].0;
    let sc = scope.clone();
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.delete_stream(&sc, "list-1").await }))
        .await
        .unwrap();
    let s = stream(&scope, "list-5", 2000);
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s).await }))
        .await
        .unwrap();
    let rest = list_ids(store, &scope, Some(anchor), true, 10).await;
    let names: Vec<_> = rest.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["list-2", "list-3", "list-4", "list-5"]);
}

async fn failed_unit_rolls_back_alone(store: &Arc<dyn Store>) {
    let scope = Scope::new("333333333333", "us-west-2");
    // Submit a failing and a succeeding unit at once, so a batching backend commits them
    // together: the failure must not take the success down, nor keep its own writes.
    let bad = stream(&scope, "rolled-back", 1);
    let good = stream(&scope, "kept", 2);
    let s1 = store.clone();
    let s2 = store.clone();
    let failing = tokio::spawn(async move {
        write::<(), StoreError, _>(&*s1, move |tx| {
            Box::pin(async move {
                tx.insert_stream(&bad).await?;
                Err(StoreError::Conflict("domain said no".into()))
            })
        })
        .await
    });
    let succeeding = tokio::spawn(async move {
        write::<_, StoreError, _>(&*s2, move |tx| Box::pin(async move { tx.insert_stream(&good).await })).await
    });
    let f = failing.await.unwrap();
    assert!(matches!(&f, Err(StoreError::Conflict(m)) if m == "domain said no"), "{f:?}");
    succeeding.await.unwrap().unwrap();
    let ids = list_ids(store, &scope, None, true, 10).await;
    let names: Vec<_> = ids.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["kept"]);
}

async fn concurrent_writers_all_commit(store: &Arc<dyn Store>) {
    let scope = Scope::new("444444444444", "us-east-1");
    let mut handles = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let s = stream(&scope, &format!("c-{i:03}"), i);
        handles.push(tokio::spawn(async move {
            write::<_, StoreError, _>(&*store, move |tx| Box::pin(async move { tx.insert_stream(&s).await })).await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(list_ids(store, &scope, None, true, 1000).await.len(), 200);
}

async fn ota_stream_uses(store: &Arc<dyn Store>) {
    let scope = Scope::new("555555555555", "us-east-1");
    let sc = scope.clone();
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.add_ota_stream_use(&sc, "ota-b", "s1").await?;
            tx.add_ota_stream_use(&sc, "ota-a", "s1").await?;
            tx.add_ota_stream_use(&sc, "ota-a", "s1").await
        })
    })
    .await
    .unwrap();
    let sc = scope.clone();
    let users = read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { Ok((tx.ota_updates_using_stream(&sc, "s1").await?, tx.ota_updates_using_stream(&sc, "s2").await?)) })
    })
    .await
    .unwrap();
    assert_eq!(users, (vec!["ota-a".to_string(), "ota-b".to_string()], vec![]));
}

async fn scopes_are_isolated(store: &Arc<dyn Store>) {
    let a = Scope::new("666666666666", "us-east-1");
    let b = Scope::new("666666666666", "eu-central-1");
    let c = Scope::new("777777777777", "us-east-1");
    let s = stream(&a, "same-name", 1);
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s).await }))
        .await
        .unwrap();
    for other in [b, c] {
        let s = stream(&other, "same-name", 1);
        let o = other.clone();
        write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_stream(&s).await }))
            .await
            .unwrap();
        assert_eq!(list_ids(store, &o, None, true, 10).await.len(), 1);
    }
}

async fn roles_and_sessions(store: &Arc<dyn Store>) {
    let acct = "888888888888";
    let role = |name: &str, n: i64| Role {
        account_id: acct.into(),
        name: name.into(),
        role_id: format!("AROAEXAMPLE0000000{n:03}"),
        path: "/service-role/".into(),
        description: Some("ota".into()),
        assume_role_policy: "{}".into(),
        max_session_duration: 3600,
        tags: vec![],
        created_at: Millis(n),
    };
    let (r1, r2) = (role("Beta", 1), role("alpha", 2));
    let a = Account { id: acct.into(), created_at: Millis(0) };
    let (c1, c2) = (r1.clone(), r2.clone());
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.insert_account(&a).await?;
            tx.insert_role(&c1).await?;
            tx.insert_role(&c2).await
        })
    })
    .await
    .unwrap();

    // Names are unique without regard to case, and found without regard to case.
    let mut clash = role("BETA", 3);
    clash.role_id = "AROAEXAMPLE0000000999".into();
    let dup = write::<(), StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_role(&clash).await })).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let mut changed = r1.clone();
    changed.assume_role_policy = "{\"Statement\":[]}".into();
    changed.tags = vec![IamTag { key: "k".into(), value: "v".into() }];
    let c = changed.clone();
    let got = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            assert!(tx.update_role(&c).await?);
            let found = tx.get_role(acct, "beta").await?;
            let listed = tx.list_roles(acct, None, 10).await?;
            let after = tx.list_roles(acct, Some("alpha"), 10).await?;
            Ok((found, listed, after))
        })
    })
    .await
    .unwrap();
    assert_eq!(got.0, Some(changed.clone()));
    assert_eq!(got.1.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["alpha", "Beta"]);
    assert_eq!(got.2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["Beta"]);

    let session = SessionRecord {
        access_key_id: "ASIAEXAMPLE000000001".into(),
        account_id: acct.into(),
        sealed_secret: vec![9, 9],
        token_sha256: "00".repeat(32),
        principal: Principal::root(acct, "ASIAEXAMPLE000000001"),
        expires_at: Millis(1_000),
        created_at: Millis(10),
    };
    let (s1, mut s2) = (session.clone(), session.clone());
    s2.access_key_id = "ASIAEXAMPLE000000002".into();
    s2.expires_at = Millis(5_000);
    let out = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.insert_session(&s1).await?;
            tx.insert_session(&s2).await?;
            let removed = tx.delete_expired_sessions(Millis(2_000)).await?;
            Ok((removed, tx.get_session("ASIAEXAMPLE000000001").await?, tx.get_session("ASIAEXAMPLE000000002").await?))
        })
    })
    .await
    .unwrap();
    assert_eq!(out.0, 1);
    assert_eq!(out.1, None);
    assert_eq!(out.2.map(|s| s.principal), Some(session.principal));

    let deleted = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { Ok((tx.delete_role(acct, "ALPHA").await?, tx.get_role(acct, "alpha").await?)) })
    })
    .await
    .unwrap();
    assert_eq!(deleted, (true, None));
}

fn sns_topic(account: &str, region: &str, name: &str) -> crate::domain::sns::Topic {
    crate::domain::sns::Topic {
        account_id: account.into(),
        region: region.into(),
        name: name.into(),
        attributes: std::collections::BTreeMap::from([("DisplayName".to_string(), format!("topic {name}"))]),
        tags: vec![crate::domain::sns::SnsTag { key: "k".into(), value: "v".into() }],
        subscriptions_deleted: 0,
        created_at: Millis(1),
    }
}

fn sns_subscription(topic_arn: &str, n: u32, owner: &str, confirmed: bool) -> crate::domain::sns::Subscription {
    crate::domain::sns::Subscription {
        arn: format!("{topic_arn}:00000000-0000-4000-8000-{n:012}"),
        topic_arn: topic_arn.into(),
        owner: owner.into(),
        region: "us-east-1".into(),
        protocol: "http".into(),
        endpoint: format!("http://127.0.0.1:9/{n}"),
        token_sha256: format!("{n:064}"),
        token_expires_at: Millis(1000 + n as i64),
        confirmed,
        authenticate_on_unsubscribe: false,
        created_at: Millis(n as i64),
    }
}

fn sns_delivery(sub: &crate::domain::sns::Subscription, next: i64) -> crate::domain::sns::Delivery {
    crate::domain::sns::Delivery {
        id: 0,
        region: sub.region.clone(),
        account_id: "121212121212".into(),
        topic_arn: sub.topic_arn.clone(),
        subscription_arn: sub.arn.clone(),
        endpoint: sub.endpoint.clone(),
        message_type: "Notification".into(),
        message_id: format!("m-{next}"),
        sealed_body: vec![0, 1, 2, 255],
        attempts: 0,
        next_attempt_at: Millis(next),
        created_at: Millis(next),
    }
}

/// SNS topics (scoped, paged by name, cascading deletes), subscriptions (lookups, paging by
/// ARN, counts, expiry), deliveries (due order, rescheduling) and signing certificates.
async fn sns(store: &Arc<dyn Store>) {
    use crate::domain::sns::SigningCert;
    let acct = "121212121212";
    let topics: Vec<_> = ["b", "a", "c"].iter().map(|n| sns_topic(acct, "us-east-1", n)).collect();
    let other_region = sns_topic(acct, "eu-west-1", "a");
    let (t, o) = (topics.clone(), other_region.clone());
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            for topic in &t {
                tx.insert_sns_topic(topic).await?;
            }
            tx.insert_sns_topic(&o).await
        })
    })
    .await
    .unwrap();
    let dup = topics[0].clone();
    let r = write::<(), StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_sns_topic(&dup).await })).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");

    let mut changed = topics[1].clone();
    changed.attributes.insert("Policy".into(), "{}".into());
    changed.subscriptions_deleted = 3;
    let c = changed.clone();
    let (got, page1, page2, missing) = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            assert!(tx.update_sns_topic(&c).await?);
            Ok((
                tx.get_sns_topic(acct, "us-east-1", "a").await?,
                tx.list_sns_topics(acct, "us-east-1", None, 2).await?,
                tx.list_sns_topics(acct, "us-east-1", Some("b"), 2).await?,
                tx.get_sns_topic(acct, "ap-south-1", "a").await?,
            ))
        })
    })
    .await
    .unwrap();
    assert_eq!(got, Some(changed));
    assert_eq!(page1.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(page2.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["c"]);
    assert_eq!(missing, None);

    // Subscriptions of topic "a" (one by another account) and one of topic "b".
    let a_arn = topics[1].arn();
    let b_arn = topics[0].arn();
    let subs = vec![
        sns_subscription(&a_arn, 2, acct, true),
        sns_subscription(&a_arn, 1, acct, false),
        sns_subscription(&a_arn, 3, "343434343434", false),
        sns_subscription(&b_arn, 4, acct, true),
    ];
    let s = subs.clone();
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            for sub in &s {
                tx.insert_sns_subscription(sub).await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    let (a, s) = (a_arn.clone(), subs.clone());
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            assert_eq!(tx.get_sns_subscription(&s[0].arn).await?, Some(s[0].clone()));
            assert_eq!(tx.find_sns_subscription(&a, "http", "http://127.0.0.1:9/1").await?, Some(s[1].clone()));
            assert_eq!(tx.find_sns_subscription(&a, "https", "http://127.0.0.1:9/1").await?, None);
            assert_eq!(tx.find_sns_subscription_by_token(&a, &format!("{:064}", 3)).await?, Some(s[2].clone()));
            assert_eq!(tx.find_sns_subscription_by_token(&a, &format!("{:064}", 4)).await?, None);
            let by_topic = tx.list_sns_subscriptions_by_topic(&a, None, 2).await?;
            assert_eq!(by_topic, vec![s[1].clone(), s[0].clone()]);
            let rest = tx.list_sns_subscriptions_by_topic(&a, Some(&s[0].arn), 10).await?;
            assert_eq!(rest, vec![s[2].clone()]);
            let mine = tx.list_sns_subscriptions_by_owner(acct, "us-east-1", None, 10).await?;
            assert_eq!(mine.len(), 3);
            assert!(tx.list_sns_subscriptions_by_owner(acct, "eu-west-1", None, 10).await?.is_empty());
            assert_eq!(tx.count_sns_subscriptions(&a).await?, (1, 2));
            assert_eq!(tx.count_sns_subscriptions("arn:aws:sns:us-east-1:121212121212:none").await?, (0, 0));
            let mut confirmed = s[1].clone();
            confirmed.confirmed = true;
            confirmed.authenticate_on_unsubscribe = true;
            confirmed.token_sha256 = "f".repeat(64);
            assert!(tx.update_sns_subscription(&confirmed).await?);
            assert_eq!(tx.get_sns_subscription(&confirmed.arn).await?, Some(confirmed));
            assert_eq!(tx.count_sns_subscriptions(&a).await?, (2, 1));
            Ok(())
        })
    })
    .await
    .unwrap();

    // Deliveries: due ones soonest first; rescheduled ones wait; deleting a subscription drops
    // its deliveries.
    let ds = vec![sns_delivery(&subs[0], 30), sns_delivery(&subs[2], 10), sns_delivery(&subs[3], 20), sns_delivery(&subs[0], 500)];
    let d = ds.clone();
    let ids = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            let mut ids = Vec::new();
            for x in &d {
                ids.push(tx.insert_sns_delivery(x).await?);
            }
            Ok(ids)
        })
    })
    .await
    .unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (due, next) = read::<_, StoreError, _>(&**store, |tx| {
        Box::pin(async move { Ok((tx.due_sns_deliveries(Millis(100), 10).await?, tx.next_sns_delivery_at().await?)) })
    })
    .await
    .unwrap();
    assert_eq!(due.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["m-10", "m-20", "m-30"]);
    assert_eq!(due[0].id, ids[1]);
    assert_eq!(due[0].sealed_body, vec![0, 1, 2, 255]);
    assert_eq!(next, Some(Millis(10)));
    let first = ids[1];
    let sub2 = subs[2].arn.clone();
    let (due, next) = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            assert!(tx.reschedule_sns_delivery(first, 1, Millis(1000)).await?);
            assert!(tx.delete_sns_delivery(ids[2]).await?);
            assert!(!tx.delete_sns_delivery(ids[2]).await?);
            assert!(!tx.reschedule_sns_delivery(ids[2], 1, Millis(1)).await?);
            let due = tx.due_sns_deliveries(Millis(1000), 10).await?;
            assert!(tx.delete_sns_subscription(&sub2).await?);
            assert!(!tx.delete_sns_subscription(&sub2).await?);
            Ok((due, tx.due_sns_deliveries(Millis(1000), 10).await?))
        })
    })
    .await
    .unwrap();
    assert_eq!(due.iter().map(|d| (d.message_id.as_str(), d.attempts)).collect::<Vec<_>>(), [("m-30", 0), ("m-500", 0), ("m-10", 1)]);
    assert_eq!(next.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["m-30", "m-500"]);

    // Expired pending subscriptions go, with their deliveries; confirmed ones stay.
    let (a, b) = (a_arn.clone(), b_arn.clone());
    let (expired, left, a_after, b_after) = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            let expired = tx.delete_expired_sns_subscriptions(Millis(5000)).await?;
            let left = tx.count_sns_subscriptions(&a).await?;
            // Deleting a topic takes its subscriptions and their deliveries along.
            assert!(tx.delete_sns_topic(acct, "us-east-1", "a").await?);
            assert!(!tx.delete_sns_topic(acct, "us-east-1", "a").await?);
            Ok((expired, left, tx.list_sns_subscriptions_by_topic(&a, None, 10).await?, tx.count_sns_subscriptions(&b).await?))
        })
    })
    .await
    .unwrap();
    assert!(expired.is_empty(), "only unconfirmed subscriptions expire: {expired:?}");
    assert_eq!(left, (2, 0));
    assert!(a_after.is_empty());
    assert_eq!(b_after, (1, 0));
    let due = read::<_, StoreError, _>(&**store, |tx| Box::pin(async move { tx.due_sns_deliveries(Millis(i64::MAX), 10).await }))
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");
    let mut pending = sns_subscription(&b_arn, 5, acct, false);
    pending.token_expires_at = Millis(10);
    let p = pending.clone();
    let expired = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.insert_sns_subscription(&p).await?;
            tx.insert_sns_delivery(&sns_delivery(&p, 1)).await?;
            tx.delete_expired_sns_subscriptions(Millis(11)).await
        })
    })
    .await
    .unwrap();
    assert_eq!(expired, vec![pending]);
    assert_eq!(read::<_, StoreError, _>(&**store, |tx| Box::pin(async move { tx.next_sns_delivery_at().await })).await.unwrap(), None);

    // One signing certificate per region, found by region or fingerprint.
    let cert = SigningCert { region: "us-east-1".into(), fingerprint: "ab".repeat(16), cert_der: vec![48, 3], sealed_private: vec![7; 40], created_at: Millis(9) };
    let c = cert.clone();
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_sns_signing_cert(&c).await })).await.unwrap();
    let mut second = cert.clone();
    second.fingerprint = "cd".repeat(16);
    let r = write::<(), StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_sns_signing_cert(&second).await })).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let fp = cert.fingerprint.clone();
    let got = read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            Ok((tx.sns_signing_cert("us-east-1").await?, tx.sns_signing_cert_by_fingerprint(&fp).await?, tx.sns_signing_cert("eu-west-1").await?))
        })
    })
    .await
    .unwrap();
    assert_eq!(got, (Some(cert.clone()), Some(cert), None));
}

pub(crate) fn record(id: &str, t: i64, name: &str, resources: &[(&str, &str)]) -> crate::domain::audit::AuditEvent {
    crate::domain::audit::AuditEvent {
        event_id: id.to_string(),
        event_time: Millis(t),
        recipient_account_id: "555555555555".into(),
        region: "eu-west-1".into(),
        event_source: "iot.amazonaws.com".into(),
        event_name: name.into(),
        read_only: true,
        username: Some("root".into()),
        access_key_id: "AKIAEXAMPLE".into(),
        resources: resources
            .iter()
            .map(|(ty, arn)| crate::domain::audit::Resource { arn: arn.to_string(), account_id: "555555555555".into(), resource_type: ty.to_string() })
            .collect(),
        record: format!("{{\"eventID\":\"{id}\"}}"),
    }
}

/// Records appended on their own ([`Store::append`]), many at once: all are kept with their
/// resources in commit order, a duplicate event ID fails alone, and a resource lookup returns
/// an event with two matching resources once.
async fn appended_records(store: &Arc<dyn Store>) {
    use super::{EventQuery, LookupKey};
    let mut handles = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        let ev = record(&format!("ev-{i:03}"), 1_000 + i, if i % 2 == 0 { "DescribeStream" } else { "ListStreams" }, &[("AWS::IoT::Stream", "arn:s/a"), ("AWS::IoT::Thing", "arn:s/a")]);
        handles.push(tokio::spawn(async move { store.append(ev).await }));
    }
    // A duplicate of a committed ID, sent while others are in flight.
    for h in handles.drain(..150) {
        h.await.unwrap().unwrap();
    }
    let dup = {
        let store = store.clone();
        tokio::spawn(async move { store.append(record("ev-000", 5, "Dup", &[])).await })
    };
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert!(dup.await.unwrap().is_err(), "a duplicate event ID must be refused");
    let q = |attribute: Option<(LookupKey, String)>, limit: i64| EventQuery {
        account_id: "555555555555".into(),
        region: "eu-west-1".into(),
        attribute,
        start: None,
        end: None,
        before: None,
        limit,
    };
    let all = read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.lookup_events(&q(None, 1000)).await })).await.unwrap();
    assert_eq!(all.len(), 300, "every appended record is kept, the duplicate is not");
    assert!(all.iter().all(|e| e.event_name != "Dup"));
    assert!(all.windows(2).all(|w| w[0].event_time > w[1].event_time), "newest first");
    let both = [("AWS::IoT::Stream", "arn:s/a"), ("AWS::IoT::Thing", "arn:s/a")].map(|(t, n)| (t.to_string(), n.to_string()));
    assert!(all.iter().all(|e| e.resources == both), "resources are kept with their events, in order");
    let by_resource = read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { tx.lookup_events(&q(Some((LookupKey::ResourceName, "arn:s/a".into())), 1000)).await })
    })
    .await
    .unwrap();
    assert_eq!(by_resource.len(), 300, "an event with two matching resources is returned once");
    let names = read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move { tx.lookup_events(&q(Some((LookupKey::EventName, "ListStreams".into())), 1000)).await })
    })
    .await
    .unwrap();
    assert_eq!(names.len(), 150);
}

/// Delivery's read: a lane's records after a cursor, oldest first, at most `limit`, every
/// field as appended (resources are not read back), none of another lane's.
async fn records_after_a_cursor(store: &Arc<dyn Store>) {
    let (account, region) = ("454545454545", "sa-east-1");
    for (i, (acct, r)) in [(account, region), (account, "us-east-2"), ("565656565656", region), (account, region), (account, region)].into_iter().enumerate() {
        let mut ev = record(&format!("since-ev-{i}"), 2_000 + i as i64, if i % 2 == 0 { "CreateThing" } else { "DescribeThing" }, &[("AWS::IoT::Thing", "arn:t")]);
        ev.recipient_account_id = acct.into();
        ev.region = r.into();
        ev.read_only = i % 2 == 1;
        ev.username = (i != 3).then(|| format!("user-{i}"));
        store.append(ev).await.unwrap();
    }
    let since = |after: i64, limit: i64| {
        read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.events_since(account, region, after, limit).await }))
    };
    let all = since(0, 100).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["since-ev-0", "since-ev-3", "since-ev-4"], "the lane's records only, in commit order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let third = &all[1];
    assert_eq!(
        (third.event_time, third.event_name.as_str(), third.event_source.as_str(), third.read_only, third.username.as_deref(), third.access_key_id.as_deref()),
        (Millis(2_003), "DescribeThing", "iot.amazonaws.com", true, None, Some("AKIAEXAMPLE"))
    );
    assert_eq!(all[0].username.as_deref(), Some("user-0"));
    assert_eq!(all[2].record, "{\"eventID\":\"since-ev-4\"}");
    let after_first = since(all[0].seq, 1).await.unwrap();
    assert_eq!(after_first.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["since-ev-3"], "after the cursor, at most the limit");
    assert!(since(all[2].seq, 10).await.unwrap().is_empty());
}

/// The regions an account has records in: each once, in order, none of another account's.
async fn regions_with_records(store: &Arc<dyn Store>) {
    let account = "666666666666";
    for (i, (acct, region)) in
        [(account, "us-west-2"), (account, "ap-south-1"), ("777777777777", "af-south-1"), (account, "us-west-2"), (account, "eu-north-1")]
            .into_iter()
            .enumerate()
    {
        let mut ev = record(&format!("region-ev-{i}"), 1_000 + i as i64, "DescribeStream", &[]);
        ev.recipient_account_id = acct.into();
        ev.region = region.into();
        store.append(ev).await.unwrap();
    }
    let regions = read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.event_regions(account).await })).await.unwrap();
    assert_eq!(regions, ["ap-south-1", "eu-north-1", "us-west-2"]);
    let none = read::<_, StoreError, _>(&**store, |tx| Box::pin(async move { tx.event_regions("888888888888").await })).await.unwrap();
    assert!(none.is_empty());
}
