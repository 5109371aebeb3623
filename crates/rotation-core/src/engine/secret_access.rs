//! What protects a secret beyond the caller's role: the secrets whose
//! settings refer to it, and the audit record of values presented to it
//! for validation.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::error::Result;
use crate::ids::Target;
use crate::secret::check_path;
use crate::time::Timestamp;

/// A secret whose settings name another secret: its `ca_secret` (the CA
/// that signs its certificates) or its `admin_secret` (the connection its
/// new passwords are sent over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretReference {
    /// The secret that refers.
    pub path: String,
    /// The setting that names the other secret: `ca_secret` or `admin_secret`.
    pub setting: &'static str,
}

/// Validation attempts of one caller on one secret over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationTally {
    /// Values presented.
    pub attempts: u64,
    /// Of which accepted.
    pub valid: u64,
    /// The first attempt of the window.
    pub first_at: Timestamp,
    /// The last attempt of the window.
    pub last_at: Timestamp,
}

impl Engine {
    /// The secrets that name `path` as their `ca_secret` or
    /// `admin_secret`, ordered by path. Whoever can write such a secret
    /// chooses the key that signs the others' certificates, or where their
    /// new passwords go.
    pub async fn secrets_referring_to(&self, path: &str) -> Result<Vec<SecretReference>> {
        check_path(path)?;
        let mut out = Vec::new();
        for secret in self.store.list_secrets().await? {
            if secret.path == path {
                continue;
            }
            if secret.config.ca_secret.as_deref() == Some(path) {
                out.push(SecretReference {
                    path: secret.path.clone(),
                    setting: "ca_secret",
                });
            }
            if secret.config.admin_secret.as_deref() == Some(path) {
                out.push(SecretReference {
                    path: secret.path,
                    setting: "admin_secret",
                });
            }
        }
        Ok(out)
    }

    /// Records one `secret_validated` audit event summing up `tally`: this
    /// engine's actor presented values to the secret at `path` for
    /// validation. Callers aggregate attempts (one event per caller, secret
    /// and window), so guessing leaves a trace without one event per guess.
    pub async fn record_validations(&self, path: &str, tally: ValidationTally) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let draft = self.draft(
            event::SECRET_VALIDATED,
            Target::Secret(path.to_owned()),
            None,
            json!({
                "attempts": tally.attempts,
                "valid": tally.valid,
                "first_at": tally.first_at,
                "last_at": tally.last_at,
            }),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await
    }
}
