//! The port conformance suites, against the store's own backend (the
//! reference) and against the real server.

use std::sync::Arc;

use rotation_core::engine::StoreSecretBackend;
use rotation_core::ports::SecretBackend;
use rotation_testkit::conformance::secret_backend_suite;

use crate::support::{kv, local_engine};

#[tokio::test]
async fn store_backend_conforms() {
    let (engine, _, _) = local_engine();
    secret_backend_suite(Arc::new(StoreSecretBackend::new(engine))).await;
}

#[tokio::test]
async fn vault_kv_backend_conforms() {
    let (backend, _) = kv();
    secret_backend_suite(Arc::new(backend) as Arc<dyn SecretBackend>).await;
}

#[tokio::test]
async fn vault_kv_backend_conforms_with_max_versions() {
    let (backend, _) = kv();
    secret_backend_suite(Arc::new(backend.with_max_versions(5)) as Arc<dyn SecretBackend>).await;
}
