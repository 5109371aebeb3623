//! Secret rotation on the engine: strategies, rollback, resume, retries,
//! statistics, planning and the outbox, with a recording target (a mock
//! is right here: the real targets are tested against real systems in
//! their own crates).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeDelta;
use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::ids::Target;
use rotation_core::policy::{Policy, Procedure, RotationType, Trigger};
use rotation_core::ports::{
    CredentialTarget, Notification, Notifier, StepContext, StepOutput, StoreOnlyTarget, TargetResolver, Verifier,
};
use rotation_core::schedule::ScheduleState;
use rotation_core::secret::{RotationStatus, Secret, SecretType, SecretValue, Stage, Strategy, VersionSelector};
use rotation_core::{Engine, Error, Reason, Result};

use crate::support::Harness;

/// One recorded step: name, current value, pending value, slot.
type StepSeen = (String, Option<String>, Option<String>, Option<String>);

/// A target that records every step with the values it saw and fails the
/// steps it is told to fail.
#[derive(Default)]
struct Recorder {
    steps: Mutex<Vec<StepSeen>>,
    fail: Mutex<Vec<&'static str>>,
    /// Values the "system" accepts (dual-write keeps two).
    accepted: Mutex<Vec<String>>,
    /// `set` takes this long (to overlap rotations).
    slow_set: Mutex<Option<std::time::Duration>>,
    /// Every step fails with `backend_unavailable` (the system is down).
    unavailable: Mutex<bool>,
    /// `set` moves this clock on by this much (a slow system, in test time).
    set_takes: Mutex<Option<(Arc<rotation_testkit::SettableClock>, TimeDelta)>>,
}

#[async_trait]
impl CredentialTarget for Recorder {
    fn describe(&self, _secret: &Secret) -> String {
        "recording target".into()
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        let step = ctx.step.as_str();
        self.steps.lock().unwrap().push((
            step.to_owned(),
            ctx.current.as_ref().map(|v| v.value.expose().to_owned()),
            ctx.pending.as_ref().map(|v| v.value.expose().to_owned()),
            ctx.slot.clone(),
        ));
        if *self.unavailable.lock().unwrap() {
            return Err(Error::backend("target unreachable"));
        }
        if let (rotation_core::ports::Step::Set, Some((clock, by))) = (ctx.step, &*self.set_takes.lock().unwrap()) {
            clock.advance(*by);
        }
        let delay = *self.slow_set.lock().unwrap();
        if let (rotation_core::ports::Step::Set, Some(d)) = (ctx.step, delay) {
            tokio::time::sleep(d).await;
        }
        if self.fail.lock().unwrap().contains(&step) {
            let reason = if step == "test" {
                Reason::VerificationFailed
            } else {
                Reason::RotationFailed
            };
            let leaked = ctx
                .pending
                .as_ref()
                .map(|v| v.value.expose().to_owned())
                .unwrap_or_default();
            // A careless target echoing the value: the engine must redact it.
            return Err(Error::new(reason, format!("{step} failed for value {leaked}")));
        }
        let mut accepted = self.accepted.lock().unwrap();
        match ctx.step {
            rotation_core::ports::Step::Set => {
                if ctx.strategy != Strategy::DualWrite {
                    accepted.retain(|v| Some(v.as_str()) != ctx.current.as_ref().map(|c| c.value.expose()));
                }
                accepted.push(ctx.pending.as_ref().unwrap().value.expose().to_owned());
            }
            rotation_core::ports::Step::Rollback => {
                let pending = ctx.pending.as_ref().map(|p| p.value.expose().to_owned());
                accepted.retain(|v| Some(v) != pending.as_ref());
                if let Some(c) = &ctx.current {
                    accepted.push(c.value.expose().to_owned());
                }
            }
            rotation_core::ports::Step::Disable => {
                let old = ctx.previous.as_ref().map(|p| p.value.expose().to_owned());
                accepted.retain(|v| Some(v) != old.as_ref());
            }
            _ => {}
        }
        // `set` also reports stdout, as a script with `script_log` does,
        // printing the new value base64- and hex-encoded.
        let stdout = (ctx.step == rotation_core::ports::Step::Set).then(|| {
            use base64::Engine as _;
            let pending = ctx.pending.as_ref().map(|p| p.value.expose()).unwrap_or_default();
            format!(
                "b64={} hex={}",
                base64::engine::general_purpose::STANDARD.encode(pending),
                hex::encode(pending)
            )
        });
        Ok(StepOutput {
            log: format!(
                "{step} ok; pending was {:?}",
                ctx.pending.as_ref().map(|p| p.value.expose())
            ),
            stdout,
            ..StepOutput::default()
        })
    }
}

struct Resolver(Arc<Recorder>);

impl TargetResolver for Resolver {
    fn target(&self, secret: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        if secret.path.starts_with("plain/") {
            return Ok(Arc::new(StoreOnlyTarget));
        }
        Ok(self.0.clone())
    }
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        rotation_core::ports::StoreOnlyResolver.verifier(name)
    }
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<(String, Notification)>>,
    down: Mutex<bool>,
}

#[async_trait]
impl Notifier for Inbox {
    async fn notify(&self, _n: &Notification) -> Result<()> {
        Ok(())
    }
    async fn deliver(&self, recipient: &str, n: &Notification) -> Result<()> {
        if *self.down.lock().unwrap() {
            return Err(Error::backend("receiver down"));
        }
        self.got.lock().unwrap().push((recipient.to_owned(), n.clone()));
        Ok(())
    }
}

struct Setup {
    h: Harness,
    target: Arc<Recorder>,
    inbox: Arc<Inbox>,
}

impl Setup {
    fn new() -> Self {
        Setup {
            h: Harness::new(),
            target: Arc::new(Recorder::default()),
            inbox: Arc::new(Inbox::default()),
        }
    }

    fn engine(&self) -> Engine {
        self.h
            .engine("secrets")
            .with_resolver(Arc::new(Resolver(self.target.clone())))
            .with_notifier(self.inbox.clone())
    }

    async fn policy(&self, name: &str, strategy: Strategy, f: impl FnOnce(&mut Procedure)) {
        let mut procedure = Procedure {
            strategy: Some(strategy),
            notify: vec!["https://hooks.example/rotation".into()],
            ..Procedure::default()
        };
        f(&mut procedure);
        self.engine()
            .set_policy(Policy {
                name: name.into(),
                trigger: Trigger::MaxAgeDays(30),
                migrate: false,
                retire_old: false,
                updated_at: self.engine().now(),
                procedure,
            })
            .await
            .unwrap();
    }

    async fn put(&self, path: &str, value: &str, policy: Option<&str>) {
        self.engine()
            .put_secret(PutSecret {
                path: path.into(),
                secret_type: Some(SecretType::Password),
                value: Some(SecretValue::new(value)),
                policy: policy.map(str::to_owned),
                ..PutSecret::default()
            })
            .await
            .unwrap();
    }

    async fn value(&self, path: &str, stage: Stage) -> Option<String> {
        self.engine()
            .get_secret(path, VersionSelector::Stage(stage))
            .await
            .ok()
            .map(|(_, v)| v.expose().to_owned())
    }

    /// A policy schedule of the secret at `path`.
    async fn schedule(&self, path: &str, policy: &str, offset_seconds: i64) -> rotation_core::schedule::Schedule {
        self.engine()
            .add_policy_schedule(Target::Secret(path.into()), policy, offset_seconds)
            .await
            .unwrap()
    }

    /// State and attempts of schedule `id`.
    async fn schedule_state(&self, id: rotation_core::ids::RotationId) -> (ScheduleState, u32) {
        let x = self
            .engine()
            .list_schedules(None, false)
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == id)
            .unwrap();
        (x.state, x.attempts)
    }

    fn steps(&self) -> Vec<String> {
        self.target.steps.lock().unwrap().iter().map(|s| s.0.clone()).collect()
    }
}

fn rotate(path: &str) -> SecretRotateRequest {
    SecretRotateRequest {
        path: path.into(),
        ..SecretRotateRequest::default()
    }
}

#[tokio::test]
async fn staged_rotation_moves_labels_after_verification() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |_| {}).await;
    s.put("app/db", "old-password-1", Some("p")).await;
    *s.target.accepted.lock().unwrap() = vec!["old-password-1".into()];
    let result = s.engine().rotate_secret(rotate("app/db")).await.unwrap();
    assert_eq!(result.status, RotationStatus::Success);
    assert_eq!((result.old_version, result.new_version), (Some(1), Some(2)));
    assert_eq!(s.steps(), ["create", "set", "test", "finish"]);
    let new = s.value("app/db", Stage::Current).await.unwrap();
    assert_ne!(new, "old-password-1");
    assert_eq!(new.len(), 32, "default generator random:32");
    assert_eq!(
        s.value("app/db", Stage::Previous).await.as_deref(),
        Some("old-password-1")
    );
    assert_eq!(s.value("app/db", Stage::Pending).await, None);
    assert_eq!(*s.target.accepted.lock().unwrap(), vec![new]);
    let history = s.engine().secret_history("app/db", 10).await.unwrap();
    assert_eq!(history[0].status, RotationStatus::Success);
    let names: Vec<&str> = history[0].steps.iter().map(|x| x.step.as_str()).collect();
    assert_eq!(names, ["create", "set", "test", "finish"]);
    // The log carried the pending value: redacted.
    let current = s.value("app/db", Stage::Current).await.unwrap();
    assert!(history[0].steps.iter().all(|x| !x.log.contains(&current)));
    assert!(history[0].steps.iter().any(|x| x.log.contains("[redacted]")));
    // Stdout is recorded apart from the log, its encodings of the value redacted.
    let set = history[0].steps.iter().find(|x| x.step == "set").unwrap();
    assert_eq!(set.stdout.as_deref(), Some("b64=[redacted] hex=[redacted]"));
    assert!(!set.log.contains("b64="), "{}", set.log);
    assert!(
        history[0]
            .steps
            .iter()
            .filter(|x| x.step != "set")
            .all(|x| x.stdout.is_none())
    );
    let json = serde_json::to_value(&history[0].steps).unwrap();
    assert!(json[0].get("stdout").is_none(), "absent, not null: {json}");
    assert_eq!(json[1]["stdout"], "b64=[redacted] hex=[redacted]");
}

#[tokio::test]
async fn failed_verification_rolls_back_and_keeps_the_old_value() {
    for strategy in [Strategy::Staged, Strategy::Immediate, Strategy::BlueGreen] {
        let s = Setup::new();
        s.policy("p", strategy, |_| {}).await;
        s.put("app/db", "old-password-1", Some("p")).await;
        *s.target.accepted.lock().unwrap() = vec!["old-password-1".into()];
        s.target.fail.lock().unwrap().push("test");
        let e = s.engine().rotate_secret(rotate("app/db")).await.unwrap_err();
        assert_eq!(e.reason, Reason::VerificationFailed, "{strategy}: {e}");
        assert!(e.message.contains("rolled back"), "{}", e.message);
        assert_eq!(
            s.value("app/db", Stage::Current).await.as_deref(),
            Some("old-password-1"),
            "{strategy}"
        );
        assert_eq!(s.value("app/db", Stage::Pending).await, None, "{strategy}");
        assert!(
            s.steps().ends_with(&["test".to_owned(), "rollback".to_owned()]),
            "{strategy}: {:?}",
            s.steps()
        );
        if strategy != Strategy::BlueGreen {
            assert_eq!(
                *s.target.accepted.lock().unwrap(),
                vec!["old-password-1".to_owned()],
                "{strategy}"
            );
        }
        let history = s.engine().secret_history("app/db", 10).await.unwrap();
        assert_eq!(history[0].status, RotationStatus::RolledBack);
        assert_eq!(history[0].error_reason.as_deref(), Some("verification_failed"));
        let failed = history[0].steps.iter().find(|x| !x.ok).unwrap();
        assert_eq!(failed.step, "test");
        assert!(
            failed.log.contains("[redacted]") && !failed.log.contains("old-password"),
            "{}",
            failed.log
        );
        // Rollback notification queued for the policy's recipients.
        let outbox = s.engine().list_outbox(true, 10).await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].notification.event, "rolled_back");
        assert!(!serde_json::to_string(&outbox[0]).unwrap().contains("old-password"));
    }
}

#[tokio::test]
async fn immediate_promotes_before_verifying() {
    let s = Setup::new();
    s.policy("p", Strategy::Immediate, |p| {
        p.verification_tests = vec!["nonempty".into()]
    })
    .await;
    s.put("svc/token", "token-one", Some("p")).await;
    let r = s.engine().rotate_secret(rotate("svc/token")).await.unwrap();
    assert_eq!(r.strategy, Strategy::Immediate);
    assert_eq!(
        s.value("svc/token", Stage::Previous).await.as_deref(),
        Some("token-one")
    );
    let history = s.engine().secret_history("svc/token", 1).await.unwrap();
    let names: Vec<&str> = history[0].steps.iter().map(|x| x.step.as_str()).collect();
    assert_eq!(names, ["create", "set", "test", "test:nonempty", "finish"]);
}

#[tokio::test]
async fn without_auto_rollback_a_failure_is_left_for_inspection() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |p| p.auto_rollback = false).await;
    s.put("app/x", "old-value-xyz", Some("p")).await;
    s.target.fail.lock().unwrap().push("test");
    let e = s.engine().rotate_secret(rotate("app/x")).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert!(!s.steps().contains(&"rollback".to_owned()));
    let history = s.engine().secret_history("app/x", 1).await.unwrap();
    assert_eq!(history[0].status, RotationStatus::Failed);
    assert_eq!(s.value("app/x", Stage::Current).await.as_deref(), Some("old-value-xyz"));
    assert!(
        s.value("app/x", Stage::Pending).await.is_some(),
        "the unverified value stays PENDING"
    );
}

#[tokio::test]
async fn dual_write_keeps_both_valid_until_the_grace_period_ends() {
    let s = Setup::new();
    s.policy("p", Strategy::DualWrite, |p| p.grace_period_hours = Some(48))
        .await;
    s.put("api/key", "key-old-0001", Some("p")).await;
    *s.target.accepted.lock().unwrap() = vec!["key-old-0001".into()];
    let r = s.engine().rotate_secret(rotate("api/key")).await.unwrap();
    let new = s.value("api/key", Stage::Current).await.unwrap();
    assert_eq!(r.grace_period_end, Some(s.engine().now() + TimeDelta::hours(48)));
    assert_eq!(
        s.target.accepted.lock().unwrap().len(),
        2,
        "both accepted at the target"
    );
    let engine = s.engine();
    let old = SecretValue::new("key-old-0001");
    let v = engine.validate_secret("api/key", &old).await.unwrap();
    assert!(v.valid && v.stage == Some(Stage::Previous));
    assert!(
        engine
            .validate_secret("api/key", &SecretValue::new(new.clone()))
            .await
            .unwrap()
            .valid
    );
    assert!(
        !engine
            .validate_secret("api/key", &SecretValue::new("nope"))
            .await
            .unwrap()
            .valid
    );
    // Before the end nothing is disabled.
    s.h.clock.advance(TimeDelta::hours(47));
    assert!(engine.end_grace_periods().await.unwrap().is_empty());
    s.h.clock.advance(TimeDelta::hours(2));
    let done = engine.end_grace_periods().await.unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(*s.target.accepted.lock().unwrap(), vec![new]);
    assert!(!engine.validate_secret("api/key", &old).await.unwrap().valid);
    assert!(engine.end_grace_periods().await.unwrap().is_empty(), "disabled once");
    let status = engine.secret_status("api/key").await.unwrap();
    assert_eq!(status.previous_valid_until, None);
    let events: Vec<String> = engine
        .list_outbox(false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.notification.event)
        .collect();
    assert_eq!(events, ["rotated", "grace_period_ended"]);
}

#[tokio::test]
async fn blue_green_alternates_slots() {
    let s = Setup::new();
    s.policy("p", Strategy::BlueGreen, |_| {}).await;
    s.put("app/bg", "blue-initial", Some("p")).await;
    let engine = s.engine();
    engine.rotate_secret(rotate("app/bg")).await.unwrap();
    engine.rotate_secret(rotate("app/bg")).await.unwrap();
    let slots: Vec<Option<String>> = s
        .target
        .steps
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.0 == "set")
        .map(|x| x.3.clone())
        .collect();
    assert_eq!(slots, [Some("green".to_owned()), Some("blue".to_owned())]);
    let (v, _) = engine
        .get_secret("app/bg", VersionSelector::Stage(Stage::Current))
        .await
        .unwrap();
    assert_eq!(v.attr("slot"), Some("blue"));
}

#[tokio::test]
async fn concurrent_rotation_of_one_secret_is_refused_and_others_run() {
    let s = Setup::new();
    s.put("a/one", "value-a", None).await;
    s.put("a/two", "value-b", None).await;
    *s.target.slow_set.lock().unwrap() = Some(std::time::Duration::from_millis(100));
    let engine = s.engine();
    let (x, y, z) = tokio::join!(
        engine.rotate_secret(rotate("a/one")),
        engine.rotate_secret(rotate("a/one")),
        engine.rotate_secret(rotate("a/two")),
    );
    assert!(z.is_ok());
    let results = [x, y];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(err.reason, Reason::ConcurrentRotation);
}

#[tokio::test]
async fn a_crash_at_any_commit_is_resumed_to_completion() {
    for fail_at in 1..=12 {
        let s = Setup::new();
        s.put("app/crash", "value-before", None).await;
        let faulty = rotation_testkit::FaultyStore::new(s.h.store.clone(), Some(fail_at));
        let crashing =
            s.h.engine_with(Arc::new(faulty), s.h.custody.clone(), "dies")
                .with_resolver(Arc::new(Resolver(s.target.clone())));
        let first = crashing.rotate_secret(rotate("app/crash")).await;
        if first.is_ok() {
            break;
        }
        s.h.clock.advance(TimeDelta::seconds(120));
        let outcomes = s.engine().resume_stale_runs().await.unwrap();
        let history = s.engine().secret_history("app/crash", 5).await.unwrap();
        if history.is_empty() {
            assert!(outcomes.is_empty());
            continue;
        }
        assert_eq!(
            history[0].status,
            RotationStatus::Success,
            "crash at commit {fail_at}: {outcomes:?}"
        );
        let current = s.value("app/crash", Stage::Current).await.unwrap();
        assert_ne!(current, "value-before", "crash at commit {fail_at}");
        assert_eq!(
            s.value("app/crash", Stage::Previous).await.as_deref(),
            Some("value-before")
        );
        let versions = s.engine().secret_backend().versions("app/crash").await.unwrap();
        assert_eq!(
            versions.len(),
            2,
            "one new version, however often the step ran (commit {fail_at})"
        );
    }
}

#[tokio::test]
async fn caller_values_and_generators() {
    let s = Setup::new();
    let engine = s.engine();
    let (_, v) = engine
        .put_secret(PutSecret {
            path: "plain/gen".into(),
            generator: Some(rotation_core::secret::Generator::parse("hex:40").unwrap()),
            ..PutSecret::default()
        })
        .await
        .unwrap();
    assert_eq!(v.version, 1);
    let value = s.value("plain/gen", Stage::Current).await.unwrap();
    assert!(value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit()));
    engine
        .rotate_secret(SecretRotateRequest {
            value: Some(SecretValue::new("custom_secret_value_123")),
            ..rotate("plain/gen")
        })
        .await
        .unwrap();
    assert_eq!(
        s.value("plain/gen", Stage::Current).await.as_deref(),
        Some("custom_secret_value_123")
    );
    let e = engine.rotate_secret(rotate("plain/none")).await.unwrap_err();
    assert_eq!(e.reason, Reason::NotFound);
    let e = engine
        .get_secret("plain/gen", VersionSelector::Version(9))
        .await
        .unwrap_err();
    assert_eq!(e.reason, Reason::NotFound);
    let (old, _) = engine
        .get_secret("plain/gen", VersionSelector::Version(1))
        .await
        .unwrap();
    assert_eq!(old.stages, vec![Stage::Previous]);
}

#[tokio::test]
async fn bad_policies_name_the_field() {
    let s = Setup::new();
    let engine = s.engine();
    let base = Policy {
        name: "bad".into(),
        trigger: Trigger::MaxAgeDays(1),
        migrate: false,
        retire_old: false,
        updated_at: engine.now(),
        procedure: Procedure::default(),
    };
    let cases: Vec<(&str, Policy)> = vec![
        (
            "cron",
            Policy {
                trigger: Trigger::Cron {
                    expr: "61 * * * *".into(),
                    timezone: "UTC".into(),
                },
                ..base.clone()
            },
        ),
        (
            "timezone",
            Policy {
                trigger: Trigger::Cron {
                    expr: "0 2 * * *".into(),
                    timezone: "Mars/Olympus".into(),
                },
                ..base.clone()
            },
        ),
        (
            "max_retries",
            Policy {
                procedure: Procedure {
                    max_retries: 1000,
                    ..Procedure::default()
                },
                ..base.clone()
            },
        ),
        (
            "notify",
            Policy {
                procedure: Procedure {
                    notify: vec!["carrier-pigeon".into()],
                    ..Procedure::default()
                },
                ..base.clone()
            },
        ),
        (
            "verification_tests",
            Policy {
                procedure: Procedure {
                    verification_tests: vec!["psychic".into()],
                    ..Procedure::default()
                },
                ..base.clone()
            },
        ),
    ];
    for (field, policy) in cases {
        let e = engine.set_policy(policy).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidPolicy, "{field}: {e}");
        assert!(e.message.contains(&format!("`{field}`")), "{field}: {}", e.message);
    }
    assert!(engine.list_policies().await.unwrap().is_empty(), "nothing was written");
}

#[tokio::test]
async fn scheduled_retries_orphan_the_schedule_then_resume() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |p| {
        p.max_retries = 2;
        p.retry_backoff_seconds = 60;
    })
    .await;
    s.put("app/flaky", "flaky-old", Some("p")).await;
    let engine = s.engine();
    let schedule = s.schedule("app/flaky", "p", 0).await;
    s.h.clock.advance(TimeDelta::days(31));
    s.target.fail.lock().unwrap().push("set");
    let mut states = Vec::new();
    for _ in 0..3 {
        engine.process_scheduled_rotations().await.unwrap();
        let now = engine
            .list_schedules(None, false)
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == schedule.id)
            .unwrap();
        states.push((now.state, now.attempts));
        s.h.clock.advance(TimeDelta::minutes(10));
    }
    assert_eq!(
        states,
        [
            (ScheduleState::Scheduled, 1),
            (ScheduleState::Scheduled, 2),
            (ScheduleState::Orphaned, 3)
        ]
    );
    // Orphaned: no more attempts.
    let runs_before = engine.secret_history("app/flaky", 100).await.unwrap().len();
    s.h.clock.advance(TimeDelta::days(1));
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(
        engine.secret_history("app/flaky", 100).await.unwrap().len(),
        runs_before
    );
    let events: Vec<String> = engine
        .list_outbox(false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.notification.event)
        .collect();
    assert!(events.contains(&"schedule_orphaned".to_owned()), "{events:?}");
    s.target.fail.lock().unwrap().clear();
    let resumed = engine.resume_schedule(schedule.id).await.unwrap();
    assert_eq!((resumed.state, resumed.attempts), (ScheduleState::Scheduled, 0));
    engine.process_scheduled_rotations().await.unwrap();
    let history = engine.secret_history("app/flaky", 10).await.unwrap();
    let statuses: Vec<RotationStatus> = history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            RotationStatus::Success,
            RotationStatus::RolledBack,
            RotationStatus::RolledBack,
            RotationStatus::RolledBack
        ],
        "{history:#?}"
    );
    let stats = engine.stats().await.unwrap();
    assert_eq!(
        (
            stats.total_rotations,
            stats.successful_rotations,
            stats.rollbacks,
            stats.failed_rotations
        ),
        (4, 1, 3, 0)
    );
    assert!((stats.success_rate - 0.25).abs() < 1e-9);
    assert_eq!(stats.active_schedules, 1);
    engine.reset_stats().await.unwrap();
    assert_eq!(engine.stats().await.unwrap().total_rotations, 0);
}

#[tokio::test]
async fn plan_lists_what_would_rotate_with_offsets_and_changes_nothing() {
    let s = Setup::new();
    s.policy("monthly", Strategy::Staged, |_| {}).await;
    s.put("pair/a", "a-value", Some("monthly")).await;
    s.put("pair/b", "b-value", Some("monthly")).await;
    let engine = s.engine();
    s.schedule("pair/a", "monthly", 0).await;
    s.schedule("pair/b", "monthly", 3600).await;
    let audit_before = engine.store().list_audit_newest(1).await.unwrap();
    let plan = engine.schedule_plan(TimeDelta::days(65)).await.unwrap();
    assert_eq!(plan.len(), 4, "{plan:#?}");
    assert_eq!(plan[0].target, Target::Secret("pair/a".into()));
    assert_eq!(
        plan[1].at - plan[0].at,
        TimeDelta::hours(1),
        "the offset separates the pair"
    );
    assert_eq!(plan[2].at - plan[0].at, TimeDelta::days(30));
    assert_eq!(plan[0].strategy, "staged");
    assert_eq!(plan[0].touches, "recording target");
    assert_eq!(
        engine.store().list_audit_newest(1).await.unwrap(),
        audit_before,
        "planning changes nothing"
    );
    // A manual policy never plans.
    s.policy("by-hand", Strategy::Staged, |p| p.rotation_type = RotationType::Manual)
        .await;
    s.put("pair/c", "c-value", None).await;
    s.schedule("pair/c", "by-hand", 0).await;
    assert_eq!(engine.schedule_plan(TimeDelta::days(65)).await.unwrap().len(), 4);
}

#[tokio::test]
async fn outbox_redelivers_after_the_receiver_was_down() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |_| {}).await;
    s.put("n/one", "value-one", Some("p")).await;
    let engine = s.engine();
    *s.inbox.down.lock().unwrap() = true;
    engine.rotate_secret(rotate("n/one")).await.unwrap();
    let r = engine.dispatch_outbox().await.unwrap();
    assert_eq!((r.delivered, r.retrying), (0, 1));
    *s.inbox.down.lock().unwrap() = false;
    assert_eq!(engine.dispatch_outbox().await.unwrap().delivered, 0, "backoff not over");
    s.h.clock.advance(TimeDelta::seconds(31));
    assert_eq!(engine.dispatch_outbox().await.unwrap().delivered, 1);
    let got = s.inbox.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "https://hooks.example/rotation");
    assert_eq!(got[0].1.event, "rotated");
    assert_eq!(engine.dispatch_outbox().await.unwrap().delivered, 0, "delivered once");
}

#[tokio::test]
async fn notify_before_sends_each_lead_time_once() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |p| p.notify_before_hours = vec![168, 24])
        .await;
    s.put("soon/key", "value-soon", Some("p")).await;
    let engine = s.engine();
    // Due 30 days after writing: nothing at day 20, the 7-day notice at day 24, both by day 29.5.
    s.h.clock.advance(TimeDelta::days(20));
    assert_eq!(engine.notify_upcoming().await.unwrap(), 0);
    s.h.clock.advance(TimeDelta::days(4));
    engine.notify_upcoming().await.unwrap();
    engine.notify_upcoming().await.unwrap();
    s.h.clock.advance(TimeDelta::hours(5 * 24 + 12));
    engine.notify_upcoming().await.unwrap();
    let got: Vec<(String, u64)> = engine
        .list_outbox(false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.notification.event,
                m.notification.details["lead_hours"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("rotation_due_soon".to_owned(), 168),
            ("rotation_due_soon".to_owned(), 24)
        ]
    );
}

#[tokio::test]
async fn rotating_again_during_a_dual_write_grace_period_disables_the_oldest_value_first() {
    let s = Setup::new();
    s.policy("p", Strategy::DualWrite, |p| p.grace_period_hours = Some(48))
        .await;
    s.put("api/key", "key-old-0001", Some("p")).await;
    *s.target.accepted.lock().unwrap() = vec!["key-old-0001".into()];
    s.engine().rotate_secret(rotate("api/key")).await.unwrap();
    let second = s.value("api/key", Stage::Current).await.unwrap();
    s.h.clock.advance(TimeDelta::hours(1));
    s.engine().rotate_secret(rotate("api/key")).await.unwrap();
    let third = s.value("api/key", Stage::Current).await.unwrap();
    // Only the last two values are valid anywhere: the first was disabled
    // at the target before its label moved on.
    assert_eq!(*s.target.accepted.lock().unwrap(), vec![second.clone(), third]);
    let engine = s.engine();
    assert!(
        !engine
            .validate_secret("api/key", &SecretValue::new("key-old-0001"))
            .await
            .unwrap()
            .valid
    );
    let v = engine
        .validate_secret("api/key", &SecretValue::new(second))
        .await
        .unwrap();
    assert!(v.valid && v.stage == Some(Stage::Previous));
    let disabled = engine
        .list_outbox(false, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.notification.event == "grace_period_ended")
        .count();
    assert_eq!(disabled, 1, "the early end is notified like any other");
    // The second value's own grace period ends as usual.
    s.h.clock.advance(TimeDelta::hours(49));
    assert_eq!(engine.end_grace_periods().await.unwrap().len(), 1);
    assert_eq!(s.target.accepted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_put_during_a_rotation_is_concurrent_rotation_and_changes_nothing() {
    let s = Setup::new();
    s.put("app/busy", "value-before", None).await;
    *s.target.slow_set.lock().unwrap() = Some(std::time::Duration::from_millis(300));
    let engine = s.engine();
    let (rotated, put) = tokio::join!(engine.rotate_secret(rotate("app/busy")), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        engine
            .put_secret(PutSecret {
                path: "app/busy".into(),
                value: Some(SecretValue::new("value-put-midway")),
                ..PutSecret::default()
            })
            .await
    });
    let rotated = rotated.unwrap();
    let err = put.unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation, "{err}");
    assert!(!err.to_string().contains("value-put-midway"));
    let current = s.value("app/busy", Stage::Current).await.unwrap();
    assert_ne!(current, "value-put-midway");
    assert!(
        engine
            .get_secret("app/busy", VersionSelector::Version(3))
            .await
            .is_err(),
        "no version was written by the refused put"
    );
    assert_eq!(rotated.new_version, Some(2));
}

#[tokio::test]
async fn a_database_secret_is_never_given_a_generated_value_the_role_does_not_have() {
    let s = Setup::new();
    s.put("db/admin", "postgres://admin@localhost/db", None).await;
    let config = rotation_core::secret::SecretConfig {
        role: Some("app".into()),
        admin_secret: Some("db/admin".into()),
        ..Default::default()
    };
    let err = s
        .engine()
        .put_secret(PutSecret {
            path: "db/app".into(),
            secret_type: Some(SecretType::Database),
            config: Some(config.clone()),
            ..PutSecret::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    assert!(err.message.contains("--value"), "{err}");
    assert!(s.engine().secret("db/app").await.is_err(), "nothing was stored");
    s.engine()
        .put_secret(PutSecret {
            path: "db/app".into(),
            secret_type: Some(SecretType::Database),
            config: Some(config),
            value: Some(SecretValue::new("the-roles-password")),
            ..PutSecret::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_target_that_stays_down_orphans_the_schedule_with_a_notice_and_the_run_resumes_later() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |p| {
        p.max_retries = 1;
        p.retry_backoff_seconds = 60;
    })
    .await;
    s.put("app/down", "down-old", Some("p")).await;
    let engine = s.engine();
    let schedule = s.schedule("app/down", "p", 0).await;
    s.h.clock.advance(TimeDelta::days(31));
    *s.target.unavailable.lock().unwrap() = true;
    let first = engine.process_scheduled_rotations().await.unwrap();
    assert!(
        first
            .iter()
            .any(|o| o.error_reason.as_deref() == Some("backend_unavailable")),
        "{first:?}"
    );
    assert_eq!(s.schedule_state(schedule.id).await, (ScheduleState::Scheduled, 1));
    // Before the backoff ends the schedule waits (the run itself is resumed).
    s.h.clock.advance(TimeDelta::seconds(30));
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(s.schedule_state(schedule.id).await, (ScheduleState::Scheduled, 1));
    s.h.clock.advance(TimeDelta::seconds(60));
    engine.process_scheduled_rotations().await.unwrap();
    assert_eq!(s.schedule_state(schedule.id).await, (ScheduleState::Orphaned, 2));
    let events: Vec<String> = engine
        .list_outbox(false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.notification.event)
        .collect();
    assert!(events.contains(&"schedule_orphaned".to_owned()), "{events:?}");
    assert_eq!(
        s.value("app/down", Stage::Current).await.unwrap(),
        "down-old",
        "nothing lost"
    );

    // Back up: the interrupted run is resumed and completes; the schedule
    // stays orphaned until someone resumes it.
    *s.target.unavailable.lock().unwrap() = false;
    s.h.clock.advance(TimeDelta::seconds(10));
    engine.process_scheduled_rotations().await.unwrap();
    assert_ne!(s.value("app/down", Stage::Current).await.unwrap(), "down-old");
    assert_eq!(s.value("app/down", Stage::Previous).await.unwrap(), "down-old");
    assert_eq!(s.schedule_state(schedule.id).await.0, ScheduleState::Orphaned);
}

#[tokio::test]
async fn notify_before_follows_schedules_and_dual_write_grace_periods() {
    let s = Setup::new();
    // No policy on the secret itself: only the schedule's, offset by a day.
    s.policy("scheduled", Strategy::Staged, |p| p.notify_before_hours = vec![24])
        .await;
    s.put("sched/key", "value-sched", None).await;
    let engine = s.engine();
    s.schedule("sched/key", "scheduled", 86_400).await;
    // Due at day 31 (30 days + the offset): the 24-hour notice comes at day 30, not day 29.
    s.h.clock.advance(TimeDelta::days(29) + TimeDelta::hours(12));
    assert_eq!(engine.notify_upcoming().await.unwrap(), 0);
    s.h.clock.advance(TimeDelta::days(1));
    assert_eq!(engine.notify_upcoming().await.unwrap(), 1);

    // A dual-write grace period ending soon is announced too.
    let s = Setup::new();
    s.policy("dw", Strategy::DualWrite, |p| {
        p.grace_period_hours = Some(72);
        p.notify_before_hours = vec![24];
    })
    .await;
    s.put("api/key", "key-old-0001", Some("dw")).await;
    let engine = s.engine();
    engine.rotate_secret(rotate("api/key")).await.unwrap();
    s.h.clock.advance(TimeDelta::hours(47));
    engine.notify_upcoming().await.unwrap();
    s.h.clock.advance(TimeDelta::hours(2));
    engine.notify_upcoming().await.unwrap();
    engine.notify_upcoming().await.unwrap();
    let ending: Vec<_> = engine
        .list_outbox(false, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.notification.event == "grace_period_ending")
        .map(|m| m.notification.details["version"].as_u64().unwrap())
        .collect();
    assert_eq!(ending, [1], "once, for the old version");
}

#[tokio::test]
async fn schedules_whose_claim_ran_low_during_a_slow_batch_are_left_for_the_next_pass() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |_| {}).await;
    let engine = s.engine();
    for path in ["slow/a", "slow/b", "slow/c"] {
        s.put(path, "before", Some("p")).await;
        s.schedule(path, "p", 0).await;
    }
    s.h.clock.advance(TimeDelta::days(31));
    // Each rotation takes 40 s of the 60 s claim.
    *s.target.set_takes.lock().unwrap() = Some((s.h.clock.clone(), TimeDelta::seconds(40)));
    let rotated = |outcomes: &[rotation_core::engine::ScheduledOutcome]| {
        outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_some_and(|r| !r.is_null()))
            .count()
    };
    assert_eq!(rotated(&engine.process_scheduled_rotations().await.unwrap()), 1);
    // The rest is still claimed by this process until the claim runs out.
    assert_eq!(rotated(&engine.process_scheduled_rotations().await.unwrap()), 0);
    let mut total = 1;
    for _ in 0..4 {
        s.h.clock.advance(TimeDelta::seconds(30));
        total += rotated(&engine.process_scheduled_rotations().await.unwrap());
    }
    assert_eq!(total, 3);
    for path in ["slow/a", "slow/b", "slow/c"] {
        assert_eq!(
            engine.secret_history(path, 10).await.unwrap().len(),
            1,
            "{path} rotated once"
        );
    }
}

#[tokio::test]
async fn a_pass_told_to_stop_finishes_the_rotation_in_progress_and_hands_back_the_rest() {
    let s = Setup::new();
    s.policy("p", Strategy::Staged, |_| {}).await;
    let engine = s.engine();
    for path in ["stop/a", "stop/b", "stop/c"] {
        s.put(path, "before", Some("p")).await;
        s.schedule(path, "p", 0).await;
    }
    s.h.clock.advance(TimeDelta::days(31));
    // "Shutdown" arrives once the first rotation has started.
    let target = s.target.clone();
    let keep_going = move || target.steps.lock().unwrap().is_empty();
    let outcomes = engine.process_scheduled_rotations_while(&keep_going).await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(
        outcomes[0].result.is_some(),
        "the rotation in progress finished: {outcomes:?}"
    );
    let claimed: Vec<_> = engine
        .list_schedules(None, true)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.claimed_by.is_some())
        .collect();
    assert!(claimed.is_empty(), "unstarted claims were handed back: {claimed:?}");
    // Another replica takes them at once, without waiting for claims to expire.
    let other =
        s.h.engine("other-replica")
            .with_resolver(Arc::new(Resolver(s.target.clone())));
    let rest = other.process_scheduled_rotations().await.unwrap();
    assert_eq!(rest.iter().filter(|o| o.result.is_some()).count(), 2, "{rest:?}");
}

#[tokio::test]
async fn switching_a_database_secret_to_blue_green_never_leaves_the_bare_role_behind() {
    let s = Setup::new();
    s.policy("staged", Strategy::Staged, |_| {}).await;
    s.policy("bg", Strategy::BlueGreen, |_| {}).await;
    s.put("db/admin", "postgres://admin@localhost/db", None).await;
    let put = |value: &str, policy: &str| PutSecret {
        path: "db/app".into(),
        secret_type: Some(SecretType::Database),
        config: Some(rotation_core::secret::SecretConfig {
            role: Some("app".into()),
            admin_secret: Some("db/admin".into()),
            ..Default::default()
        }),
        value: Some(SecretValue::new(value)),
        policy: Some(policy.into()),
        ..PutSecret::default()
    };
    let engine = s.engine();
    let (_, v1) = engine.put_secret(put("pw-of-app", "staged")).await.unwrap();
    assert_eq!(v1.attr("username"), Some("app"));
    let err = engine
        .rotate_secret(SecretRotateRequest {
            policy: Some("bg".into()),
            ..rotate("db/app")
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidPolicy, "{err}");
    assert!(err.message.contains("app_blue"), "{err}");
    assert_eq!(
        s.value("db/app", Stage::Current).await.unwrap(),
        "pw-of-app",
        "nothing changed"
    );
    // Put again under blue-green: the value is the blue slot's from now on.
    let (_, v2) = engine.put_secret(put("pw-of-app-blue", "bg")).await.unwrap();
    assert_eq!(v2.attr("username"), Some("app_blue"));
    engine.rotate_secret(rotate("db/app")).await.unwrap();
    let (current, _) = engine
        .get_secret("db/app", VersionSelector::Stage(Stage::Current))
        .await
        .unwrap();
    assert_eq!(current.attr("username"), Some("app_green"));
}
