//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.
//!
//! - `rotation_rotations_total{kind, outcome}`: rotations by target kind
//!   (`authority`, `keyring`) and outcome (`completed`, `failed`,
//!   `conflict`, `deferred`, `skipped`), from the API and the worker.
//! - `rotation_rotation_duration_seconds{kind}`: histogram of their durations.
//! - `rotation_notifications_total{outcome}`: outbox deliveries
//!   (`delivered`, `retrying`) by the worker and the API.
//!   Client mistakes (`not_found`, `invalid_*`, `forbidden`, ...) count as
//!   `rejected`, not `failed`.
//! - `rotation_active_runs`, `rotation_keys_in_grace`, `rotation_due_schedules`,
//!   `rotation_outbox_pending`, `rotation_orphaned_schedules` and the
//!   compliance report's figures: gauges read from the store, at most once
//!   per [`GAUGE_MAX_AGE`] per server (scrapes need no token, so a flood of
//!   them must not turn into a flood of store scans).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        Err(e) => outcome_of_reason(e.reason()),
    }
}

/// The outcome label of a rotation that did not complete.
fn outcome_of_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::ConcurrentRotation => "conflict",
        Reason::NotFound
        | Reason::InvalidInput
        | Reason::InvalidPolicy
        | Reason::InvalidScheduleTime
        | Reason::AlreadyExists
        | Reason::Unauthorized
        | Reason::Forbidden
        | Reason::GracePeriodNotExpired
        | Reason::KeyNotInGracePeriod => "rejected",
        _ => "failed",
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
            o.error_reason
                .as_deref()
                .and_then(Reason::parse)
                .map_or("failed", outcome_of_reason)
        };
        metrics::counter!("rotation_rotations_total", "kind" => o.target.kind(), "outcome" => outcome).increment(1);
        if let Some(took) = o.duration_seconds {
            metrics::histogram!("rotation_rotation_duration_seconds", "kind" => o.target.kind()).record(took);
        }
    }
}

/// Records what an outbox dispatch did.
pub(crate) fn record_dispatch(report: &DispatchReport) {
    metrics::counter!("rotation_notifications_total", "outcome" => "delivered").increment(report.delivered);
    metrics::counter!("rotation_notifications_total", "outcome" => "retrying").increment(report.retrying);
}

/// How long gauge figures read from the store are reused.
pub(crate) const GAUGE_MAX_AGE: Duration = Duration::from_secs(5);

/// The gauge figures of one server's store.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    active: usize,
    in_grace: usize,
    due: usize,
    orphaned: usize,
    outbox_pending: usize,
    overdue: usize,
    stuck: usize,
    pending_revocations: usize,
    grace_ending_soon: usize,
}

/// One server's last gauge figures and when they were read; the lock also
/// makes concurrent scrapes wait for one store read instead of each doing it.
#[derive(Default)]
pub(crate) struct GaugeCache(tokio::sync::Mutex<Option<(Instant, Figures)>>);

/// Sets the gauges from the store (or from figures read less than
/// [`GAUGE_MAX_AGE`] ago); a failure is logged and leaves them as they were.
pub(crate) async fn refresh_gauges(engine: &Engine, cache: &GaugeCache) {
    let mut last = cache.0.lock().await;
    let figures = match *last {
        Some((at, figures)) if at.elapsed() < GAUGE_MAX_AGE => figures,
        _ => match read_figures(engine).await {
            Ok(figures) => {
                *last = Some((Instant::now(), figures));
                figures
            }
            Err(e) => {
                tracing::warn!(reason = %e.reason, message = %e.message, "cannot refresh gauges");
                return;
            }
        },
    };
    let set = |name: &'static str, value: usize| metrics::gauge!(name).set(value as f64);
    set("rotation_active_runs", figures.active);
    set("rotation_keys_in_grace", figures.in_grace);
    set("rotation_due_schedules", figures.due);
    set("rotation_orphaned_schedules", figures.orphaned);
    set("rotation_outbox_pending", figures.outbox_pending);
    set("rotation_overdue_targets", figures.overdue);
    set("rotation_stuck_runs", figures.stuck);
    set("rotation_pending_revocations", figures.pending_revocations);
    set("rotation_grace_ending_soon", figures.grace_ending_soon);
}

async fn read_figures(engine: &Engine) -> Result<Figures> {
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
    // The compliance report's figures (`rotation report`).
    let report = engine.compliance_report().await?;
    let sum = |f: fn(&rotation_core::engine::ComplianceItem) -> usize| report.items.iter().map(f).sum::<usize>();
    Ok(Figures {
        active,
        in_grace,
        due,
        orphaned,
        outbox_pending,
        overdue: report.overdue,
        stuck: report.stuck_runs.len(),
        pending_revocations: sum(|i| i.pending_revocations.len()),
        grace_ending_soon: sum(|i| i.grace_ending_soon.len()),
    })
}
