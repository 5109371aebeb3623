//! Secret rotation on the run state machine, with the strategies of the
//! design: immediate, staged, dual-write and blue-green.
//!
//! | state      | immediate                         | staged / dual-write / blue-green          |
//! |------------|-----------------------------------|-------------------------------------------|
//! | creating   | write PENDING, `set`, labels move | write PENDING (blue-green: idle slot), `set` |
//! | verifying  | target `test` + named tests       | same                                      |
//! | promoting  | drop PENDING                      | labels move atomically (dual-write: old valid until grace end) |
//! | finishing  | `finish`, completed               | same                                      |
//! | rolling back | labels back, `rollback` at target | drop PENDING, `rollback` at target      |
//!
//! The run's decisions (strategy, tests, rollback, slot, recipients) are
//! journaled in its `rotation_started` event, so a resumed run keeps them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use super::rotation::Started;
use super::secrets::{attr_time, missing_value};
use crate::audit::{AuditDraft, event};
use crate::error::{Error, Reason, Result};
use crate::ids::{RotationId, Target};
use crate::policy::Policy;
use crate::ports::{CredentialTarget, Notification, Step, StepContext, StepOutput, VersionedValue};
use crate::run::{Run, RunState};
use crate::secret::{RotationStatus, Secret, SecretValue, Stage, Strategy, VersionSelector, redact};
use crate::time::Timestamp;

/// A request to rotate a secret.
#[derive(Debug, Clone, Default)]
pub struct SecretRotateRequest {
    /// The secret.
    pub path: String,
    /// Policy to rotate under; the secret's own when `None`.
    pub policy: Option<String>,
    /// The new value; generated (or issued) when `None`.
    pub value: Option<SecretValue>,
    /// Idempotency token: a run with this id is resumed or reported, never repeated.
    pub rotation_id: Option<RotationId>,
    /// The schedule asking for it.
    pub schedule_id: Option<RotationId>,
}

/// The outcome of a secret rotation (seed 001's `RotationResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRotationResult {
    /// Run id.
    pub rotation_id: RotationId,
    /// The secret.
    pub secret_path: String,
    /// Status.
    pub status: RotationStatus,
    /// Strategy used.
    pub strategy: Strategy,
    /// Version replaced.
    pub old_version: Option<u32>,
    /// Version now CURRENT.
    pub new_version: Option<u32>,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Dual-write: until when the old value stays valid.
    pub grace_period_end: Option<Timestamp>,
    /// Whether this call finished a run an earlier process had started.
    pub resumed: bool,
}

/// Decisions of one run, journaled in its `rotation_started` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    strategy: Strategy,
    policy: Option<String>,
    require_verification: bool,
    tests: Vec<String>,
    auto_rollback: bool,
    caller_value: bool,
    /// Blue-green: the idle slot being rotated (`blue` / `green`).
    slot: Option<String>,
    /// The version labelled PREVIOUS when the run started.
    previous_version: Option<u32>,
    notify: Vec<String>,
    notify_on_failure: bool,
}

/// One state of the run with its live pieces.
struct Live {
    run: Run,
    plan: Plan,
    secret: Secret,
    target: Arc<dyn CredentialTarget>,
}

/// The blue-green slot a version belongs to: its `slot` attribute (set by
/// blue-green rotations); for a version written by a put, the slot its
/// `username` names (`<role>_blue` or `<role>_green`), `blue` when it names
/// none (no role: the first slot), and no slot for the bare `<role>`.
fn slot_of<'a>(version: &'a crate::secret::SecretVersion, role: Option<&str>) -> Option<&'a str> {
    if let Some(slot) = version.attr("slot") {
        return Some(slot);
    }
    match (role, version.attr("username")) {
        (Some(role), Some(user)) if user == format!("{role}_green") => Some("green"),
        (Some(role), Some(user)) if user != format!("{role}_blue") => None,
        _ => Some("blue"),
    }
}

fn other_slot(slot: &str) -> &'static str {
    if slot == "blue" { "green" } else { "blue" }
}

impl Engine {
    /// Rotates a secret through the run state machine (see the module
    /// docs). A live run of the same secret is `concurrent_rotation`; a
    /// run whose process died is resumed.
    pub async fn rotate_secret(&self, request: SecretRotateRequest) -> Result<SecretRotationResult> {
        if request.value.as_ref().is_some_and(|v| v.expose().is_empty()) {
            return Err(Error::invalid_input("a secret value cannot be empty"));
        }
        let secret = self.secret(&request.path).await?;
        let policy_name = request.policy.clone().or_else(|| secret.policy.clone());
        let policy = match &policy_name {
            Some(name) => Some(self.policy(name).await?),
            None => None,
        };
        let target = self.resolver.target(&secret)?;
        let backend = self.secret_backend();
        let versions = backend.versions(&secret.path).await?;
        let current = versions
            .iter()
            .find(|v| v.has(Stage::Current))
            .cloned()
            .ok_or_else(|| missing_value(&secret.path))?;
        let strategy = self
            .supported_strategy(&secret, policy.as_ref(), target.as_ref())
            .await?;
        let plan = self.plan(
            &secret,
            policy.as_ref(),
            strategy,
            &current,
            &versions,
            request.value.is_some(),
        )?;
        let grace = policy
            .as_ref()
            .and_then(|p| p.procedure.grace_period_hours)
            .unwrap_or(if strategy == Strategy::DualWrite { 24 } else { 0 });
        let run_target = Target::Secret(secret.path.clone());
        let new_run = |now: Timestamp, rotation_id: RotationId| Run {
            old_version: Some(current.version),
            grace_period_hours: grace,
            schedule_id: request.schedule_id,
            ..self.blank_run(run_target.clone(), rotation_id, now)
        };
        let plan_json = serde_json::to_value(&plan).map_err(|e| Error::backend(e.to_string()))?;
        let (run, resumed) = match self
            .start_run(&run_target, request.rotation_id, new_run, Some(plan_json))
            .await?
        {
            Started::Finished(run) => {
                let plan = self.journaled_plan(&run).await?;
                return secret_result(&run, &plan, false);
            }
            Started::Run(run, resumed) => (run, resumed),
        };
        let plan = if resumed {
            self.journaled_plan(&run).await?
        } else {
            plan
        };
        tracing::info!(secret = %secret.path, rotation = %run.rotation_id, strategy = %plan.strategy, resumed, "secret rotation started");
        let live = Live {
            run,
            plan,
            secret,
            target,
        };
        let done = self.drive_secret(live, request.value).await?;
        secret_result(&done.run, &done.plan, resumed)
    }

    fn plan(
        &self,
        secret: &Secret,
        policy: Option<&Policy>,
        strategy: Strategy,
        current: &crate::secret::SecretVersion,
        versions: &[crate::secret::SecretVersion],
        caller_value: bool,
    ) -> Result<Plan> {
        let procedure = policy.map(|p| p.procedure.clone()).unwrap_or_default();
        let mut tests = procedure.verification_tests.clone();
        tests.extend(secret.config.verify.iter().cloned());
        tests.dedup();
        if procedure.require_verification {
            for t in &tests {
                self.resolver.verifier(t)?;
            }
        }
        let current_slot = slot_of(current, secret.config.role.as_deref());
        if strategy == Strategy::BlueGreen
            && current_slot.is_none()
            && let Some(role) = &secret.config.role
        {
            // Rotating <role>_green then <role>_blue would leave <role> itself
            // with its password for good.
            return Err(crate::policy::invalid_field(
                "strategy",
                format!(
                    "secret {} holds the password of role {role} itself; blue-green rotates {role}_blue and \
                     {role}_green: put the secret again with the password of {role}_blue under the blue-green policy",
                    secret.path
                ),
            ));
        }
        let slot = (strategy == Strategy::BlueGreen).then(|| other_slot(current_slot.unwrap_or("blue")).to_owned());
        Ok(Plan {
            strategy,
            policy: policy.map(|p| p.name.clone()),
            require_verification: procedure.require_verification,
            tests,
            auto_rollback: procedure.auto_rollback,
            caller_value,
            slot,
            previous_version: versions.iter().find(|v| v.has(Stage::Previous)).map(|v| v.version),
            notify: procedure.notify.clone(),
            notify_on_failure: procedure.notify_on_failure,
        })
    }

    /// The plan journaled in the run's `rotation_started` event.
    async fn journaled_plan(&self, run: &Run) -> Result<Plan> {
        let events = self
            .store
            .query_audit(&crate::ports::AuditQuery {
                event: Some(event::ROTATION_STARTED.to_owned()),
                rotation_id: Some(run.rotation_id),
                limit: 1,
                ..crate::ports::AuditQuery::default()
            })
            .await?;
        let started = events
            .first()
            .ok_or_else(|| Error::tampered(format!("rotation {} has no rotation_started event", run.rotation_id)))?;
        serde_json::from_value(started.details["plan"].clone())
            .map_err(|_| Error::tampered(format!("rotation {} has no readable plan", run.rotation_id)))
    }

    async fn drive_secret(&self, mut live: Live, mut value: Option<SecretValue>) -> Result<Live> {
        loop {
            let step = match live.run.state {
                RunState::Pending => self.advance(&mut live.run, RunState::Creating).await,
                RunState::Creating => self.secret_create(&mut live, value.take()).await,
                RunState::Verifying => self.secret_verify(&mut live).await,
                RunState::Promoting => self.secret_promote(&mut live).await,
                RunState::Finishing => self.secret_finish(&mut live).await,
                RunState::RollingBack => self.secret_roll_back(&mut live).await,
                RunState::Completed | RunState::RolledBack | RunState::Failed => return Ok(live),
            };
            if let Err(error) = step {
                return Err(self.secret_step_error(live, error).await);
            }
        }
    }

    /// The step context for `step` of a live run.
    async fn step_context(&self, live: &Live, step: Step) -> Result<StepContext> {
        let backend = self.secret_backend();
        let path = &live.secret.path;
        let read = |n: Option<u32>| {
            let backend = Arc::clone(&backend);
            async move {
                match n {
                    Some(n) => Ok::<_, Error>(
                        backend
                            .read(path, VersionSelector::Version(n))
                            .await?
                            .map(|(version, value)| VersionedValue { version, value }),
                    ),
                    None => Ok(None),
                }
            }
        };
        let mut current = read(live.run.old_version).await?;
        let pending = read(live.run.new_version).await?;
        let mut previous = read(live.plan.previous_version).await?;
        if let Some(slot) = &live.plan.slot {
            // Blue-green: the idle slot's own last value is what `rollback`
            // restores there, and what `previous` means for that slot.
            let last_in_slot = backend
                .versions(path)
                .await?
                .into_iter()
                .filter(|v| {
                    slot_of(v, live.secret.config.role.as_deref()) == Some(slot.as_str())
                        && Some(v.version) != live.run.new_version
                })
                .map(|v| v.version)
                .max();
            previous = read(last_in_slot).await?;
            if step == Step::Rollback {
                current.clone_from(&previous);
            }
        }
        let slot = live.plan.slot.as_ref().map(|s| match &live.secret.config.role {
            Some(role) => format!("{role}_{s}"),
            None => s.clone(),
        });
        Ok(StepContext {
            rotation_id: live.run.rotation_id,
            step,
            secret: live.secret.clone(),
            strategy: live.plan.strategy,
            current,
            pending,
            previous,
            references: self.references(&live.secret).await?,
            slot,
            now: self.now(),
        })
    }

    /// Runs a target step; its audit record (redacted) joins `drafts` (see
    /// [`Engine::step_record`]).
    async fn run_step(&self, live: &Live, step: Step, drafts: &mut Vec<AuditDraft>) -> Result<StepOutput> {
        let ctx = self.step_context(live, step).await?;
        let result = live.target.run(&ctx).await;
        self.step_record(live, &ctx, step.as_str(), result, drafts).await
    }

    /// Turns a step's result into an audit record: a success joins
    /// `drafts` (committed with the next state); a failure is committed at
    /// once together with `drafts`, so the steps that succeeded before it in
    /// the same state stay in the history, and is returned as the error.
    async fn step_record(
        &self,
        live: &Live,
        ctx: &StepContext,
        name: &str,
        result: Result<StepOutput>,
        drafts: &mut Vec<AuditDraft>,
    ) -> Result<StepOutput> {
        let mut values = ctx.values();
        match result {
            Ok(out) => {
                // A value the step made (create) is a secret too.
                values.extend(out.value.as_ref());
                let mut details = json!({"step": name, "ok": true, "log": redact(&out.log, &values)});
                if let Some(stdout) = &out.stdout {
                    // Its own key: only admins are shown a script's stdout.
                    details["stdout"] = json!(redact(stdout, &values));
                }
                let draft = self.draft(
                    event::SECRET_STEP,
                    live.run.target.clone(),
                    Some(live.run.rotation_id),
                    details,
                );
                drafts.push(draft);
                Ok(out)
            }
            Err(mut e) => {
                e.message = redact(&e.message, &values);
                let draft = self.draft(
                    event::SECRET_STEP,
                    live.run.target.clone(),
                    Some(live.run.rotation_id),
                    json!({"step": name, "ok": false, "log": e.message, "reason": e.reason.as_str()}),
                );
                let mut records = std::mem::take(drafts);
                records.push(draft);
                let now = self.now();
                let mut tx = self.store.begin().await?;
                self.append_audit(tx.as_mut(), now, records).await?;
                tx.commit().await?;
                Err(e)
            }
        }
    }

    /// `creating`: write the new value as PENDING (once per rotation id),
    /// make the target accept it; immediate also moves the labels now.
    async fn secret_create(&self, live: &mut Live, caller_value: Option<SecretValue>) -> Result<()> {
        let backend = self.secret_backend();
        let path = live.secret.path.clone();
        let rotation = live.run.rotation_id.to_string();
        let versions = backend.versions(&path).await?;
        let mut drafts = Vec::new();
        let written = versions
            .iter()
            .find(|v| v.attr("rotation_id") == Some(rotation.as_str()))
            .map(|v| v.version);
        let new_version = match written {
            Some(v) => v,
            None => {
                // A dual-write grace period still running: this rotation takes
                // the PREVIOUS label off that version, after which nothing would
                // ever disable it, and its credential would stay valid at the
                // target for good. So its grace period ends now, first.
                if let Some(previous) = live.plan.previous_version
                    && versions.iter().any(|v| {
                        v.version == previous && v.attr("grace_until").is_some() && v.attr("disabled_at").is_none()
                    })
                {
                    self.disable_previous(&live.secret, previous).await?;
                }
                let (value, mut attributes) = match caller_value {
                    Some(v) => {
                        let attrs = live.target.inspect(&live.secret, &v)?;
                        (v, attrs)
                    }
                    None if live.plan.caller_value => {
                        return Err(Error::new(
                            Reason::RotationFailed,
                            "the value given to this rotation was lost when its process stopped; rotate again",
                        ));
                    }
                    None => {
                        let out = self.run_step(live, Step::Create, &mut drafts).await?;
                        match out.value {
                            Some(v) => (v, out.attributes),
                            None => {
                                let policy = match &live.plan.policy {
                                    Some(p) => self.store.get_policy(p).await?,
                                    None => None,
                                };
                                (self.generate(&live.secret, policy.as_ref())?, out.attributes)
                            }
                        }
                    }
                };
                attributes.insert("rotation_id".into(), rotation.clone());
                attributes.insert("strategy".into(), live.plan.strategy.as_str().into());
                if let Some(slot) = &live.plan.slot {
                    attributes.insert("slot".into(), slot.clone());
                }
                if let Some(role) = &live.secret.config.role {
                    let username = match &live.plan.slot {
                        Some(slot) => format!("{role}_{slot}"),
                        None => role.clone(),
                    };
                    attributes.insert("username".into(), username);
                }
                let latest = versions.last().map_or(0, |v| v.version);
                backend
                    .write(&path, &value, &[Stage::Pending], &attributes, Some(latest))
                    .await?
            }
        };
        live.run.new_version = Some(new_version);
        self.run_step(live, Step::Set, &mut drafts).await?;
        if live.plan.strategy == Strategy::Immediate {
            let mut moves = vec![(Stage::Current, Some(new_version)), (Stage::Pending, None)];
            if let Some(old) = live.run.old_version {
                moves.push((Stage::Previous, Some(old)));
            }
            backend.update(&path, &moves, &[]).await?;
        }
        let next = if live.plan.require_verification {
            RunState::Verifying
        } else {
            RunState::Promoting
        };
        self.commit_state(&mut live.run, next, drafts).await
    }

    /// Persists a transition with audit records.
    async fn commit_state(&self, run: &mut Run, next: RunState, drafts: Vec<AuditDraft>) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        run.state = next;
        tx.update_run(run).await?;
        if !drafts.is_empty() {
            self.append_audit(tx.as_mut(), now, drafts).await?;
        }
        tx.commit().await
    }

    /// `verifying`: the target's own test, then every named test.
    async fn secret_verify(&self, live: &mut Live) -> Result<()> {
        let mut drafts = Vec::new();
        self.run_step(live, Step::Test, &mut drafts).await?;
        for name in live.plan.tests.clone() {
            let verifier = self.resolver.verifier(&name)?;
            let ctx = self.step_context(live, Step::Test).await?;
            let result = verifier.verify(&ctx).await.map_err(|e| {
                if e.reason.is_retryable() {
                    e
                } else {
                    Error::new(Reason::VerificationFailed, format!("test {name}: {}", e.message))
                }
            });
            self.step_record(live, &ctx, &format!("test:{name}"), result, &mut drafts)
                .await?;
        }
        self.commit_state(&mut live.run, RunState::Promoting, drafts).await
    }

    /// `promoting`: move the labels atomically (immediate: already moved).
    async fn secret_promote(&self, live: &mut Live) -> Result<()> {
        let backend = self.secret_backend();
        let new = live
            .run
            .new_version
            .ok_or_else(|| Error::new(Reason::RotationFailed, "the run has no new version"))?;
        let now = self.now();
        let mut moves = vec![(Stage::Current, Some(new)), (Stage::Pending, None)];
        let mut attributes = Vec::new();
        if let Some(old) = live.run.old_version {
            moves.push((Stage::Previous, Some(old)));
            if live.plan.strategy == Strategy::DualWrite {
                let end = now + chrono::TimeDelta::hours(i64::from(live.run.grace_period_hours));
                attributes.push((old, BTreeMap::from([("grace_until".to_owned(), attr_time(end))])));
                live.run.grace_period_end = Some(end);
            }
        }
        backend.update(&live.secret.path, &moves, &attributes).await?;
        self.commit_state(&mut live.run, RunState::Finishing, Vec::new()).await
    }

    /// `finishing`: the target's `finish`, then completed (with notifications).
    async fn secret_finish(&self, live: &mut Live) -> Result<()> {
        let mut drafts = Vec::new();
        self.run_step(live, Step::Finish, &mut drafts).await?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), &mut live.run, now).await?;
        if let Some(mut secret) = tx.get_secret(&live.secret.path).await? {
            secret.last_rotated_at = Some(now);
            tx.put_secret(&secret).await?;
            live.secret = secret;
        }
        live.run.state = RunState::Completed;
        live.run.completed_at = Some(now);
        tx.update_run(&live.run).await?;
        let details = json!({
            "old_version": live.run.old_version,
            "new_version": live.run.new_version,
            "strategy": live.plan.strategy,
            "grace_period_end": live.run.grace_period_end.map(attr_time),
        });
        let completed = self.draft(
            event::ROTATION_COMPLETED,
            live.run.target.clone(),
            Some(live.run.rotation_id),
            details.clone(),
        );
        drafts.push(completed);
        self.append_audit(tx.as_mut(), now, drafts).await?;
        self.enqueue_notifications(tx.as_mut(), &live.plan.notify, "rotated", &live.run, details, now)
            .await?;
        tx.commit().await?;
        tracing::info!(secret = %live.secret.path, rotation = %live.run.rotation_id, "secret rotated");
        Ok(())
    }

    /// `rolling_back`: the target accepts the old value again and the
    /// labels are where they were.
    async fn secret_roll_back(&self, live: &mut Live) -> Result<()> {
        let backend = self.secret_backend();
        let mut drafts = Vec::new();
        if live.run.new_version.is_some() {
            self.run_step(live, Step::Rollback, &mut drafts).await?;
            let mut moves = vec![(Stage::Pending, None)];
            if live.plan.strategy == Strategy::Immediate
                && let Some(old) = live.run.old_version
            {
                moves.push((Stage::Current, Some(old)));
                moves.push((Stage::Previous, live.plan.previous_version));
            }
            let new = live.run.new_version.unwrap_or_default();
            let mark = vec![(new, BTreeMap::from([("rolled_back".to_owned(), "true".to_owned())]))];
            backend.update(&live.secret.path, &moves, &mark).await?;
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), &mut live.run, now).await?;
        live.run.state = RunState::RolledBack;
        live.run.completed_at = Some(now);
        tx.update_run(&live.run).await?;
        let details = json!({"error_reason": live.run.error_reason, "error": live.run.error_message, "new_version": live.run.new_version});
        drafts.push(self.draft(
            event::ROTATION_FAILED,
            live.run.target.clone(),
            Some(live.run.rotation_id),
            details.clone(),
        ));
        drafts.push(self.draft(
            event::ROTATION_ROLLED_BACK,
            live.run.target.clone(),
            Some(live.run.rotation_id),
            details.clone(),
        ));
        self.append_audit(tx.as_mut(), now, drafts).await?;
        if live.plan.notify_on_failure {
            self.enqueue_notifications(tx.as_mut(), &live.plan.notify, "rolled_back", &live.run, details, now)
                .await?;
        }
        tx.commit().await?;
        tracing::warn!(secret = %live.secret.path, rotation = %live.run.rotation_id, "secret rotation rolled back");
        Ok(())
    }

    /// Ends a run as failed without rollback.
    async fn secret_fail(&self, live: &mut Live) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), &mut live.run, now).await?;
        live.run.state = RunState::Failed;
        live.run.completed_at = Some(now);
        tx.update_run(&live.run).await?;
        let details = json!({"error_reason": live.run.error_reason, "error": live.run.error_message, "state": "failed", "new_version": live.run.new_version});
        let draft = self.draft(
            event::ROTATION_FAILED,
            live.run.target.clone(),
            Some(live.run.rotation_id),
            details.clone(),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        if live.plan.notify_on_failure {
            self.enqueue_notifications(tx.as_mut(), &live.plan.notify, "failed", &live.run, details, now)
                .await?;
        }
        tx.commit().await
    }

    /// What a failed step means: outages leave the run for a resume;
    /// failures before promotion roll back (unless the policy says not to);
    /// later failures end the run as failed.
    async fn secret_step_error(&self, mut live: Live, error: Error) -> Error {
        if error.reason.is_retryable() {
            if error.reason != Reason::ConcurrentRotation {
                // Hand the run back: the next scheduler pass or command resumes
                // it without waiting for the lease to run out. If the store is
                // down too, the lease simply expires.
                let _ = self.release_lease(&mut live.run).await;
            }
            tracing::warn!(rotation = %live.run.rotation_id, state = live.run.state.as_str(), %error, "secret rotation interrupted; it resumes at the next pass");
            return error.with_rotation(live.run.rotation_id);
        }
        let rotation = live.run.rotation_id;
        live.run.error_reason = Some(error.reason.as_str().to_owned());
        live.run.error_message = Some(error.message.clone());
        let before_promotion = matches!(
            live.run.state,
            RunState::Pending | RunState::Creating | RunState::Verifying | RunState::Promoting
        );
        if before_promotion && live.plan.auto_rollback {
            if let Err(e) = self.advance(&mut live.run, RunState::RollingBack).await {
                return e.with_rotation(rotation);
            }
            return match self.secret_roll_back(&mut live).await {
                Ok(()) => Error::new(
                    error.reason,
                    format!("rotation failed and was rolled back: {}", error.message),
                )
                .with_rotation(rotation),
                Err(e) if e.reason.is_retryable() => e.with_rotation(rotation),
                Err(e) => {
                    live.run.error_message = Some(format!("{}; rollback failed: {}", error.message, e.message));
                    match self.secret_fail(&mut live).await {
                        Ok(()) => Error::new(
                            Reason::RotationFailed,
                            format!("rotation failed and its rollback failed too: {}", e.message),
                        )
                        .with_rotation(rotation),
                        Err(e2) => e2.with_rotation(rotation),
                    }
                }
            };
        }
        match self.secret_fail(&mut live).await {
            Ok(()) => Error::new(error.reason, format!("rotation failed: {}", error.message)).with_rotation(rotation),
            Err(e) => e.with_rotation(rotation),
        }
    }

    /// Enqueues `event` for every recipient, in the caller's transaction.
    pub(super) async fn enqueue_notifications(
        &self,
        tx: &mut dyn crate::ports::StoreTx,
        recipients: &[String],
        event: &str,
        run: &Run,
        details: serde_json::Value,
        now: Timestamp,
    ) -> Result<()> {
        let notification = Notification {
            event: event.to_owned(),
            target: run.target.to_string(),
            rotation_id: Some(run.rotation_id),
            details,
        };
        self.enqueue(tx, recipients, &notification, None, now).await
    }
}

fn secret_result(run: &Run, plan: &Plan, resumed: bool) -> Result<SecretRotationResult> {
    let Target::Secret(path) = &run.target else {
        return Err(Error::invalid_input(format!(
            "rotation {} is not a secret rotation",
            run.rotation_id
        )));
    };
    match run.state {
        RunState::Completed => Ok(SecretRotationResult {
            rotation_id: run.rotation_id,
            secret_path: path.clone(),
            status: RotationStatus::Success,
            strategy: plan.strategy,
            old_version: run.old_version,
            new_version: run.new_version,
            duration_ms: (run.completed_at.unwrap_or(run.updated_at) - run.started_at).num_milliseconds(),
            grace_period_end: run.grace_period_end,
            resumed,
        }),
        state => {
            let reason = run
                .error_reason
                .as_deref()
                .and_then(Reason::parse)
                .unwrap_or(Reason::RotationFailed);
            Err(Error::new(
                reason,
                format!(
                    "rotation {} of {path} ended {}: {}",
                    run.rotation_id,
                    RotationStatus::of(state).as_str(),
                    run.error_message.as_deref().unwrap_or("no error recorded")
                ),
            )
            .with_rotation(run.rotation_id))
        }
    }
}
