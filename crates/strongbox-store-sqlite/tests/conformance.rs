use std::sync::Arc;
use strongbox_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    strongbox_store::conformance::run_all(Arc::new(store)).await;
    // Reopening runs the migrations again, which must be a no-op on a migrated database.
    SqliteStore::open(&url).await.unwrap();
}
