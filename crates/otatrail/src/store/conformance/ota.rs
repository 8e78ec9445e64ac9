//! Conformance of the OTA update methods: CRUD, listing order and filter, what the state
//! machine resumes, and the stream uses an update's removal releases.

use std::sync::Arc;

use crate::domain::Scope;
use crate::domain::ota::{CreateOtaUpdateBody, ErrorInfo, OtaSpec, OtaStatus, OtaUpdate};
use crate::domain::time::Millis;
use crate::store::{Store, StoreError, read, write};

pub(super) async fn run(store: &Arc<dyn Store>) {
    ota_crud_listing_and_unfinished(store).await;
    unfinished_updates_stop_at_a_bound(store).await;
}

/// What the state machine's pass relies on: a bound taken before an update is inserted keeps
/// that update out of the pass, and a removed update's sequence is not handed out again.
async fn unfinished_updates_stop_at_a_bound(store: &Arc<dyn Store>) {
    let sc = Scope::new("555566667777", "ap-south-1");
    let insert = |u: OtaUpdate| {
        write::<_, StoreError, _>(&**store, move |tx| {
            Box::pin(async move {
                tx.insert_ota_update(&u).await?;
                tx.newest_ota_update_seq().await
            })
        })
    };
    let newest = || read::<_, StoreError, _>(&**store, |tx| Box::pin(async move { tx.newest_ota_update_seq().await }));
    let unfinished = |after: i64, through: i64| {
        read::<_, StoreError, _>(&**store, move |tx| {
            Box::pin(async move {
                Ok(tx.unfinished_ota_updates(after, through, 100).await?.into_iter().map(|(s, u)| (s, u.ota_update_id)).collect::<Vec<_>>())
            })
        })
    };
    let start = newest().await.unwrap();
    let e = insert(update(&sc, "bound-e", OtaStatus::CreatePending, 10)).await.unwrap();
    assert!(e > start, "{e} after {start}");
    let bound = newest().await.unwrap();
    assert_eq!(bound, e);
    let f = insert(update(&sc, "bound-f", OtaStatus::CreateInProgress, 11)).await.unwrap();
    assert!(f > bound);
    assert_eq!(unfinished(start, bound).await.unwrap(), vec![(e, "bound-e".to_string())], "the bound keeps bound-f out");
    assert_eq!(unfinished(start, f).await.unwrap(), vec![(e, "bound-e".to_string()), (f, "bound-f".to_string())]);
    assert_eq!(unfinished(bound, f).await.unwrap(), vec![(f, "bound-f".to_string())]);

    // The newest one removed and another inserted: a new sequence, above everything before.
    let sc2 = sc.clone();
    write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.delete_ota_update(&sc2, "bound-f").await })).await.unwrap();
    let g = insert(update(&sc, "bound-g", OtaStatus::CreatePending, 12)).await.unwrap();
    assert!(g > f, "{g} after the removed {f}");
    assert_eq!(unfinished(start, f).await.unwrap(), vec![(e, "bound-e".to_string())]);
}

fn update(scope: &Scope, id: &str, status: OtaStatus, t: i64) -> OtaUpdate {
    OtaUpdate {
        scope: scope.clone(),
        ota_update_id: id.to_string(),
        status,
        spec: OtaSpec {
            request: CreateOtaUpdateBody { description: Some(format!("update {id}")), targets: Some(vec!["t".into()]), ..Default::default() },
            ..Default::default()
        },
        created_at: Millis(t),
        updated_at: Millis(t),
    }
}

async fn ota_crud_listing_and_unfinished(store: &Arc<dyn Store>) {
    let sc = Scope::new("555566667777", "eu-west-1");
    let other = Scope::new("555566667777", "eu-central-1");
    let (a, b, c) = (
        update(&sc, "ota-a", OtaStatus::CreatePending, 1),
        update(&sc, "ota-b", OtaStatus::CreateComplete, 2),
        update(&sc, "ota-c", OtaStatus::DeleteInProgress, 3),
    );
    let d = update(&other, "ota-a", OtaStatus::CreateInProgress, 4);
    let rows = vec![a.clone(), b.clone(), c.clone(), d.clone()];
    write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            for u in &rows {
                tx.insert_ota_update(u).await?;
            }
            tx.add_ota_stream_use(&rows[0].scope, "ota-a", "AFR_OTA-s").await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    let dup = a.clone();
    let e = write::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.insert_ota_update(&dup).await })).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");

    let (sc2, a2) = (sc.clone(), a.clone());
    let (got, all, done, page2, unfinished) = read::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            let got = tx.get_ota_update(&sc2, "ota-a").await?;
            let all = tx.list_ota_updates(&sc2, None, None, 10).await?;
            let done = tx.list_ota_updates(&sc2, Some(OtaStatus::CreateComplete), None, 10).await?;
            let page2 = tx.list_ota_updates(&sc2, None, Some(all[0].0), 1).await?;
            let _ = a2;
            let mut unfinished = Vec::new();
            // Page by page, one at a time: each update once.
            let (mut after, newest) = (0, tx.newest_ota_update_seq().await?);
            while let Some((seq, u)) = tx.unfinished_ota_updates(after, newest, 1).await?.pop() {
                after = seq;
                unfinished.push(u);
            }
            assert_eq!(tx.unfinished_ota_updates(0, newest, 10).await?.len(), unfinished.len());
            assert_eq!(tx.unfinished_ota_updates(0, i64::MAX, 10).await?.len(), unfinished.len());
            Ok((got, all, done, page2, unfinished))
        })
    })
    .await
    .unwrap();
    assert_eq!(got.as_ref(), Some(&a));
    let ids = |v: &[(i64, OtaUpdate)]| v.iter().map(|(_, u)| u.ota_update_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&all), ["ota-c", "ota-b", "ota-a"], "newest first, one scope");
    assert_eq!(ids(&done), ["ota-b"]);
    assert_eq!(ids(&page2), ["ota-b"]);
    let un: Vec<(String, String)> = unfinished.iter().map(|u| (u.scope.region.clone(), u.ota_update_id.clone())).collect();
    assert!(un.contains(&("eu-west-1".into(), "ota-a".into())) && un.contains(&("eu-west-1".into(), "ota-c".into())));
    assert!(un.contains(&("eu-central-1".into(), "ota-a".into())));
    assert!(!un.iter().any(|(_, id)| id == "ota-b"));
    assert_eq!(un.len(), 3, "{un:?}");

    // Update, then delete: the stream use goes with the update.
    let mut changed = a.clone();
    changed.status = OtaStatus::CreateFailed;
    changed.spec.error_info = Some(ErrorInfo { code: "InvalidRequestException".into(), message: "why".into() });
    changed.spec.progress.job_requested = true;
    changed.updated_at = Millis(9);
    let (sc3, ch) = (sc.clone(), changed.clone());
    let (after, uses, removed, again, gone) = write::<_, StoreError, _>(&**store, move |tx| {
        Box::pin(async move {
            tx.update_ota_update(&ch).await?;
            let after = tx.get_ota_update(&sc3, "ota-a").await?;
            let removed = tx.delete_ota_update(&sc3, "ota-a").await?;
            let again = tx.delete_ota_update(&sc3, "ota-a").await?;
            let uses = tx.ota_updates_using_stream(&sc3, "AFR_OTA-s").await?;
            Ok((after, uses, removed, again, tx.get_ota_update(&sc3, "ota-a").await?))
        })
    })
    .await
    .unwrap();
    assert_eq!(after, Some(changed));
    assert!(uses.is_empty());
    assert!(removed && !again && gone.is_none());
    let other2 = other.clone();
    let kept = read::<_, StoreError, _>(&**store, move |tx| Box::pin(async move { tx.get_ota_update(&other2, "ota-a").await })).await.unwrap();
    assert_eq!(kept, Some(d));
}
