//! CLI integration tests: the `rotation` binary against temp directories.

mod audit;
mod authority;
mod chains;
mod concurrency;
mod day2;
mod hardening;
mod keyrings;
mod master_key;
mod postgres;
mod secrets;
mod support;
mod vault;
