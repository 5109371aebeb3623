//! Mapping of sqlx errors onto the core [`Error`] and its stable reasons.
//!
//! Messages name the operation and the object concerned, never a bound
//! value (SQLite's own messages name tables and columns only).

use rotation_core::{Error, Reason};
use sqlx::error::ErrorKind;

/// An error of the store itself, for failed operations that have no more
/// specific reason: `backend_unavailable`.
pub(crate) fn backend(op: &str, err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::RowNotFound => Error::not_found(format!("SQLite store: {op}: no such row")),
        err => Error::backend(format!("SQLite store: {op} failed: {err}")).with_source(err),
    }
}

/// Whether `err` is a violated UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Whether `err` is a violated uniqueness constraint on `table.column`
/// (SQLite reports `UNIQUE constraint failed: table.column`).
pub(crate) fn is_unique_violation_on(err: &sqlx::Error, table_column: &str) -> bool {
    match err {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => db
            .message()
            .rsplit(": ")
            .next()
            .is_some_and(|cols| cols.split(", ").any(|c| c == table_column)),
        _ => false,
    }
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
