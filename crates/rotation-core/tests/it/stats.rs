//! `stats` and `stats --reset` after a known mix of rotations, and the
//! retry backoff of a failing scheduled rotation, on the engine with a
//! minimal scripted target whose `set` step moves the settable clock on
//! by a known amount (so every duration is known exactly).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeDelta;
use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::ids::Target;
use rotation_core::policy::{Policy, Procedure, Trigger};
use rotation_core::ports::{
    CredentialTarget, Step, StepContext, StepOutput, StoreOnlyResolver, TargetResolver, Verifier,
};
use rotation_core::run::RunState;
use rotation_core::schedule::ScheduleState;
use rotation_core::secret::{RotationStatus, Secret, SecretType, SecretValue, Strategy};
use rotation_core::{Engine, Error, Reason, Result};
use rotation_testkit::SettableClock;

use crate::support::Harness;

/// A target whose `set` takes `set_takes` of test time, failing the steps
/// named in `fail` (`test`: `verification_failed`, others
/// `rotation_failed`), or every step with `backend_unavailable` while
/// `unavailable`. Counts the `create` steps (one per attempt).
struct Scripted {
    clock: Arc<SettableClock>,
    set_takes: Mutex<TimeDelta>,
    fail: Mutex<Vec<&'static str>>,
    unavailable: Mutex<bool>,
    attempts: Mutex<u32>,
}

impl Scripted {
    fn new(clock: Arc<SettableClock>) -> Self {
        Scripted {
            clock,
            set_takes: Mutex::new(TimeDelta::zero()),
            fail: Mutex::new(Vec::new()),
            unavailable: Mutex::new(false),
            attempts: Mutex::new(0),
        }
    }
}

#[async_trait]
impl CredentialTarget for Scripted {
    fn describe(&self, _secret: &Secret) -> String {
        "scripted target".into()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        let step = ctx.step.as_str();
        if ctx.step == Step::Create {
            *self.attempts.lock().unwrap() += 1;
        }
        if *self.unavailable.lock().unwrap() {
            return Err(Error::backend("target unreachable"));
        }
        if ctx.step == Step::Set {
            self.clock.advance(*self.set_takes.lock().unwrap());
        }
        if self.fail.lock().unwrap().contains(&step) {
            let reason = if ctx.step == Step::Test {
                Reason::VerificationFailed
            } else {
                Reason::RotationFailed
            };
            return Err(Error::new(reason, format!("{step} failed (scripted)")));
        }
        Ok(StepOutput {
            log: format!("{step} ok"),
            ..StepOutput::default()
        })
    }
}

struct Resolver(Arc<Scripted>);

impl TargetResolver for Resolver {
    fn target(&self, _secret: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        Ok(self.0.clone())
    }
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        StoreOnlyResolver.verifier(name)
    }
}

struct World {
    h: Harness,
    target: Arc<Scripted>,
}

impl World {
    fn new() -> Self {
        let h = Harness::new();
        let target = Arc::new(Scripted::new(h.clock.clone()));
        World { h, target }
    }

    fn engine(&self) -> Engine {
        self.h
            .engine("stats")
            .with_resolver(Arc::new(Resolver(self.target.clone())))
    }

    async fn policy(&self, name: &str, f: impl FnOnce(&mut Procedure)) {
        let mut procedure = Procedure {
            strategy: Some(Strategy::Staged),
            ..Procedure::default()
        };
        f(&mut procedure);
        let engine = self.engine();
        engine
            .set_policy(Policy {
                name: name.into(),
                trigger: Trigger::MaxAgeDays(30),
                migrate: false,
                retire_old: false,
                updated_at: engine.now(),
                procedure,
            })
            .await
            .unwrap();
    }

    async fn put(&self, path: &str, policy: &str) {
        self.engine()
            .put_secret(PutSecret {
                path: path.into(),
                secret_type: Some(SecretType::Password),
                value: Some(SecretValue::new(format!("{path}-initial-value"))),
                policy: Some(policy.into()),
                ..PutSecret::default()
            })
            .await
            .unwrap();
    }

    /// Rotates `path` now with `set` taking `seconds` of test time.
    async fn rotate(&self, path: &str, seconds: i64) -> Result<rotation_core::engine::SecretRotationResult> {
        *self.target.set_takes.lock().unwrap() = TimeDelta::seconds(seconds);
        self.engine()
            .rotate_secret(SecretRotateRequest {
                path: path.into(),
                ..SecretRotateRequest::default()
            })
            .await
    }

    async fn last_status(&self, path: &str) -> RotationStatus {
        self.engine().secret_history(path, 1).await.unwrap()[0].status
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn stats_count_successes_failures_rollbacks_durations_and_active_work() {
    let w = World::new();
    let engine = w.engine();
    w.policy("ok", |_| {}).await;
    w.policy("keep", |p| p.auto_rollback = false).await;
    for path in ["app/a", "app/b", "app/rb", "app/stuck"] {
        w.put(path, "ok").await;
    }
    w.put("app/keep", "keep").await;

    let empty = engine.stats().await.unwrap();
    assert_eq!(
        (
            empty.total_rotations,
            empty.active_rotations,
            empty.success_rate,
            empty.avg_duration_seconds,
            empty.p95_duration_seconds,
            empty.since
        ),
        (0, 0, 0.0, 0.0, 0.0, None)
    );

    // Three successes: 10 s, 20 s, 30 s.
    w.rotate("app/a", 10).await.unwrap();
    w.rotate("app/b", 20).await.unwrap();
    w.rotate("app/a", 30).await.unwrap();
    // A failure left in place (auto_rollback false): 40 s.
    w.target.fail.lock().unwrap().push("test");
    let e = w.rotate("app/keep", 40).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    assert_eq!(w.last_status("app/keep").await, RotationStatus::Failed);
    // A failure rolled back: 100 s.
    let e = w.rotate("app/rb", 100).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    assert!(e.message.contains("rolled back"), "{e}");
    assert_eq!(w.last_status("app/rb").await, RotationStatus::RolledBack);
    w.target.fail.lock().unwrap().clear();
    // An outage: the run is left in progress for a resume.
    *w.target.unavailable.lock().unwrap() = true;
    let e = w.rotate("app/stuck", 0).await.unwrap_err();
    assert_eq!(e.reason, Reason::BackendUnavailable, "{e}");
    *w.target.unavailable.lock().unwrap() = false;
    let active = w.h.store.list_active_runs().await.unwrap();
    assert_eq!(active.len(), 1, "{active:?}");

    // Schedules: two waiting, one orphaned (not counted).
    for path in ["app/a", "app/b", "app/rb"] {
        engine
            .add_policy_schedule(Target::Secret(path.into()), "ok", 0)
            .await
            .unwrap();
    }
    let mut orphan = engine
        .list_schedules(Some(&Target::Secret("app/rb".into())), false)
        .await
        .unwrap()
        .remove(0);
    orphan.state = ScheduleState::Orphaned;
    let mut tx = w.h.store.begin().await.unwrap();
    tx.update_schedule(&orphan).await.unwrap();
    tx.commit().await.unwrap();

    let stats = engine.stats().await.unwrap();
    assert_eq!(
        (
            stats.total_rotations,
            stats.successful_rotations,
            stats.failed_rotations,
            stats.rollbacks
        ),
        (5, 3, 1, 1),
        "{stats:?}"
    );
    assert!(close(stats.success_rate, 0.6), "{stats:?}");
    // (10 + 20 + 30 + 40 + 100) / 5 = 40; p95 by nearest rank: the 5th of 5.
    assert!(close(stats.avg_duration_seconds, 40.0), "{stats:?}");
    assert!(close(stats.p95_duration_seconds, 100.0), "{stats:?}");
    assert_eq!(stats.active_schedules, 2, "{stats:?}");
    assert_eq!(stats.active_rotations, 1, "{stats:?}");
    assert_eq!(stats.since, None);

    // Reset: only rotations that end after it count; runs in progress are
    // always shown; runs, history and schedules are kept; the reset is audited.
    w.h.clock.advance(TimeDelta::seconds(5));
    let reset_at = engine.reset_stats().await.unwrap();
    assert_eq!(reset_at, engine.now());
    let after = engine.stats().await.unwrap();
    assert_eq!(after.since, Some(reset_at));
    assert_eq!(
        (
            after.total_rotations,
            after.successful_rotations,
            after.failed_rotations,
            after.rollbacks,
            after.success_rate,
            after.avg_duration_seconds,
            after.p95_duration_seconds
        ),
        (0, 0, 0, 0, 0.0, 0.0, 0.0),
        "{after:?}"
    );
    assert_eq!(after.active_schedules, 2, "schedules are not rotations: {after:?}");
    assert_eq!(
        after.active_rotations, 1,
        "a run in progress is shown whenever it began: {after:?}"
    );
    assert_eq!(
        engine.secret_history("app/a", 10).await.unwrap().len(),
        2,
        "history is kept"
    );
    assert_eq!(w.h.store.list_active_runs().await.unwrap().len(), 1, "runs are kept");
    let events = engine.audit_events(1000).await.unwrap();
    assert!(events.iter().any(|e| e.event == "stats_reset"), "the reset is audited");

    // After the reset: one success of 7 s and one rollback of 3 s.
    w.h.clock.advance(TimeDelta::seconds(1));
    w.rotate("app/b", 7).await.unwrap();
    w.target.fail.lock().unwrap().push("set");
    let e = w.rotate("app/a", 3).await.unwrap_err();
    assert_eq!(e.reason, Reason::RotationFailed, "{e}");
    w.target.fail.lock().unwrap().clear();
    let again = engine.stats().await.unwrap();
    assert_eq!(
        (
            again.total_rotations,
            again.successful_rotations,
            again.failed_rotations,
            again.rollbacks
        ),
        (2, 1, 0, 1),
        "{again:?}"
    );
    assert!(close(again.success_rate, 0.5), "{again:?}");
    assert!(close(again.avg_duration_seconds, 5.0), "{again:?}");
    assert!(close(again.p95_duration_seconds, 7.0), "{again:?}");
    assert_eq!(again.since, Some(reset_at));

    // The interrupted run, begun before the reset and resumed after it,
    // counts once it ends.
    engine.process_scheduled_rotations().await.unwrap();
    assert!(w.h.store.list_active_runs().await.unwrap().is_empty());
    let runs = w.h.store.list_runs(None, 100).await.unwrap();
    assert!(runs.iter().all(|r| r.state != RunState::Creating), "{runs:?}");
    let last = engine.stats().await.unwrap();
    assert_eq!((last.total_rotations, last.active_rotations), (3, 0), "{last:?}");
}

/// Schedule state and attempts of the one schedule.
async fn schedule_state(engine: &Engine) -> (ScheduleState, u32) {
    let all = engine.list_schedules(None, false).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    (all[0].state, all[0].attempts)
}

#[tokio::test]
async fn a_failing_scheduled_rotation_backs_off_60_then_120_then_240_seconds_then_is_orphaned() {
    let w = World::new();
    let engine = w.engine();
    w.policy("p", |p| {
        p.max_retries = 3;
        p.retry_backoff_seconds = 60;
    })
    .await;
    w.put("app/flaky", "p").await;
    engine
        .add_policy_schedule(Target::Secret("app/flaky".into()), "p", 0)
        .await
        .unwrap();
    w.target.fail.lock().unwrap().push("set");
    let attempts = || *w.target.attempts.lock().unwrap();

    // Not due yet: nothing.
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(attempts(), 0);

    // Due: the first attempt fails (rolled back).
    w.h.clock.advance(TimeDelta::days(31));
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(attempts(), 1);
    assert_eq!(w.last_status("app/flaky").await, RotationStatus::RolledBack);
    assert_eq!(schedule_state(&engine).await, (ScheduleState::Scheduled, 1));

    // Backoffs: 60 s, then 120 s, then 240 s. One second short of each:
    // no attempt; one second past: an attempt.
    for (n, backoff) in [(2u32, 60i64), (3, 120), (4, 240)] {
        w.h.clock.advance(TimeDelta::seconds(backoff - 1));
        engine.process_scheduled_rotations().await.unwrap();
        assert_eq!(attempts(), n - 1, "no retry before {backoff} s have passed");
        assert_eq!(schedule_state(&engine).await, (ScheduleState::Scheduled, n - 1));
        w.h.clock.advance(TimeDelta::seconds(2));
        engine.process_scheduled_rotations().await.unwrap();
        assert_eq!(attempts(), n, "a retry once {backoff} s have passed");
    }
    // The fourth failure exceeds max_retries 3: orphaned, with a notice.
    assert_eq!(schedule_state(&engine).await, (ScheduleState::Orphaned, 4));
    let history = engine.secret_history("app/flaky", 100).await.unwrap();
    assert_eq!(history.len(), 4);
    assert!(history.iter().all(|h| h.status == RotationStatus::RolledBack));
    let events = engine.audit_events(1000).await.unwrap();
    assert!(
        events.iter().any(|e| e.event == "schedule_orphaned"),
        "the orphaning is audited"
    );

    // Orphaned: no more automatic attempts, however long we wait.
    w.h.clock.advance(TimeDelta::days(2));
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(attempts(), 4);
    assert_eq!(schedule_state(&engine).await, (ScheduleState::Orphaned, 4));
}
