//! `rotation-app`: the wiring both binaries share. It turns a store URL
//! into a [`StateStore`], the master secret into a [`KeyCustody`], and
//! adapters plus an identity into an [`Engine`].
//!
//! **Architecture invariant:** this crate and the binaries that call it are
//! the only places where concrete adapters meet; it holds no command or
//! HTTP logic, only construction.

mod notify;
mod resolver;
mod vault;

pub use notify::notifier_from_env;
pub use resolver::{AppResolver, KNOWN_TESTS, check_policy_urls, check_verify_urls};
pub use rotation_targets::BASE_ENV as CHILD_BASE_ENV;
pub use vault::{VaultClient, VaultSettings};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rotation_core::authority::CustodyRef;
use rotation_core::ids::{KeyId, KeyringName};
use rotation_core::ports::{DataKey, KeyCustody, NewSigningKey, StateStore, WrapContext};
use rotation_core::time::{Clock, FixedClock, SystemClock};
use rotation_core::{Engine, EngineConfig, Error, Reason, Result};
use rotation_crypto::master_key;
use rotation_crypto::{Argon2Cost, KekParams, MasterSecret, RingCrypto};
use rotation_store_pg::PgStore;
use rotation_store_sqlite::SqliteStore;
use secrecy::{SecretBox, SecretString};

pub use rotation_crypto::master_key::KEK_META;

/// Environment variable holding the master password.
pub const PASSWORD_ENV: &str = "ROTATION_MASTER_PASSWORD";
/// Environment variable overriding the current time (RFC 3339).
pub const NOW_ENV: &str = "ROTATION_NOW";
/// Environment variable overriding the Argon2id costs of new master
/// passwords (`init`, `master-key rotate`), e.g. `m=19456,t=2,p=1`; see
/// [`kdf_cost_from_env`].
pub const KDF_PARAMS_ENV: &str = "ROTATION_KDF_PARAMS";

/// The allowlist of internal addresses `http:` tests and webhooks may
/// reach, from `ROTATION_URL_ALLOWLIST` (comma-separated hosts, `host:port`,
/// IP addresses, `ip:port` or CIDRs; see
/// [`UrlAllowlist`](rotation_core::outbound::UrlAllowlist)); empty when unset.
/// A malformed entry is `invalid_input` naming it.
pub fn url_allowlist_from_env() -> Result<rotation_core::outbound::UrlAllowlist> {
    match std::env::var(rotation_core::outbound::URL_ALLOWLIST_ENV) {
        Ok(text) => rotation_core::outbound::UrlAllowlist::parse(&text),
        Err(std::env::VarError::NotPresent) => Ok(Default::default()),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid_input(format!(
            "{} is not valid UTF-8",
            rotation_core::outbound::URL_ALLOWLIST_ENV
        ))),
    }
}

/// Whether `url` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The store URL as it may be shown: without its password.
pub fn redact_url(url: &str) -> String {
    rotation_store_pg::redact_url(url)
}

/// The SQLite database file of a `sqlite://PATH` (or `sqlite:PATH`) URL.
pub fn sqlite_path(url: &str) -> Result<PathBuf> {
    if is_postgres_url(url) {
        return Err(Error::invalid_input("a PostgreSQL store has no database file"));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "unsupported store URL {:?}: expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                redact_url(url)
            ))
        })?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() {
        return Err(Error::invalid_input("store URL has no database path"));
    }
    Ok(PathBuf::from(path))
}

/// The default master key file of a store: `master.key` beside a SQLite
/// database, `./rotation-data/master.key` for PostgreSQL (as the CLI's `init` creates it).
pub fn default_key_file(url: &str) -> Result<PathBuf> {
    if is_postgres_url(url) {
        return Ok(PathBuf::from("./rotation-data/master.key"));
    }
    let path = sqlite_path(url)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(dir.join("master.key"))
}

/// Opens the store named by the URL's scheme. A SQLite file is created only
/// with `create`; a PostgreSQL database must exist, and its tables are
/// created (migrated) on every open.
pub async fn open_store(url: &str, create: bool) -> Result<Arc<dyn StateStore>> {
    if is_postgres_url(url) {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    let path = sqlite_path(url)?;
    if !create && !path.exists() {
        return Err(Error::not_found(format!(
            "no store at {}; run `rotation init` first (or pass --store)",
            path.display()
        )));
    }
    Ok(Arc::new(SqliteStore::connect(url, create).await?))
}

/// The clock: frozen at `ROTATION_NOW` (RFC 3339) when set, the system clock otherwise.
pub fn clock_from_env() -> Result<Arc<dyn Clock>> {
    Ok(match std::env::var(NOW_ENV) {
        Ok(now) if !now.trim().is_empty() => {
            let at = chrono::DateTime::parse_from_rfc3339(now.trim())
                .map_err(|e| Error::invalid_input(format!("{NOW_ENV}={now:?} is not an RFC 3339 time: {e}")))?;
            Arc::new(FixedClock(at.with_timezone(&chrono::Utc)))
        }
        _ => Arc::new(SystemClock),
    })
}

/// The Argon2id costs for a KEK created now (`init`, `master-key rotate`):
/// [`Argon2Cost::DEFAULT`] (256 MiB, 3 passes, 1 lane), or
/// `ROTATION_KDF_PARAMS` (`m=<KiB>,t=<passes>,p=<lanes>`) when set, which
/// may not go below the costs stores had before ([`Argon2Cost::LEGACY`],
/// 19 MiB and 2 passes). It exists for machines short of memory and for
/// test suites that create many stores; existing stores always open with
/// the costs they recorded, whatever it says.
pub fn kdf_cost_from_env() -> Result<Argon2Cost> {
    match std::env::var(KDF_PARAMS_ENV) {
        Ok(value) if !value.trim().is_empty() => value
            .parse()
            .map_err(|e: Error| Error::invalid_input(format!("{KDF_PARAMS_ENV}: {}", e.message))),
        _ => Ok(Argon2Cost::DEFAULT),
    }
}

/// A notice for stderr when `cost` (from [`kdf_cost_from_env`]) is not the
/// default, so an override never goes unnoticed where a password is used.
pub fn kdf_cost_notice(secret: &MasterSecret, cost: Argon2Cost) -> Option<String> {
    (matches!(secret, MasterSecret::Password(_)) && cost != Argon2Cost::DEFAULT).then(|| {
        format!(
            "note: {KDF_PARAMS_ENV} sets the master password's Argon2id costs to {cost} (default {})",
            Argon2Cost::DEFAULT
        )
    })
}

/// The master secret: the password from `ROTATION_MASTER_PASSWORD` when the
/// store's KEK parameters (`params`) say password (or, without parameters,
/// when the variable is set), the key file at `key_file` otherwise.
pub fn master_secret(params: Option<&KekParams>, key_file: &Path) -> Result<MasterSecret> {
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
    read_key_file(key_file).map(|bytes| MasterSecret::KeyFile(SecretBox::new(Box::new(bytes))))
}

/// Unlocks the store's custody: reads its KEK parameters, takes the master
/// secret (see [`master_secret`]) and checks it against the stored check
/// value. A wrong secret is `unauthorized` and changes nothing.
pub async fn unlock_custody(store: &dyn StateStore, key_file: &Path) -> Result<Arc<dyn KeyCustody>> {
    let params = master_key::current_params(store).await?;
    let secret = master_secret(Some(&params), key_file)?;
    Ok(Arc::new(master_key::unlock(store, &secret).await?))
}

/// A unique lease owner for this process: `PREFIX:HOST:PID:RANDOM`.
pub fn process_owner(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!(
        "{prefix}:{}:{}:{}",
        host.trim(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Who drives the runs an engine starts and who is written into its audit events.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Lease owner (see [`process_owner`]).
    pub owner: String,
    /// Audit actor, e.g. `cli:alice` or `token:<id>`.
    pub actor: String,
    /// How long a run's lease lasts after each step.
    pub lease: chrono::TimeDelta,
}

/// An engine over explicit adapters with the ring crypto provider, the
/// real secret targets ([`AppResolver`], its `http:` tests allowed the
/// internal addresses of [`url_allowlist_from_env`]; none when that is
/// malformed, which the CLI and [`notifier_from_env`] report) and the log
/// notifier (add channels with [`notifier_from_env`] and
/// `Engine::with_notifier`). [`engine_with_allowlist`] takes the
/// allowlist instead of reading the environment.
pub fn engine(
    store: Arc<dyn StateStore>,
    custody: Arc<dyn KeyCustody>,
    clock: Arc<dyn Clock>,
    identity: Identity,
) -> Engine {
    let allowlist = Arc::new(url_allowlist_from_env().unwrap_or_default());
    engine_with_allowlist(store, custody, clock, identity, allowlist)
}

/// [`engine`] with the `http:` tests allowed the internal addresses of
/// `allowlist` (parsed once by a long-running caller, such as the server,
/// instead of from the environment for every engine).
pub fn engine_with_allowlist(
    store: Arc<dyn StateStore>,
    custody: Arc<dyn KeyCustody>,
    clock: Arc<dyn Clock>,
    identity: Identity,
    allowlist: Arc<rotation_core::outbound::UrlAllowlist>,
) -> Engine {
    let config = EngineConfig {
        owner: identity.owner,
        actor: identity.actor,
        lease: identity.lease,
        ..EngineConfig::default()
    };
    Engine::new(store, Arc::new(RingCrypto::new()), custody, clock, config)
        .with_resolver(Arc::new(AppResolver::new().with_url_allowlist(allowlist)))
}

/// Reads a master key file: 64 hex characters (32 bytes). The file must not
/// be readable by group or others.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>> {
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
    #[cfg(not(unix))]
    let _ = meta;
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

/// Custody for work that never signs or seals: any use is a clear
/// `unauthorized` error. Lets read-only commands run without the master secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockedCustody;

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

    /// Needs no master secret: retiring a local key changes nothing in the
    /// custody (see `LocalCustody`), so revocation works while locked.
    async fn retire_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()> {
        rotation_crypto::custody::check_local_key(key_id, key)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert!(is_postgres_url("postgres://u:p@h/db"));
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("sqlite://x.db"));
        assert_eq!(
            sqlite_path("sqlite://./a/b.db?mode=rwc").unwrap(),
            PathBuf::from("./a/b.db")
        );
        assert_eq!(sqlite_path("sqlite:b.db").unwrap(), PathBuf::from("b.db"));
        assert_eq!(sqlite_path("mysql://x").unwrap_err().reason, Reason::InvalidInput);
        assert_eq!(sqlite_path("sqlite://").unwrap_err().reason, Reason::InvalidInput);
    }

    #[tokio::test]
    async fn missing_sqlite_store_is_not_created_without_create() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let err = open_store(&url, false).await.err().unwrap();
        assert_eq!(err.reason, Reason::NotFound);
        open_store(&url, true).await.unwrap();
        open_store(&url, false).await.unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_file_must_be_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "00".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_key_file(&path).unwrap_err().reason, Reason::Unauthorized);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path).unwrap().len(), 32);
        std::fs::write(&path, "00").unwrap();
        assert_eq!(read_key_file(&path).unwrap_err().reason, Reason::InvalidInput);
    }
}
