//! The conformance suite every [`Store`] backend must pass. Backends call [`run`] from their
//! own test with a fresh, empty store.

use std::sync::Arc;

use super::{Store, StoreError, read, write};
use crate::domain::Scope;
use crate::domain::Principal;
use crate::domain::identity::{AccessKeyRecord, Account, IamTag, KeyStatus, Role, SessionRecord, User};
use crate::domain::streams::{Stream, StreamFile, Tag};
use crate::domain::time::Millis;

/// Runs every check against `store`, which must be empty.
pub async fn run(store: Arc<dyn Store>) {
    identities(&store).await;
    roles_and_sessions(&store).await;
    stream_crud(&store).await;
    stream_listing_order_and_keyset(&store).await;
    failed_unit_rolls_back_alone(&store).await;
    concurrent_writers_all_commit(&store).await;
    ota_stream_uses(&store).await;
    scopes_are_isolated(&store).await;
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
