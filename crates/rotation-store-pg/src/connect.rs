//! Opening the store: URL, connection options, the pool and the migrations.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rotation_core::{Error, Reason, Result};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

use crate::error::{describe, unavailable_cause};
use crate::url::{redact_url, scrub};

/// How long a write transaction waits for the write lock (held by another
/// write transaction of this process or of another one) before giving up
/// with `backend_unavailable`.
pub const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Key of the transaction-scoped advisory lock every write transaction
/// takes when it begins (`pg_advisory_xact_lock`): the bytes of
/// `"rotation"`. Advisory locks are per database, so stores in different
/// databases of one server do not contend.
pub const WRITER_LOCK: i64 = 0x726f_7461_7469_6f6e;

/// Connections in each process's pool.
const POOL_SIZE: u32 = 5;

/// How long connecting (or waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A session idle inside a transaction for longer than this (a process
/// that hangs while holding the write lock) is ended by the server, which
/// rolls its transaction back and releases its locks. Engine transactions
/// never wait on anything but the database.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// The schema, embedded in the binary and applied on connect.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The [`rotation_core::ports::StateStore`] on one PostgreSQL database,
/// shared by any number of processes.
///
/// Reads run on a small pool and see committed data. Write transactions
/// are serialised across every process using the database (see the crate
/// documentation): a second one waits for the first to commit or roll
/// back, up to [`WRITE_LOCK_TIMEOUT`]. Cloning is cheap and shares the
/// pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) writer: Arc<Mutex<()>>,
    pub(crate) write_lock_timeout: Duration,
    /// `BEGIN` and the lock timeout, sent as one statement.
    pub(crate) begin_sql: String,
    redacted_url: Arc<str>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url`
    /// (`postgres://user:password@host:port/database`, or `postgresql://`,
    /// with libpq-style query parameters such as `sslmode`) and applies
    /// pending migrations.
    ///
    /// The database must exist; the tables are created in it. A URL that is
    /// not a PostgreSQL URL or does not parse, a server that cannot be
    /// reached, refused credentials and a missing database are all
    /// `backend_unavailable`, with the URL shown without its password.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let redacted = redact_url(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::backend(format!(
                "{redacted:?} is not a PostgreSQL URL; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| {
                Error::backend(format!(
                    "invalid PostgreSQL store URL {redacted}: {}",
                    scrub(&e.to_string(), url)
                ))
            })?
            .application_name("rotation")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);
        // One direct connection first: the pool retries refused connections
        // until its timeout and then reports only that it timed out, while
        // an operator wants the cause, at once.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                Error::backend(format!(
                    "cannot connect to the PostgreSQL store at {redacted}: no answer within {}s; \
                     is the server running and reachable?",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| connect_error(&e, url, &redacted))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        migrate(&pool, url, &redacted).await?;
        tracing::debug!(url = %redacted, "PostgreSQL store opened");
        Ok(PgStore {
            pool,
            writer: Arc::new(Mutex::new(())),
            write_lock_timeout: WRITE_LOCK_TIMEOUT,
            begin_sql: begin_sql(WRITE_LOCK_TIMEOUT),
            redacted_url: redacted.into(),
        })
    }

    /// This store with another bound on how long a write transaction waits
    /// for the write lock (default [`WRITE_LOCK_TIMEOUT`]; at least 1 ms).
    pub fn with_write_lock_timeout(mut self, timeout: Duration) -> PgStore {
        let timeout = timeout.max(Duration::from_millis(1));
        self.write_lock_timeout = timeout;
        self.begin_sql = begin_sql(timeout);
        self
    }

    /// The underlying pool (for diagnostics and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The store URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// Closes every connection; later calls fail with `backend_unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The statement beginning a write transaction: `BEGIN` and a bound on lock
/// waits for this transaction (neither can fail on a healthy connection; the
/// write lock, which can time out, is taken by a statement of its own, so a
/// timeout rolls back a transaction sqlx knows about).
fn begin_sql(lock_timeout: Duration) -> String {
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = {}",
        lock_timeout.as_millis().max(1)
    )
}

/// The error for a failed first connection: always `backend_unavailable`,
/// with a hint for the usual causes and without the password.
fn connect_error(err: &sqlx::Error, url: &str, redacted: &str) -> Error {
    let hint = match err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => "; check the user name and password in the store URL",
            Some("3D000") => "; create the database first (CREATE DATABASE ...)",
            _ => "",
        },
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => "; is the server running and reachable?",
        _ => "",
    };
    let cause = unavailable_cause(err).unwrap_or_else(|| describe(err));
    Error::backend(scrub(
        &format!("cannot connect to the PostgreSQL store at {redacted}: {cause}{hint}"),
        url,
    ))
}

/// Applies pending migrations (on one pooled connection). sqlx holds a session
/// advisory lock while it migrates, so processes connecting to a new
/// database at once apply each migration exactly once.
async fn migrate(pool: &PgPool, url: &str, redacted: &str) -> Result<()> {
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
            scrub(
                &format!("cannot migrate the PostgreSQL store at {redacted}: {e}{hint}"),
                url,
            ),
        )
    };
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // A failed migration may leave sqlx's session lock held on a
            // pooled connection: end every session before reporting it.
            pool.close().await;
            Err(fail(e))
        }
    }
}
