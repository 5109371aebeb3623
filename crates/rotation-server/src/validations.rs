//! The audit trail of `:validate`: attempts are counted per token and
//! secret in memory and written as one `secret_validated` event per pair
//! and interval (and after the last request at shutdown), so guessing leaves a trace without one
//! audit event per guess.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rotation_core::engine::ValidationTally;
use rotation_core::time::Timestamp;
use tokio::sync::watch;

use crate::AppState;

/// Attempts not yet written, by (token id, secret path).
#[derive(Default)]
pub(crate) struct Validations {
    pending: Mutex<HashMap<(String, String), ValidationTally>>,
}

impl Validations {
    /// Counts one validation by `token_id` of the secret at `path`.
    pub(crate) fn count(&self, token_id: &str, path: &str, valid: bool, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let tally = pending
            .entry((token_id.to_owned(), path.to_owned()))
            .or_insert(ValidationTally {
                attempts: 0,
                valid: 0,
                first_at: at,
                last_at: at,
            });
        tally.attempts += 1;
        tally.valid += u64::from(valid);
        tally.last_at = at;
    }

    fn take(&self) -> HashMap<(String, String), ValidationTally> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Writes the counted attempts as audit events; what cannot be written
/// (store unavailable) is counted again for the next flush.
pub(crate) async fn flush(state: &AppState) {
    for ((token_id, path), tally) in state.validations.take() {
        let engine = state.engine(format!("token:{token_id}"));
        if let Err(e) = engine.record_validations(&path, tally).await {
            tracing::warn!(reason = %e.reason, message = %e.message, "cannot audit validation attempts; retrying at the next flush");
            let mut pending = state.validations.pending.lock().unwrap_or_else(|p| p.into_inner());
            let t = pending.entry((token_id, path)).or_insert(ValidationTally {
                attempts: 0,
                valid: 0,
                first_at: tally.first_at,
                last_at: tally.last_at,
            });
            t.attempts += tally.attempts;
            t.valid += tally.valid;
            t.first_at = t.first_at.min(tally.first_at);
            t.last_at = t.last_at.max(tally.last_at);
        }
    }
    state.limits.forget_idle();
}

/// Flushes every `interval` until `shutdown` turns true (the server
/// flushes once more after its last request).
pub(crate) async fn run(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        flush(&state).await;
    }
}
