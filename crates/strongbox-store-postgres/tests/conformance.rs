//! Runs the conformance suite on PostgreSQL when `STRONGBOX_TEST_PG_URL` names a server (the test
//! script starts one). Each run gets a fresh database. Under `CI=true` a missing server fails.

use std::sync::Arc;
use strongbox_store_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_conformance_suite() {
    let Some(url) = strongbox_store_postgres::test_database_url("conformance").await else {
        return;
    };
    let store = PostgresStore::open(&url).await.unwrap();
    strongbox_store::conformance::run_all(Arc::new(store)).await;
    PostgresStore::open(&url).await.unwrap();
}
