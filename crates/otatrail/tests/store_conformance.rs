//! Runs the store conformance suite against every backend available here.

use std::sync::Arc;

use otatrail::store::sqlite::SqliteStore;
use otatrail::store::{Store, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    conformance::run(store).await;
}

#[tokio::test]
async fn sqlite_state_survives_reopen() {
    use otatrail::domain::identity::Account;
    use otatrail::domain::time::Millis;
    use otatrail::store::{StoreError, read, write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        write::<_, StoreError, _>(&store, |tx| {
            Box::pin(async move { tx.insert_account(&Account { id: "999999999999".into(), created_at: Millis(5) }).await })
        })
        .await
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let accounts = read::<_, StoreError, _>(&store, |tx| Box::pin(async move { tx.list_accounts().await })).await.unwrap();
    assert_eq!(accounts.len(), 1);
}
