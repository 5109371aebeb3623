//! `rotation-core`: the domain, the ports and the rotation engine.
//!
//! **Architecture invariant:** this crate does no I/O and knows no crypto
//! library, database or HTTP client. It sits on the traits in [`ports`];
//! adapters implement them (`rotation-crypto` on ring, `rotation-store-*`
//! on databases) and the binaries wire them together.
//!
//! **Invariant:** every state transition of a rotation run is persisted,
//! with its audit events, before the side effect that follows it.

pub mod audit;
pub mod authority;
pub mod canonical;
pub mod chain;
pub mod engine;
pub mod error;
pub mod ids;
pub mod keyring;
pub mod outbound;
pub mod policy;
pub mod ports;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod time;
pub mod tlog;

pub use engine::{Engine, EngineConfig};
pub use error::{Error, Reason, Result};
