//! `rotation-store-sqlite`: the [`StateStore`](rotation_core::ports::StateStore)
//! port on one SQLite database file, through sqlx.
//!
//! - WAL journal, `synchronous = NORMAL`, foreign keys on, a small pool.
//! - The schema is embedded (`migrations/`) and applied on [`SqliteStore::connect`].
//! - Write transactions begin with `BEGIN IMMEDIATE`, so writers in several
//!   processes queue on the database lock (up to [`BUSY_TIMEOUT`]) rather than
//!   failing when a reader upgrades to a writer. Dropping one rolls back.
//! - At most one non-terminal run per target is enforced by a partial unique
//!   index; violating it is `concurrent_rotation`.
//! - Timestamps are stored as unix microseconds, JSON as text; every stored
//!   value is re-validated when read, and a malformed one is `tampered`.

mod binds;
mod connect;
mod error;
mod keyrings;
mod queries;
mod rows;
mod secrets;
mod snapshot;
mod store;
mod tx;

pub use connect::{BUSY_TIMEOUT, SqliteStore};
