//! Mapping of sqlx errors onto the core [`Error`] and its stable reasons.
//!
//! Messages name the operation and the object concerned, never a bound
//! value (PostgreSQL's primary messages name constraints, not values; the
//! DETAIL field, which may hold values, is not shown) and never the
//! connection password.

use rotation_core::{Error, Reason};
use sqlx::error::ErrorKind;

/// Name of the partial unique index allowing one non-terminal run per target.
pub(crate) const ONE_ACTIVE_RUN: &str = "runs_one_active_per_target";

/// SQLSTATE of `lock_not_available` (a `lock_timeout` expired).
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Why the server could not be used, in words, for connection-level
/// failures (`None` for an error of the statement itself).
pub(crate) fn unavailable_cause(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Io(e) => Some(format!("the connection to the server failed: {e}")),
        sqlx::Error::PoolTimedOut => Some("no connection to the server could be obtained in time".to_owned()),
        sqlx::Error::PoolClosed => Some("the store's connection pool is closed".to_owned()),
        sqlx::Error::Tls(e) => Some(format!("TLS with the server failed: {e}")),
        sqlx::Error::Protocol(e) => Some(format!("the connection to the server broke: {e}")),
        sqlx::Error::WorkerCrashed => Some("the connection worker stopped".to_owned()),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            // Class 08: connection exception; class 57: operator intervention
            // (the server is shutting down, or terminated this session).
            (code.starts_with("08") || code.starts_with("57"))
                .then(|| format!("the server ended the session: {} (SQLSTATE {code})", db.message()))
        }
        _ => None,
    }
}

/// `err` in words: for a database error, the server's primary message and
/// SQLSTATE (never its DETAIL, which may quote values).
pub(crate) fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// An error of the store itself, for failed operations that have no more
/// specific reason: `backend_unavailable`.
pub(crate) fn backend(op: &str, err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::RowNotFound => Error::not_found(format!("PostgreSQL store: {op}: no such row")),
        err => {
            let message = match unavailable_cause(&err) {
                Some(cause) => format!("PostgreSQL store: {op} failed: {cause}"),
                None => format!("PostgreSQL store: {op} failed: {}", describe(&err)),
            };
            Error::backend(message).with_source(err)
        }
    }
}

/// Whether `err` is a violated UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Whether `err` is a violated uniqueness constraint (or unique index) named `name`.
pub(crate) fn is_unique_violation_of(err: &sqlx::Error, name: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation && db.constraint() == Some(name))
}

/// Whether `err` says the transaction was aborted by an earlier statement
/// (SQLSTATE 25P02, `in_failed_sql_transaction`).
pub(crate) fn is_aborted_transaction(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("25P02"))
}

/// Whether `err` is an expired `lock_timeout`.
pub(crate) fn is_lock_timeout(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// Maps an insert failure: a uniqueness violation becomes
/// `already_exists` with `what` (e.g. `authority org-acme`) in the message.
pub(crate) fn insert(op: &str, what: &str, err: sqlx::Error) -> Error {
    if is_unique_violation(&err) {
        Error::new(Reason::AlreadyExists, format!("{what} already exists"))
    } else {
        backend(op, err)
    }
}

/// The error for a stored value that does not decode: `tampered`.
pub(crate) fn tampered(table: &str, key: &str, column: &str, problem: impl std::fmt::Display) -> Error {
    Error::tampered(format!(
        "stored {table} row {key} is malformed: column {column}: {problem}"
    ))
}

/// The error for an update that matched no row: `not_found`.
pub(crate) fn missing(what: impl std::fmt::Display) -> Error {
    Error::not_found(format!("{what} not found"))
}
