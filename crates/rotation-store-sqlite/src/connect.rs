//! Opening the store: connection options, the pool and the migrations.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rotation_core::{Error, Reason, Result};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Mutex;

/// How long a write transaction waits for another one (in this process or
/// another) before giving up with `backend_unavailable`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in the pool.
const POOL_SIZE: u32 = 4;

/// The schema, embedded in the binary and applied on connect.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The [`rotation_core::ports::StateStore`] on one SQLite database file.
///
/// The file is opened in WAL mode with `synchronous = NORMAL` and foreign
/// keys on. Reads run on a small pool and see committed data. Write
/// transactions start with `BEGIN IMMEDIATE`, so they serialise across
/// processes (waiting up to [`BUSY_TIMEOUT`]) instead of failing on a lock
/// upgrade; within one process they also queue on an async lock so waiting
/// writers do not hold pool connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    /// Opens the store at `url` (`sqlite://path/to/rotation.db`, `sqlite:path`
    /// or a plain path) and applies pending migrations.
    ///
    /// With `create_if_missing`, a missing file (and its directory) is
    /// created; without it, a missing file is `not_found`, telling the
    /// operator to run `rotation init`. Any other failure to open is
    /// `backend_unavailable`.
    pub async fn connect(url: &str, create_if_missing: bool) -> Result<SqliteStore> {
        let options = connect_options(url)?;
        let path = options.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            prepare_file(&path, create_if_missing)?;
        }
        let options = options
            .create_if_missing(create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(BUSY_TIMEOUT * 3)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::backend(format!("cannot open the SQLite store at {}: {e}", path.display())).with_source(e)
            })?;
        if !in_memory {
            restrict_sidecar_files(&path)?;
        }
        migrate(&pool, &path).await?;
        tracing::debug!(path = %path.display(), "SQLite store opened");
        Ok(SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// The underlying pool (for diagnostics and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection; later calls fail with `backend_unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Parses `url` into connection options.
fn connect_options(url: &str) -> Result<SqliteConnectOptions> {
    if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| {
            Error::new(Reason::InvalidInput, format!("invalid SQLite store URL {url:?}: {e}")).with_source(e)
        })
    } else {
        Ok(SqliteConnectOptions::new().filename(url))
    }
}

/// Checks that the database file exists, or creates it (and its
/// directory, mode 0700) as an empty file with mode 0600, whatever the
/// umask or the directory's mode: the store holds wrapped keys, sealed
/// values and the audit log. SQLite treats an empty file as a new database
/// and gives the `-wal` and `-shm` files it creates the database file's
/// mode (see [`restrict_sidecar_files`] for ones that already exist).
fn prepare_file(path: &Path, create_if_missing: bool) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if !create_if_missing {
        return Err(Error::not_found(format!(
            "the store is not initialised: {} does not exist; run `rotation init` first",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| {
            Error::backend(format!("cannot create the store directory {}: {e}", dir.display())).with_source(e)
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it first: it opens that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::backend(format!("cannot create the store file {}: {e}", path.display())).with_source(e)),
    }
}

/// Takes from the `-wal` and `-shm` files beside the database any
/// permission the database file itself does not grant (so a 0600 database
/// never has readable sidecars, e.g. ones left by an older version).
fn restrict_sidecar_files(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let db_mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(_) => return Ok(()),
        };
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let sidecar = std::path::PathBuf::from(name);
            let Ok(meta) = std::fs::metadata(&sidecar) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & !db_mode != 0 {
                std::fs::set_permissions(&sidecar, std::fs::Permissions::from_mode(mode & db_mode)).map_err(|e| {
                    Error::backend(format!("cannot restrict the mode of {}: {e}", sidecar.display())).with_source(e)
                })?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Applies pending migrations inside one `BEGIN IMMEDIATE` transaction, so
/// processes opening a new file at once apply them exactly once.
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<()> {
    let fail = |e: MigrateError| {
        let (reason, hint) = match e {
            MigrateError::VersionMissing(_) | MigrateError::VersionTooNew(..) => (
                Reason::BackendUnavailable,
                "; the store was written by a newer version of rotation, upgrade it",
            ),
            MigrateError::VersionMismatch(_) | MigrateError::Dirty(_) => (Reason::Tampered, ""),
            _ => (Reason::BackendUnavailable, ""),
        };
        Error::new(
            reason,
            format!("cannot migrate the SQLite store at {}: {e}{hint}", path.display()),
        )
        .with_source(e)
    };
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| fail(MigrateError::Execute(e)))?;
    MIGRATOR.run(&mut tx).await.map_err(fail)?;
    tx.commit().await.map_err(|e| fail(MigrateError::Execute(e)))
}
