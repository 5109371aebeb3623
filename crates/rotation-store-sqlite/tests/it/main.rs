//! Integration tests of the SQLite store, on temporary database files.

mod concurrency;
mod conformance;
mod connect;
mod entities;
mod records;
mod runs;
mod support;
