//! Time: the [`Clock`] port and the timestamp type every record uses.

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};

/// A UTC instant. Everything the engine persists is truncated to whole
/// microseconds so it round-trips exactly through every store (the audit
/// hash covers timestamps).
pub type Timestamp = DateTime<Utc>;

/// Truncates an instant to whole microseconds, the precision of every store.
pub fn truncate(t: Timestamp) -> Timestamp {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// The canonical text form of a timestamp: RFC 3339, microseconds, `Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Source of the current time. Grace periods and leases are computed from
/// it, so tests and rehearsals can move time without sleeping.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// A clock frozen at one instant (the CLI's `ROTATION_NOW`).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}
