//! Wiring: turns global options and the environment into a store, a key
//! custody, a clock and an engine. The only place concrete adapters meet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rotation_core::authority::CustodyRef;
use rotation_core::ids::{KeyId, KeyringName};
use rotation_core::ports::{DataKey, KeyCustody, NewSigningKey, StateStore, WrapContext};
use rotation_core::time::{Clock, FixedClock, SystemClock};
use rotation_core::{Engine, EngineConfig, Error, Reason, Result};
use rotation_crypto::master_key;
use rotation_crypto::{KekParams, MasterSecret, RingCrypto};
use rotation_store_pg::PgStore;
use rotation_store_sqlite::SqliteStore;
use secrecy::{SecretBox, SecretString};

use crate::cli::GlobalArgs;

pub(crate) use rotation_crypto::master_key::KEK_META;
/// Environment variable holding the master password.
pub(crate) const PASSWORD_ENV: &str = "ROTATION_MASTER_PASSWORD";
/// Environment variable overriding the current time (RFC 3339).
pub(crate) const NOW_ENV: &str = "ROTATION_NOW";
/// Where the master key file lives by default for a PostgreSQL store
/// (relative to the working directory, like the default SQLite store).
const DEFAULT_DATA_DIR: &str = "./rotation-data";

/// Whether `url` names a PostgreSQL store.
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// What a command needs from the environment.
pub(crate) struct Context {
    pub(crate) global: GlobalArgs,
    clock: Arc<dyn Clock>,
}

impl Context {
    /// Reads `ROTATION_NOW` (if set) and keeps the global options.
    pub(crate) fn new(global: GlobalArgs) -> Result<Self> {
        let clock: Arc<dyn Clock> = match std::env::var(NOW_ENV) {
            Ok(now) if !now.trim().is_empty() => {
                let at = chrono::DateTime::parse_from_rfc3339(now.trim())
                    .map_err(|e| Error::invalid_input(format!("{NOW_ENV}={now:?} is not an RFC 3339 time: {e}")))?;
                Arc::new(FixedClock(at.with_timezone(&chrono::Utc)))
            }
            _ => Arc::new(SystemClock),
        };
        Ok(Context { global, clock })
    }

    /// Whether the store is a PostgreSQL database (`postgres://` or `postgresql://`).
    pub(crate) fn is_postgres(&self) -> bool {
        is_postgres_url(&self.global.store)
    }

    /// The store URL as it may be shown: without its password.
    pub(crate) fn store_display(&self) -> String {
        rotation_store_pg::redact_url(&self.global.store)
    }

    /// The SQLite database file of the store URL.
    pub(crate) fn sqlite_path(&self) -> Result<PathBuf> {
        let url = self.global.store.as_str();
        if self.is_postgres() {
            return Err(Error::invalid_input("a PostgreSQL store has no database file"));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "unsupported store URL {:?}: expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    self.store_display()
                ))
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(Error::invalid_input("store URL has no database path"));
        }
        Ok(PathBuf::from(path))
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
        if self.is_postgres() {
            return Ok(Arc::new(PgStore::connect(&self.global.store).await?));
        }
        let path = self.sqlite_path()?;
        if !create && !path.exists() {
            return Err(Error::not_found(format!(
                "no store at {}; run `rotation init` first (or pass --store)",
                path.display()
            )));
        }
        Ok(Arc::new(SqliteStore::connect(&self.global.store, create).await?))
    }

    /// The master secret from the environment or the key file.
    pub(crate) fn master_secret(&self, params: Option<&KekParams>) -> Result<MasterSecret> {
        let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let wants_password = params.map(|p| p.kind == "password").unwrap_or(password.is_some());
        if wants_password {
            let password = password.ok_or_else(|| {
                Error::new(
                    Reason::Unauthorized,
                    format!("this store is protected by a master password: set {PASSWORD_ENV}"),
                )
            })?;
            return Ok(MasterSecret::Password(SecretString::from(password)));
        }
        let path = self.key_file()?;
        read_key_file(&path).map(|bytes| MasterSecret::KeyFile(SecretBox::new(Box::new(bytes))))
    }

    /// An engine over the store; with `unlock`, the master secret is checked
    /// and signing keys become usable, otherwise only read-only and
    /// non-signing operations work (no master secret needed).
    pub(crate) async fn engine(&self, unlock: bool) -> Result<Engine> {
        let store = self.open_store(false).await?;
        let params = master_key::current_params(store.as_ref()).await?;
        let custody: Arc<dyn KeyCustody> = if unlock {
            let secret = self.master_secret(Some(&params))?;
            Arc::new(master_key::unlock(store.as_ref(), &secret).await?)
        } else {
            Arc::new(LockedCustody)
        };
        Ok(self.engine_with(store, custody))
    }

    /// An engine over explicit adapters.
    pub(crate) fn engine_with(&self, store: Arc<dyn StateStore>, custody: Arc<dyn KeyCustody>) -> Engine {
        let user = std::env::var("ROTATION_ACTOR")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let config = EngineConfig {
            owner: format!(
                "cli:{}:{}:{}",
                host.trim(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            actor: format!("cli:{user}"),
            lease: chrono::TimeDelta::seconds(i64::from(self.global.lease_seconds.max(1))),
            ..EngineConfig::default()
        };
        Engine::new(store, Arc::new(RingCrypto::new()), custody, self.clock.clone(), config)
    }
}

/// Reads a master key file: 64 hex characters (32 bytes). The file must not
/// be readable by group or others.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::new(
            Reason::Unauthorized,
            format!(
                "cannot read the master key file {}: {e}; set {PASSWORD_ENV} if the store uses a password, or pass --master-key-file",
                path.display()
            ),
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::new(
                Reason::Unauthorized,
                format!(
                    "master key file {} is accessible by other users (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            ));
        }
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::new(Reason::Unauthorized, format!("cannot read {}: {e}", path.display())))?,
    );
    let bytes = hex::decode(text.trim())
        .map_err(|_| Error::invalid_input(format!("master key file {} is not hex", path.display())))?;
    if bytes.len() != 32 {
        return Err(Error::invalid_input(format!(
            "master key file {} must hold 32 bytes (64 hex characters)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Custody for commands that never sign: any use is a clear error.
struct LockedCustody;

#[async_trait]
impl KeyCustody for LockedCustody {
    fn name(&self) -> &str {
        "locked"
    }

    async fn create_signing_key(&self, _key_id: &KeyId) -> Result<NewSigningKey> {
        Err(locked())
    }

    async fn sign(&self, _key_id: &KeyId, _key: &CustodyRef, _messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        Err(locked())
    }

    async fn destroy_signing_key(&self, _key_id: &KeyId, _key: &CustodyRef) -> Result<()> {
        Err(locked())
    }

    async fn create_data_key(&self, _keyring: &KeyringName, _version: u32) -> Result<(DataKey, CustodyRef)> {
        Err(locked())
    }

    async fn wrap_data_key(&self, _keyring: &KeyringName, _version: u32, _key: &DataKey) -> Result<CustodyRef> {
        Err(locked())
    }

    async fn unwrap_data_key(&self, _keyring: &KeyringName, _version: u32, _wrapped: &CustodyRef) -> Result<DataKey> {
        Err(locked())
    }

    async fn rewrap(&self, _context: &WrapContext, _handle: &CustodyRef) -> Result<Option<CustodyRef>> {
        Err(locked())
    }
}

fn locked() -> Error {
    Error::new(
        Reason::Unauthorized,
        "this operation needs the master key, which this command did not unlock",
    )
}
