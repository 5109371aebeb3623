//! The shared `StateStore` conformance suite, on fresh temporary files.

use std::sync::Arc;

use rotation_core::ports::StateStore;
use rotation_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_store_conforms() {
    // Every store gets its own file; the directory outlives all of them.
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    rotation_testkit::conformance::state_store_suite(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://{}", dir.path().join(format!("store-{n}.db")).display());
        async move { Arc::new(SqliteStore::connect(&url, true).await.expect("connect")) as Arc<dyn StateStore> }
    })
    .await;
}
