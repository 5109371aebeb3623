//! Wiring: turns global options and the environment into a store, a key
//! custody, a clock and an engine, through `rotation-app` (the wiring the
//! server shares).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rotation_app::{Identity, LockedCustody};
use rotation_core::ports::{KeyCustody, StateStore};
use rotation_core::time::Clock;
use rotation_core::{Engine, Result};
use rotation_crypto::master_key;
use rotation_crypto::{KekParams, MasterSecret};
use secrecy::SecretString;

use crate::cli::{CustodyArg, GlobalArgs, SecretBackendArg};

pub(crate) use rotation_app::{KEK_META, PASSWORD_ENV, read_key_file};
/// Where the master key file lives by default for a PostgreSQL store
/// (relative to the working directory, like the default SQLite store).
const DEFAULT_DATA_DIR: &str = "./rotation-data";

/// What a command needs from the environment.
pub(crate) struct Context {
    pub(crate) global: GlobalArgs,
    clock: Arc<dyn Clock>,
}

impl Context {
    /// Reads `ROTATION_NOW` (if set) and keeps the global options.
    pub(crate) fn new(global: GlobalArgs) -> Result<Self> {
        Ok(Context {
            global,
            clock: rotation_app::clock_from_env()?,
        })
    }

    /// Whether the store is a PostgreSQL database (`postgres://` or `postgresql://`).
    pub(crate) fn is_postgres(&self) -> bool {
        rotation_app::is_postgres_url(&self.global.store)
    }

    /// The store URL as it may be shown: without its password.
    pub(crate) fn store_display(&self) -> String {
        rotation_app::redact_url(&self.global.store)
    }

    /// The SQLite database file of the store URL.
    pub(crate) fn sqlite_path(&self) -> Result<PathBuf> {
        rotation_app::sqlite_path(&self.global.store)
    }

    /// The data directory: the SQLite database's directory. A PostgreSQL
    /// store has none; there it is the directory of the master key file
    /// (`--master-key-file`, or `./rotation-data`), which `init` creates.
    pub(crate) fn data_dir(&self) -> Result<PathBuf> {
        if self.is_postgres() {
            return Ok(match &self.global.master_key_file {
                Some(file) => file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
                None => PathBuf::from(DEFAULT_DATA_DIR),
            });
        }
        let path = self.sqlite_path()?;
        Ok(path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")))
    }

    /// The master key file: `--master-key-file` or `master.key` in the data directory.
    pub(crate) fn key_file(&self) -> Result<PathBuf> {
        match &self.global.master_key_file {
            Some(p) => Ok(p.clone()),
            None => Ok(self.data_dir()?.join("master.key")),
        }
    }

    /// Whether the store may already exist: the SQLite file exists; a
    /// PostgreSQL database always may (connecting tells).
    pub(crate) fn store_may_exist(&self) -> Result<bool> {
        if self.is_postgres() {
            return Ok(true);
        }
        Ok(self.sqlite_path()?.exists())
    }

    /// Opens (or with `create`, creates) the store named by the URL's
    /// scheme. A PostgreSQL database must exist; its tables are created
    /// (migrated) on every open, so `create` changes nothing there.
    pub(crate) async fn open_store(&self, create: bool) -> Result<Arc<dyn StateStore>> {
        rotation_app::open_store(&self.global.store, create).await
    }

    /// The master secret from the environment or the key file.
    pub(crate) fn master_secret(&self, params: Option<&KekParams>) -> Result<MasterSecret> {
        rotation_app::master_secret(params, &self.key_file()?)
    }

    /// An engine over the store; with `unlock`, the master secret is checked
    /// and signing keys become usable, otherwise only read-only and
    /// non-signing operations work (no master secret needed).
    pub(crate) async fn engine(&self, unlock: bool) -> Result<Engine> {
        let store = self.open_store(false).await?;
        let vault = self.vault_client()?;
        let custody: Arc<dyn KeyCustody> =
            if let Some(client) = vault.clone().filter(|_| self.global.custody == CustodyArg::Vault) {
                self.vault_settings().transit_custody(client)?
            } else {
                // Local custody: the store must be initialised, even for read-only commands.
                let params = master_key::current_params(store.as_ref()).await?;
                if unlock {
                    let secret = self.master_secret(Some(&params))?;
                    Arc::new(master_key::unlock(store.as_ref(), &secret).await?)
                } else {
                    Arc::new(LockedCustody)
                }
            };
        let engine = self.engine_with(store, custody);
        Ok(
            match vault.filter(|_| self.global.secret_backend == SecretBackendArg::Vault) {
                Some(client) => engine.with_secret_backend(self.vault_settings().kv_backend(client)?),
                None => engine,
            },
        )
    }

    /// The Vault settings of the global options (`--vault-*`, `VAULT_*`).
    fn vault_settings(&self) -> rotation_app::VaultSettings {
        let g = &self.global;
        let token = g
            .vault_token
            .clone()
            .or_else(|| std::env::var("VAULT_TOKEN").ok())
            .filter(|t| !t.is_empty());
        rotation_app::VaultSettings {
            addr: g.vault_addr.clone(),
            token: token.map(SecretString::from),
            role_id: g.vault_role_id.clone().filter(|r| !r.is_empty()),
            secret_id: g
                .vault_secret_id
                .clone()
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            namespace: g.vault_namespace.clone(),
            kv_mount: g.vault_kv_mount.clone(),
            kv_prefix: g.vault_kv_prefix.clone(),
            transit_mount: g.vault_transit_mount.clone(),
        }
    }

    /// A Vault client when `--secret-backend vault` or `--custody vault` asks for one.
    fn vault_client(&self) -> Result<Option<Arc<rotation_app::VaultClient>>> {
        if self.global.secret_backend == SecretBackendArg::Store && self.global.custody == CustodyArg::Local {
            return Ok(None);
        }
        self.vault_settings().client().map(Some)
    }

    /// An engine over explicit adapters.
    pub(crate) fn engine_with(&self, store: Arc<dyn StateStore>, custody: Arc<dyn KeyCustody>) -> Engine {
        let user = std::env::var("ROTATION_ACTOR")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let identity = Identity {
            owner: rotation_app::process_owner("cli"),
            actor: format!("cli:{user}"),
            lease: chrono::TimeDelta::seconds(i64::from(self.global.lease_seconds.max(1))),
        };
        rotation_app::engine(store, custody, self.clock.clone(), identity)
    }
}
