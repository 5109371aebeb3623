//! The shared `StateStore` conformance suite, each case on a fresh database.

use std::sync::{Arc, Mutex};

use rotation_core::ports::StateStore;

use crate::support::TestDb;

#[tokio::test]
async fn pg_store_conforms() {
    // The databases live as long as the suite.
    let databases: Arc<Mutex<Vec<TestDb>>> = Arc::default();
    rotation_testkit::conformance::state_store_suite(|| {
        let databases = Arc::clone(&databases);
        async move {
            let db = TestDb::create().await;
            let store = db.store().await;
            databases.lock().unwrap().push(db);
            Arc::new(store) as Arc<dyn StateStore>
        }
    })
    .await;
}
