//! Vault/OpenBao wiring: settings (from CLI flags or the environment) into
//! a [`VaultClient`], a KV v2 secret backend and a Transit key custody.

use std::sync::Arc;

use rotation_core::ports::{KeyCustody, SecretBackend};
use rotation_core::{Error, Reason, Result};
pub use rotation_store_vault::VaultClient;
use rotation_store_vault::{VaultAuth, VaultConfig, VaultKvBackend, VaultTransitCustody};
use secrecy::SecretString;

/// How to reach Vault/OpenBao and where the adapters work in it.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// Server address (`--vault-addr`, `VAULT_ADDR`).
    pub addr: Option<String>,
    /// Token (`--vault-token`, `ROTATION_VAULT_TOKEN`, `VAULT_TOKEN`).
    pub token: Option<SecretString>,
    /// AppRole role id (with `secret_id`; preferred over a token when both are given).
    pub role_id: Option<String>,
    /// AppRole secret id.
    pub secret_id: Option<SecretString>,
    /// Namespace header.
    pub namespace: Option<String>,
    /// KV v2 mount (default `secret`).
    pub kv_mount: String,
    /// Prefix of every secret path in the KV mount (default `rotation`).
    pub kv_prefix: String,
    /// Transit mount (default `transit`).
    pub transit_mount: String,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            addr: None,
            token: None,
            role_id: None,
            secret_id: None,
            namespace: None,
            kv_mount: "secret".into(),
            kv_prefix: "rotation".into(),
            transit_mount: "transit".into(),
        }
    }
}

impl VaultSettings {
    /// The client: `invalid_input` without an address, `unauthorized`
    /// without a token or an AppRole pair.
    pub fn client(&self) -> Result<Arc<VaultClient>> {
        let addr = self.addr.clone().filter(|a| !a.trim().is_empty()).ok_or_else(|| {
            Error::invalid_input("Vault is selected but no address is set: pass --vault-addr or set VAULT_ADDR")
        })?;
        let auth = match (&self.role_id, &self.secret_id, &self.token) {
            (Some(role_id), Some(secret_id), _) => VaultAuth::AppRole {
                mount: "approle".into(),
                role_id: role_id.clone(),
                secret_id: secret_id.clone(),
            },
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(Error::invalid_input(
                    "AppRole needs both --vault-role-id and --vault-secret-id",
                ));
            }
            (None, None, Some(token)) => VaultAuth::Token(token.clone()),
            (None, None, None) => {
                return Err(Error::new(
                    Reason::Unauthorized,
                    "Vault is selected but no credentials are set: pass --vault-token (ROTATION_VAULT_TOKEN or VAULT_TOKEN) \
                     or --vault-role-id and --vault-secret-id",
                ));
            }
        };
        let mut config = VaultConfig::new(addr, auth);
        config.namespace = self.namespace.clone().filter(|n| !n.is_empty());
        Ok(Arc::new(VaultClient::new(config)?))
    }

    /// The KV v2 secret backend on `client`.
    pub fn kv_backend(&self, client: Arc<VaultClient>) -> Result<Arc<dyn SecretBackend>> {
        Ok(Arc::new(VaultKvBackend::new(client, &self.kv_mount, &self.kv_prefix)?))
    }

    /// The Transit key custody on `client`.
    pub fn transit_custody(&self, client: Arc<VaultClient>) -> Result<Arc<dyn KeyCustody>> {
        Ok(Arc::new(VaultTransitCustody::new(client, &self.transit_mount)?))
    }
}
