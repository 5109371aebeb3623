//! `rotation-store-vault`: HashiCorp Vault / OpenBao adapters of the
//! rotation ports.
//!
//! - [`VaultClient`]: the HTTP client (reqwest on rustls with ring, like
//!   the project's other HTTP adapters) with token or AppRole
//!   authentication ([`VaultAuth`]), renewal before expiry, the optional
//!   namespace header, timeouts, and retries with backoff for safe calls.
//! - [`VaultKvBackend`]: the `SecretBackend` port over a KV v2 mount (see
//!   [`kv`] for the documented layout).
//! - [`VaultTransitCustody`]: the `KeyCustody` port over a Transit mount
//!   (see [`transit`] for the key mapping).
//!
//! A hand-written client over reqwest rather than a Vault client crate:
//! the adapters use a dozen endpoints, the client must keep Vault's error
//! messages while mapping statuses to the engine's reasons, must never
//! print tokens, and must use the workspace's one TLS stack (rustls on
//! ring); the Vault crates on crates.io pull other TLS or HTTP stacks.
//!
//! Errors: connection errors, timeouts, 5xx (a sealed server answers 503),
//! 412, 429 and a KV mount still upgrading are `backend_unavailable` (safe
//! calls are retried with backoff first); 401 is `unauthorized`; 403 is
//! `forbidden` (an AppRole client logs in again once first); a
//! check-and-set mismatch is `concurrent_rotation`; other 4xx are
//! `invalid_input`; 404 is `None` or `not_found` where the port says so.
//! The message is `vault <METHOD> /v1/<path>: <status> <Vault's errors>`,
//! never with a token.
//!
//! Tests (`tests/it`) run against a real server (`VAULT_ADDR`,
//! `VAULT_TOKEN`; `cargo xtask test` starts OpenBao) and fail without one.

pub mod client;
pub mod kv;
pub mod transit;

pub use client::{Retry, VaultAuth, VaultClient, VaultConfig};
pub use kv::VaultKvBackend;
pub use transit::{TRANSIT_CUSTODY, VaultTransitCustody};
