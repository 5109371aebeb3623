//! `rotation-store-pg`: the [`StateStore`](rotation_core::ports::StateStore)
//! port on PostgreSQL, through sqlx, for several processes (and later
//! several server replicas) sharing one database.
//!
//! The semantics are those of the SQLite store, so the engine runs the same
//! on both; what differs is how the database coordinates processes:
//!
//! - The schema is embedded (`migrations/`) and applied on
//!   [`PgStore::connect`]; sqlx holds a session advisory lock while it
//!   migrates, so processes connecting at once apply each migration once.
//! - Write transactions are serialised across every process using the
//!   database, as the port requires: each takes a transaction-scoped
//!   advisory lock ([`WRITER_LOCK`]) right after `BEGIN`, waiting up to
//!   [`WRITE_LOCK_TIMEOUT`]. Within one process they first queue on an async
//!   lock so waiting writers hold no pooled connection. Reads never wait.
//! - Independently of that lock, the statements that coordinate processes
//!   lock what they touch: `audit_head` inside a transaction reads the single
//!   head row `FOR UPDATE` (the hash chain stays linear), and
//!   `claim_due_schedules` and `claim_outbox` claim with `FOR UPDATE SKIP
//!   LOCKED` (concurrent claimers get disjoint schedules and messages).
//! - At most one non-terminal run per target is enforced by a partial unique
//!   index; violating it is `concurrent_rotation`.
//! - Bulk writes (`insert_records`, `resign_records`, `put_values`,
//!   `reseal_values`, `enqueue_outbox`) are one statement per 10,000 rows
//!   over `UNNEST`ed arrays, not one round trip per row.
//! - Timestamps are BIGINT unix microseconds, ids TEXT in the `"C"`
//!   collation (byte order, whatever the database locale), JSON TEXT
//!   stored verbatim. Every stored value is re-validated when read, and a
//!   malformed one is `tampered`.
//! - Connection failures, a bad URL, a server that is down or goes away are
//!   `backend_unavailable`; messages show the URL with its password
//!   replaced by `***`, never the password.

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
mod url;

pub use connect::{PgStore, WRITE_LOCK_TIMEOUT, WRITER_LOCK};
pub use url::redact_url;
