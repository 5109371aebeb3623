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

/// Checks that the database file exists, or creates its directory.
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
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            Error::backend(format!("cannot create the store directory {}: {e}", dir.display())).with_source(e)
        }),
        _ => Ok(()),
    }
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
