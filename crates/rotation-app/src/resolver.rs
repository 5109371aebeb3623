//! The binaries' [`TargetResolver`]: which adapter a secret's rotation acts
//! on, and the verification tests by name.

use std::sync::Arc;

use rotation_core::Result;
use rotation_core::outbound::UrlAllowlist;
use rotation_core::policy::{Policy, invalid_field};
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
///
/// `http:<URL>` tests reach internal addresses only when `url_allowlist`
/// covers them (see [`AppResolver::with_url_allowlist`]; empty by default).
#[derive(Debug, Default, Clone)]
pub struct AppResolver {
    postgres: Arc<PostgresRoleTarget>,
    script: Arc<ScriptTarget>,
    certificate: Arc<CertificateTarget>,
    url_allowlist: Arc<UrlAllowlist>,
}

impl AppResolver {
    /// A resolver with the adapters' default timeouts and an empty URL allowlist.
    pub fn new() -> Self {
        AppResolver::default()
    }

    /// The same resolver, its `http:` tests allowed to reach the internal
    /// addresses `allowlist` covers (`ROTATION_URL_ALLOWLIST`).
    pub fn with_url_allowlist(mut self, allowlist: Arc<UrlAllowlist>) -> Self {
        self.url_allowlist = allowlist;
        self
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
            n if rotation_core::outbound::http_test_url(n).is_some() => HttpVerifier::from_test_name(n)
                .map(|v| Arc::new(v.with_allowlist(self.url_allowlist.clone())) as Arc<dyn Verifier>)
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

/// Whether every `http:` verification test and webhook notification
/// recipient of `policy` may be sent where it points: resolves each host
/// and refuses (`invalid_policy`, naming the field and the URL without
/// userinfo or query) one whose addresses are all internal (loopback,
/// private, link-local such as `169.254.169.254`, ...) and not covered by
/// `allowlist`. A host that does not resolve now passes (it is checked
/// again at each request). Call before storing the policy; the engine's
/// own checks (names, fields) still run in `set_policy`.
pub async fn check_policy_urls(policy: &Policy, allowlist: &UrlAllowlist) -> Result<()> {
    check_verify_urls(&policy.procedure.verification_tests, allowlist).await?;
    for recipient in &policy.procedure.notify {
        if let Ok(rotation_notify::Recipient::Webhook(url)) = rotation_notify::Recipient::parse(recipient) {
            rotation_notify::check_webhook_url(url, allowlist)
                .await
                .map_err(|e| invalid_field("notify", e.message))?;
        }
    }
    Ok(())
}

/// Whether the `http:` tests among `tests` (a policy's
/// `verification_tests` or a secret's `verify` list) may be sent where
/// they point, as [`check_policy_urls`] says; `invalid_policy` otherwise.
pub async fn check_verify_urls(tests: &[String], allowlist: &UrlAllowlist) -> Result<()> {
    let allowlist = Arc::new(allowlist.clone());
    for test in tests {
        if rotation_core::outbound::http_test_url(test).is_some() {
            HttpVerifier::from_test_name(test)
                .map_err(|e| invalid_field("verification_tests", e.message))?
                .with_allowlist(allowlist.clone())
                .check_destination()
                .await
                .map_err(|e| invalid_field("verification_tests", e.message))?;
        }
    }
    Ok(())
}
