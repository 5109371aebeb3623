//! Re-wrapping every stored key under the custody's current wrapping key
//! (the engine half of master-key rotation).

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::error::Result;
use crate::ports::WrapContext;

/// Outcome of [`Engine::rewrap_all_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapReport {
    /// Signing keys re-wrapped by this call.
    pub signing_keys: u64,
    /// Keyring data keys re-wrapped by this call.
    pub data_keys: u64,
    /// Keys already under the current wrapping key.
    pub already_current: u64,
}

impl Engine {
    /// Re-wraps every signing key (the audit key included) and every keyring data key that is not
    /// under the custody's current wrapping key. Each key is committed on
    /// its own, so a run stopped at any point is finished by running it
    /// again; keys not yet moved still open with the old wrapping key.
    pub async fn rewrap_all_keys(&self) -> Result<RewrapReport> {
        let mut report = RewrapReport::default();
        for authority in self.store.list_authorities().await? {
            for mut key in self.store.list_keys(&authority.id).await? {
                let context = WrapContext::SigningKey(key.key_id.clone());
                match self.custody.rewrap(&context, &key.custody).await? {
                    None => report.already_current += 1,
                    Some(handle) => {
                        let mut tx = self.store.begin().await?;
                        // Re-read inside the transaction: only the handle changes.
                        if let Some(current) = tx.get_key(&key.key_id).await? {
                            key = current;
                            key.custody = handle;
                            tx.update_key(&key).await?;
                        }
                        tx.commit().await?;
                        report.signing_keys += 1;
                    }
                }
            }
        }
        // The audit key that signs checkpoints is a signing key too.
        if let Some(mut key) = self.audit_key().await? {
            let context = WrapContext::SigningKey(key.key_id.clone());
            match self.custody.rewrap(&context, &key.custody).await? {
                None => report.already_current += 1,
                Some(handle) => {
                    key.custody = handle;
                    let mut tx = self.store.begin().await?;
                    tx.audit_head().await?;
                    tx.put_meta(
                        super::AUDIT_KEY_META,
                        &serde_json::to_vec(&key).map_err(|e| crate::Error::invalid_input(e.to_string()))?,
                    )
                    .await?;
                    tx.commit().await?;
                    report.signing_keys += 1;
                }
            }
        }
        for keyring in self.store.list_keyrings().await? {
            for version in self.store.list_key_versions(&keyring.name).await? {
                let context = WrapContext::DataKey(keyring.name.clone(), version.version);
                match self.custody.rewrap(&context, &version.wrapped).await? {
                    None => report.already_current += 1,
                    Some(handle) => {
                        let mut tx = self.store.begin().await?;
                        if let Some(mut current) = tx.get_key_version(&keyring.name, version.version).await? {
                            current.wrapped = handle;
                            tx.update_key_version(&current).await?;
                        }
                        tx.commit().await?;
                        report.data_keys += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}
