//! The scheduler worker: every interval, resumes runs whose lease expired
//! and runs due schedules (`Engine::process_scheduled_rotations`, which
//! also ends dual-write grace periods), then delivers the notification
//! outbox (`Engine::dispatch_outbox`) and signs an audit checkpoint when
//! the log grew (`Engine::sign_audit_checkpoint`). Claims and leases live in the
//! store, so any number of replicas may run it.
//! On shutdown it stops between rotations: the one in progress finishes,
//! schedules it claimed but did not start are handed back.

use std::time::Duration;

use rotation_core::Engine;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::metrics;

/// Runs passes until `shutdown` turns true.
pub(crate) async fn run(engine: Engine, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        if *shutdown.borrow() {
            break;
        }
        // Not raced against shutdown (a rotation is never cut off): the
        // pass checks between rotations and stops early.
        let keep_going = || !*shutdown.borrow();
        match engine.process_scheduled_rotations_while(&keep_going).await {
            Ok(outcomes) => {
                metrics::record_outcomes(&outcomes);
                for o in &outcomes {
                    if o.result.is_some() {
                        tracing::info!(rotation_id = %o.rotation_id, target = %o.target, "scheduled rotation completed");
                    } else if !o.skipped {
                        tracing::warn!(
                            rotation_id = %o.rotation_id,
                            target = %o.target,
                            reason = o.error_reason.as_deref().unwrap_or(""),
                            deferred = o.deferred,
                            "scheduled rotation did not complete"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(reason = %e.reason, message = %e.message, "scheduler pass failed"),
        }
        // Also after a failed pass: earlier messages may be waiting.
        dispatch(&engine).await;
        checkpoint(&engine).await;
    }
    tracing::info!("scheduler worker stopped");
}

/// Signs an audit checkpoint when the log grew since the newest one, so
/// every committed batch of entries is covered within one interval.
pub(crate) async fn checkpoint(engine: &Engine) {
    let current = engine.audit_checkpoint_is_current().await;
    if matches!(current, Ok(true)) {
        return;
    }
    match engine.sign_audit_checkpoint().await {
        Ok(cp) => tracing::info!(size = cp.size, "audit checkpoint signed"),
        Err(e) => tracing::warn!(reason = %e.reason, message = %e.message, "audit checkpoint not signed"),
    }
}

/// Delivers the due outbox messages; failures stay queued with a backoff.
pub(crate) async fn dispatch(engine: &Engine) {
    match engine.dispatch_outbox().await {
        Ok(report) => {
            metrics::record_dispatch(&report);
            if report.retrying > 0 {
                tracing::warn!(
                    delivered = report.delivered,
                    retrying = report.retrying,
                    "some notifications were not delivered; they are retried later"
                );
            } else if report.delivered > 0 {
                tracing::info!(delivered = report.delivered, "notifications delivered");
            }
        }
        Err(e) => tracing::warn!(reason = %e.reason, message = %e.message, "notification dispatch failed"),
    }
}
