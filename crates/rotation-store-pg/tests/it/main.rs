//! Integration tests of the PostgreSQL store against a real server.
//!
//! They need `DATABASE_URL` (a role allowed to create databases):
//! `cargo xtask test` starts a throwaway server and sets it. Without it
//! every test that needs the server fails with a message saying so; none
//! is skipped. Each test works in a fresh database of its own.

mod concurrency;
mod conformance;
mod connect;
mod records;
mod support;
