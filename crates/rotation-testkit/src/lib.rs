//! `rotation-testkit`: **dev-only** helpers for testing the rotation system.
//!
//! This crate is meant for `[dev-dependencies]` only; no production binary
//! may depend on it. It depends on `rotation-core` alone (no crypto library,
//! no database), so every crate's tests can use it.
//!
//! - [`MemoryStore`]: a complete in-memory [`StateStore`] with the
//!   semantics of a SQL store (serialised write transactions working on a
//!   copy of the state, rollback on drop, constraint errors).
//! - [`SettableClock`]: a [`Clock`] tests move by hand.
//! - [`FaultyStore`]: wraps a store and "crashes" it at the N-th commit, to
//!   prove that a rotation interrupted after any step can be resumed.
//! - [`conformance::state_store_suite`]: the behaviour every `StateStore`
//!   adapter must have, run by each adapter's tests; [`fixtures`] builds
//!   the domain values it (and other tests) use.
//!
//! [`StateStore`]: rotation_core::ports::StateStore
//! [`Clock`]: rotation_core::time::Clock

mod clock;
pub mod conformance;
mod faulty;
pub mod fixtures;
mod memory;

pub use clock::SettableClock;
pub use faulty::FaultyStore;
pub use memory::MemoryStore;
