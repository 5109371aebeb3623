//! [`SettableClock`] tests.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::time::Clock;
use rotation_testkit::SettableClock;
use rotation_testkit::fixtures::{at, t0};

#[test]
fn starts_where_told_and_moves_only_when_told() {
    let clock = SettableClock::new(t0());
    assert_eq!(clock.now(), t0());
    assert_eq!(clock.now(), t0(), "time does not pass by itself");

    assert_eq!(clock.advance(TimeDelta::seconds(90)), at(90));
    assert_eq!(clock.now(), at(90));
    clock.advance(TimeDelta::seconds(-30));
    assert_eq!(clock.now(), at(60), "negative deltas move the clock back");

    clock.set(at(-3600));
    assert_eq!(clock.now(), at(-3600), "set moves backwards too");
}

#[test]
fn is_shared_as_a_clock_across_threads() {
    let clock = Arc::new(SettableClock::new(t0()));
    let as_port: Arc<dyn Clock> = clock.clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let clock = Arc::clone(&clock);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    clock.advance(TimeDelta::milliseconds(1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(as_port.now(), t0() + TimeDelta::milliseconds(400));
}
