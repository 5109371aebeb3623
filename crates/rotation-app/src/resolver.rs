//! The binaries' [`TargetResolver`]: which adapter a secret's rotation acts
//! on, and the verification tests by name.

use std::sync::Arc;

use rotation_core::Result;
use rotation_core::policy::invalid_field;
use rotation_core::ports::{CredentialTarget, NonEmptyVerifier, StoreOnlyTarget, TargetResolver, Verifier};
use rotation_core::secret::{Secret, SecretType};
use rotation_crypto::CertificateTarget;
use rotation_targets::{HttpVerifier, PostgresRoleTarget, ScriptTarget};

/// Test names this build knows (besides `http:<URL>`).
pub const KNOWN_TESTS: [&str; 4] = ["login", "certificate", "script", "nonempty"];

/// Resolves targets: a secret with a script → the script; `database` → its
/// PostgreSQL role; `certificate` → the certificate issuer; anything else →
/// store only. Tests: `login` (PostgreSQL login with the new password),
/// `certificate`, `script` (the script's `test` step), `nonempty`, `http:<URL>`.
#[derive(Debug, Default, Clone)]
pub struct AppResolver {
    postgres: Arc<PostgresRoleTarget>,
    script: Arc<ScriptTarget>,
    certificate: Arc<CertificateTarget>,
}

impl AppResolver {
    /// A resolver with the adapters' default timeouts.
    pub fn new() -> Self {
        AppResolver::default()
    }
}

impl TargetResolver for AppResolver {
    fn target(&self, secret: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        if secret.config.script.is_some() {
            return Ok(self.script.clone());
        }
        Ok(match secret.secret_type {
            SecretType::Database => self.postgres.clone(),
            SecretType::Certificate => self.certificate.clone(),
            SecretType::Generic | SecretType::Password | SecretType::ApiKey => Arc::new(StoreOnlyTarget),
        })
    }

    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        match name {
            "login" => Ok(self.postgres.clone()),
            "certificate" => Ok(self.certificate.clone()),
            "script" => Ok(self.script.clone()),
            "nonempty" => Ok(Arc::new(NonEmptyVerifier)),
            n if n.starts_with("http:") => HttpVerifier::from_test_name(n)
                .map(|v| Arc::new(v) as Arc<dyn Verifier>)
                .map_err(|e| invalid_field("verification_tests", e.message)),
            other => Err(invalid_field(
                "verification_tests",
                format!(
                    "unknown test {:?}: use {}, or http:<URL>",
                    other.chars().take(64).collect::<String>(),
                    KNOWN_TESTS.join(", ")
                ),
            )),
        }
    }
}
