//! Engine tests on the in-memory store with the real ring crypto and a
//! settable clock: rotation, rollback, resume after a crash at every step,
//! concurrency, revocation and schedules.

mod keyrings;
mod prepublish;
mod resume;
mod revoke;
mod rotation;
mod schedules;
mod secrets;
mod stats;
mod support;
mod tlog;
mod tlog_note;
mod transparency;
