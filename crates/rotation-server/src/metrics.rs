//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.
//!
//! - `rotation_rotations_total{kind, outcome}`: rotations by target kind
//!   (`authority`, `keyring`) and outcome (`completed`, `failed`,
//!   `conflict`, `deferred`, `skipped`), from the API and the worker.
//! - `rotation_rotation_duration_seconds{kind}`: histogram of their durations.
//! - `rotation_notifications_total{outcome}`: outbox deliveries
//!   (`delivered`, `retrying`) by the worker and the API.
//! - `rotation_active_runs`, `rotation_keys_in_grace`, `rotation_due_schedules`,
//!   `rotation_outbox_pending`, `rotation_orphaned_schedules`: gauges read
//!   from the store at each scrape.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rotation_core::Engine;
use rotation_core::authority::EffectiveKeyState;
use rotation_core::engine::{DispatchReport, ScheduledOutcome};
use rotation_core::schedule::ScheduleState;
use rotation_core::{Reason, Result};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Most pending outbox messages counted by the gauge (it saturates there).
const OUTBOX_GAUGE_LIMIT: usize = 100_000;

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the recorder once per process (several servers in one test
/// process share it).
pub(crate) fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                Matcher::Full("rotation_rotation_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("rotation_rotations_total", "Rotations by target kind and outcome.");
    metrics::describe_histogram!(
        "rotation_rotation_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of rotations."
    );
    metrics::describe_gauge!("rotation_active_runs", "Rotation runs not yet terminal.");
    metrics::describe_gauge!("rotation_keys_in_grace", "Signing keys in their grace period.");
    metrics::describe_gauge!("rotation_due_schedules", "Pending schedules whose time has come.");
    metrics::describe_counter!(
        "rotation_notifications_total",
        "Outbox delivery attempts by outcome (delivered, retrying)."
    );
    metrics::describe_gauge!("rotation_outbox_pending", "Notifications not yet delivered.");
    metrics::describe_gauge!(
        "rotation_orphaned_schedules",
        "Schedules orphaned after their retries ran out (until `schedule resume`)."
    );
    metrics::describe_gauge!(
        "rotation_overdue_targets",
        "Targets whose credential is older than its rotation period or policy allows (as in `rotation report`)."
    );
    metrics::describe_gauge!("rotation_stuck_runs", "Runs whose lease expired before they finished.");
    metrics::describe_gauge!(
        "rotation_pending_revocations",
        "Keys past their grace period, awaiting revocation."
    );
    metrics::describe_gauge!(
        "rotation_grace_ending_soon",
        "Keys whose grace period ends within 24 hours."
    );
}

/// The Prometheus text exposition.
pub(crate) fn render() -> String {
    init().render()
}

fn outcome_of<T>(result: &std::result::Result<T, crate::error::ApiError>) -> &'static str {
    match result {
        Ok(_) => "completed",
        Err(e) if e.reason() == Reason::ConcurrentRotation => "conflict",
        Err(_) => "failed",
    }
}

/// Records one rotation started through the API.
pub(crate) fn record_rotation<T>(
    kind: &'static str,
    result: &std::result::Result<T, crate::error::ApiError>,
    took: Duration,
) {
    let outcome = outcome_of(result);
    metrics::counter!("rotation_rotations_total", "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!("rotation_rotation_duration_seconds", "kind" => kind).record(took.as_secs_f64());
}

/// Records what a scheduler pass did.
pub(crate) fn record_outcomes(outcomes: &[ScheduledOutcome]) {
    for o in outcomes {
        let outcome = if o.result.is_some() {
            "completed"
        } else if o.skipped {
            "skipped"
        } else if o.deferred {
            "deferred"
        } else {
            "failed"
        };
        metrics::counter!("rotation_rotations_total", "kind" => o.target.kind(), "outcome" => outcome).increment(1);
    }
}

/// Records what an outbox dispatch did.
pub(crate) fn record_dispatch(report: &DispatchReport) {
    metrics::counter!("rotation_notifications_total", "outcome" => "delivered").increment(report.delivered);
    metrics::counter!("rotation_notifications_total", "outcome" => "retrying").increment(report.retrying);
}

/// Sets the gauges from the store; a failure is logged and leaves them as they were.
pub(crate) async fn refresh_gauges(engine: &Engine) {
    if let Err(e) = try_refresh(engine).await {
        tracing::warn!(reason = %e.reason, message = %e.message, "cannot refresh gauges");
    }
}

async fn try_refresh(engine: &Engine) -> Result<()> {
    let store = engine.store();
    let now = engine.now();
    let active = store.list_active_runs().await?.len();
    let mut in_grace = 0usize;
    for authority in store.list_authorities().await? {
        in_grace += store
            .list_keys(&authority.id)
            .await?
            .iter()
            .filter(|k| matches!(k.effective_state(now), EffectiveKeyState::Grace))
            .count();
    }
    let schedules = store.list_schedules(None, false).await?;
    let due = schedules
        .iter()
        .filter(|s| s.state == ScheduleState::Scheduled && s.due_at <= now)
        .count();
    let orphaned = schedules.iter().filter(|s| s.state == ScheduleState::Orphaned).count();
    let outbox_pending = engine.list_outbox(true, OUTBOX_GAUGE_LIMIT).await?.len();
    metrics::gauge!("rotation_active_runs").set(active as f64);
    metrics::gauge!("rotation_keys_in_grace").set(in_grace as f64);
    metrics::gauge!("rotation_due_schedules").set(due as f64);
    metrics::gauge!("rotation_orphaned_schedules").set(orphaned as f64);
    metrics::gauge!("rotation_outbox_pending").set(outbox_pending as f64);
    // The compliance report's figures (`rotation report`).
    let report = engine.compliance_report().await?;
    let sum = |f: fn(&rotation_core::engine::ComplianceItem) -> usize| report.items.iter().map(f).sum::<usize>() as f64;
    metrics::gauge!("rotation_overdue_targets").set(report.overdue as f64);
    metrics::gauge!("rotation_stuck_runs").set(report.stuck_runs.len() as f64);
    metrics::gauge!("rotation_pending_revocations").set(sum(|i| i.pending_revocations.len()));
    metrics::gauge!("rotation_grace_ending_soon").set(sum(|i| i.grace_ending_soon.len()));
    Ok(())
}
