//! The store conformance suite on SQLite with the server's allocator (mimalloc), as `main` sets
//! it up. A test binary of its own: the allocator can only be given to SQLite before anything
//! in the process has used it, and this is the binary's only test.

use std::sync::Arc;

use otatrail::store::sqlite::SqliteStore;
use otatrail::store::{Store, conformance};

#[test]
fn sqlite_on_the_server_allocator_conforms() {
    // SAFETY: the first thing this process does with SQLite, before any other thread exists.
    assert!(unsafe { otatrail::store::sqlite::use_server_allocator() }, "SQLite refused the allocator");
    // SQLite's memory now comes from mimalloc's heap.
    unsafe extern "C" {
        fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
    }
    // SAFETY: a plain allocation, freed by the same library.
    unsafe {
        let p = rusqlite::ffi::sqlite3_malloc(100);
        assert!(!p.is_null() && mi_is_in_heap_region(p), "SQLite allocated outside mimalloc's heap");
        rusqlite::ffi::sqlite3_free(p);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
        conformance::run(store).await;
    });
    // SAFETY: SQLite is initialized by now, so it refuses without touching its configuration.
    assert!(!unsafe { otatrail::store::sqlite::use_server_allocator() }, "SQLite took an allocator while in use");
}
