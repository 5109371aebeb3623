//! Integration tests of `rotation-testkit`: the conformance suite on
//! [`MemoryStore`] (directly and behind a fault-free [`FaultyStore`]), the
//! in-memory store's own constraints, fault injection and the settable clock.

mod clock;
mod faulty;
mod memory;
