//! Tests of the Vault/OpenBao adapters against a real server.
//!
//! They need `VAULT_ADDR` and `VAULT_TOKEN` (a root token, or one allowed
//! to manage policies, mounts and AppRole); `cargo xtask test` starts an
//! OpenBao dev server and sets both. Without them these tests **fail**;
//! they never pass by skipping. Every test works under a fresh random KV
//! prefix (and transit key names), so they run in parallel on one server.

mod auth;
mod conformance;
mod faults;
mod kv;
mod restart;
mod support;
mod transit;
