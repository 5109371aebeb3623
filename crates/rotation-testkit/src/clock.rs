//! A clock tests set and advance by hand.

use std::sync::{Mutex, PoisonError};

use chrono::TimeDelta;
use rotation_core::time::{Clock, Timestamp};

/// A [`Clock`] whose time only moves when told to. Share it as
/// `Arc<SettableClock>` between the test and the engine (it coerces to
/// `Arc<dyn Clock>`).
#[derive(Debug)]
pub struct SettableClock {
    now: Mutex<Timestamp>,
}

impl SettableClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> Self {
        SettableClock { now: Mutex::new(now) }
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the clock by `delta` (negative deltas move it back) and
    /// returns the new time.
    pub fn advance(&self, delta: TimeDelta) -> Timestamp {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += delta;
        *now
    }
}

impl Clock for SettableClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
