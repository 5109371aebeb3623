//! One-off scheduled rotations and the processing of due work.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use super::rotation::RotateRequest;
use super::secret_rotation::SecretRotateRequest;
use crate::audit::event;
use crate::error::{Error, Reason, Result};
use crate::ids::{AuthorityId, RotationId, Target};
use crate::ports::Notification;
use crate::schedule::{Schedule, ScheduleState};
use crate::time::{Timestamp, rfc3339};

/// Schedules claimed per round of [`Engine::process_scheduled_rotations`].
const CLAIM_BATCH: usize = 64;

/// What happened to one due schedule or resumed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduledOutcome {
    /// Schedule id (= rotation id of one-off schedules), or the resumed run's id.
    pub rotation_id: RotationId,
    /// Target.
    pub target: Target,
    /// The rotation result on success (the kind's result object).
    pub result: Option<serde_json::Value>,
    /// Stable reason on failure.
    pub error_reason: Option<String>,
    /// Message on failure.
    pub error: Option<String>,
    /// The schedule was left for a later attempt (e.g. another run in progress).
    pub deferred: bool,
    /// A policy schedule whose policy did not fire.
    pub skipped: bool,
    /// Wall-clock seconds the attempt took (for metrics), when it ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

impl ScheduledOutcome {
    fn new(rotation_id: RotationId, target: Target) -> Self {
        ScheduledOutcome {
            rotation_id,
            target,
            result: None,
            error_reason: None,
            error: None,
            deferred: false,
            skipped: false,
            duration_seconds: None,
        }
    }

    fn fail(&mut self, e: &Error, deferred: bool) {
        self.error_reason = Some(e.reason.as_str().into());
        self.error = Some(e.message.clone());
        self.deferred = deferred;
    }
}

/// A kind's rotation result as JSON.
fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl Engine {
    /// Schedules a rotation of `authority` at `at` (seed 000's
    /// `schedule_rotation`); returns the rotation id the run will carry.
    /// A time not in the future is `invalid_schedule_time`.
    pub async fn schedule_rotation(&self, authority: &AuthorityId, at: Timestamp) -> Result<RotationId> {
        self.authority(authority).await?;
        let now = self.now();
        let at = crate::time::truncate(at);
        if at <= now {
            return Err(Error::new(
                Reason::InvalidScheduleTime,
                format!(
                    "scheduled time {} is not in the future (now {})",
                    rfc3339(at),
                    rfc3339(now)
                ),
            )
            .with_authority(authority));
        }
        let schedule = Schedule {
            id: RotationId::generate(),
            target: Target::Authority(authority.clone()),
            due_at: at,
            state: ScheduleState::Scheduled,
            created_at: now,
            actor: self.config.actor.clone(),
            claimed_by: None,
            claim_expires_at: None,
            last_error: None,
            policy: None,
            attempts: 0,
            offset_seconds: 0,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_schedule(&schedule).await?;
        let draft = self.draft(
            event::ROTATION_SCHEDULED,
            schedule.target.clone(),
            Some(schedule.id),
            json!({"due_at": rfc3339(at)}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(schedule.id)
    }

    /// Schedules, soonest first.
    pub async fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>> {
        self.store.list_schedules(target, only_pending).await
    }

    /// Processes due work (seed 000's `process_scheduled_rotations`):
    /// resumes runs whose lease expired, then claims and runs every due
    /// schedule. Claims live in the store, so several processes calling
    /// this at once run each schedule once.
    pub async fn process_scheduled_rotations(&self) -> Result<Vec<ScheduledOutcome>> {
        self.process_scheduled_rotations_while(&|| true).await
    }

    /// [`Engine::process_scheduled_rotations`], stopping early once
    /// `keep_going` answers false (a graceful shutdown): checked before each
    /// run and schedule; the run or schedule in progress finishes, claimed
    /// schedules not yet started are handed back at once, and the pass's
    /// housekeeping (grace periods, revocations, notices) is left to the
    /// next pass.
    pub async fn process_scheduled_rotations_while(
        &self,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<ScheduledOutcome>> {
        let mut outcomes = self.resume_stale_runs_while(keep_going).await?;
        loop {
            if !keep_going() {
                return Ok(outcomes);
            }
            let now = self.now();
            let mut tx = self.store.begin().await?;
            let claimed = tx
                .claim_due_schedules(now, &self.config.owner, now + self.config.lease, CLAIM_BATCH)
                .await?;
            tx.commit().await?;
            if claimed.is_empty() {
                break;
            }
            let full = claimed.len() == CLAIM_BATCH;
            let mut deferred_any = false;
            let mut claims_ran_out = false;
            let mut claimed = claimed.into_iter();
            while let Some(schedule) = claimed.next() {
                // Claims are not renewed: once less than half of one is left
                // (earlier schedules of the batch took long), the rest is left
                // to the next pass, where any process may claim it, rather than
                // run under a claim that could run out mid-way.
                let deadline = schedule.claim_expires_at.map(|until| until - self.config.lease / 2);
                if deadline.is_some_and(|d| self.now() >= d) {
                    claims_ran_out = true;
                    break;
                }
                if !keep_going() {
                    // Still solidly ours (checked just above): hand them back.
                    self.release_claims(std::iter::once(schedule).chain(claimed)).await?;
                    return Ok(outcomes);
                }
                let outcome = self.run_schedule(schedule).await?;
                deferred_any |= outcome.deferred;
                outcomes.push(outcome);
            }
            if !full || deferred_any || claims_ran_out {
                break;
            }
        }
        if !keep_going() {
            return Ok(outcomes);
        }
        outcomes.extend(self.end_grace_periods().await?);
        outcomes.extend(self.auto_revoke_keys().await?);
        self.prepublish_keys().await?;
        self.notify_upcoming().await?;
        Ok(outcomes)
    }

    /// Clears this process's claim on schedules it will not run now.
    async fn release_claims(&self, schedules: impl Iterator<Item = Schedule>) -> Result<()> {
        let mut tx = self.store.begin().await?;
        for mut schedule in schedules {
            schedule.claimed_by = None;
            schedule.claim_expires_at = None;
            tx.update_schedule(&schedule).await?;
        }
        tx.commit().await
    }

    async fn run_schedule(&self, mut schedule: Schedule) -> Result<ScheduledOutcome> {
        let mut outcome = ScheduledOutcome::new(schedule.id, schedule.target.clone());
        let started = std::time::Instant::now();
        let result = match &schedule.policy {
            None => self.rotate_target(&schedule.target, Some(schedule.id), None).await,
            Some(policy) => match self.run_policy(&schedule, policy).await {
                Ok(Some(done)) => Ok(done),
                Ok(None) => {
                    outcome.skipped = true;
                    Ok(serde_json::Value::Null)
                }
                Err(e) => Err(e),
            },
        };
        if !outcome.skipped {
            outcome.duration_seconds = Some(started.elapsed().as_secs_f64());
        }
        let now = self.now();
        let mut drafts = Vec::new();
        let mut orphaned_notice = None;
        match result {
            Ok(done) => {
                if schedule.policy.is_none() {
                    schedule.state = ScheduleState::Done;
                } else {
                    // Recurring: evaluated again at the next run-due.
                    schedule.due_at = now;
                }
                if !done.is_null() {
                    schedule.attempts = 0;
                }
                schedule.last_error = None;
                outcome.result = (!done.is_null()).then_some(done);
            }
            // Another process is on it, or a one-off schedule: leave it
            // scheduled and release the claim for the next round. (An outage
            // under a policy counts as a failed attempt below, so a target
            // that stays unreachable ends orphaned with a notice, not retried
            // silently forever; its interrupted run is resumed regardless.)
            Err(e)
                if e.reason == Reason::ConcurrentRotation || (e.reason.is_retryable() && schedule.policy.is_none()) =>
            {
                schedule.last_error = Some(e.message.clone());
                outcome.fail(&e, true);
            }
            Err(e) => {
                schedule.last_error = Some(e.message.clone());
                outcome.fail(&e, e.reason.is_retryable());
                match &schedule.policy {
                    None => schedule.state = ScheduleState::Failed,
                    Some(name) => {
                        let procedure = self
                            .store
                            .get_policy(name)
                            .await?
                            .map(|p| p.procedure)
                            .unwrap_or_default();
                        schedule.attempts += 1;
                        if schedule.attempts > procedure.max_retries {
                            schedule.state = ScheduleState::Orphaned;
                            let details = json!({
                                "schedule_id": schedule.id, "attempts": schedule.attempts,
                                "error_reason": e.reason.as_str(), "error": e.message,
                            });
                            drafts.push(self.draft(
                                event::SCHEDULE_ORPHANED,
                                schedule.target.clone(),
                                None,
                                details.clone(),
                            ));
                            orphaned_notice = Some((procedure.notify, details));
                        } else {
                            // Exponential backoff: base, 2 x base, 4 x base, ...
                            let base = i64::from(procedure.retry_backoff_seconds);
                            let factor = 1i64 << (schedule.attempts - 1).min(20);
                            schedule.due_at = now + chrono::TimeDelta::seconds(base.saturating_mul(factor));
                        }
                    }
                }
            }
        }
        schedule.claimed_by = None;
        schedule.claim_expires_at = None;
        let mut tx = self.store.begin().await?;
        tx.update_schedule(&schedule).await?;
        if !drafts.is_empty() {
            self.append_audit(tx.as_mut(), now, drafts).await?;
        }
        if let Some((recipients, details)) = orphaned_notice {
            let notification = Notification {
                event: "schedule_orphaned".into(),
                target: schedule.target.to_string(),
                rotation_id: None,
                details,
            };
            self.enqueue(tx.as_mut(), &recipients, &notification, None, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Puts an orphaned or failed schedule back in service, due now, with
    /// its retry count reset (audited as `schedule_resumed`).
    pub async fn resume_schedule(&self, id: RotationId) -> Result<Schedule> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut schedule = self
            .store
            .list_schedules(None, false)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::not_found(format!("schedule {id} not found")))?;
        if schedule.state == ScheduleState::Scheduled {
            return Err(Error::invalid_input(format!("schedule {id} is already active")));
        }
        if schedule.state == ScheduleState::Done {
            return Err(Error::invalid_input(format!("schedule {id} already ran to completion")));
        }
        let previous = schedule.state;
        schedule.state = ScheduleState::Scheduled;
        schedule.attempts = 0;
        schedule.due_at = now;
        schedule.last_error = None;
        schedule.claimed_by = None;
        schedule.claim_expires_at = None;
        tx.update_schedule(&schedule).await?;
        let draft = self.draft(
            event::SCHEDULE_RESUMED,
            schedule.target.clone(),
            None,
            json!({"schedule_id": id, "previous_state": previous.as_str()}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Rotates any kind of target; returns the kind's result as JSON.
    async fn rotate_target(
        &self,
        target: &Target,
        rotation_id: Option<RotationId>,
        policy: Option<&str>,
    ) -> Result<serde_json::Value> {
        match target {
            Target::Authority(authority) => {
                let request = RotateRequest {
                    authority_id: authority.clone(),
                    grace_period_hours: None,
                    rotation_id,
                    schedule_id: rotation_id,
                };
                Ok(json(&self.rotate_key(request).await?))
            }
            Target::Keyring(name) => Ok(json(&self.rotate_keyring(name, false, rotation_id).await?)),
            Target::Secret(path) => Ok(json(
                &self
                    .rotate_secret(SecretRotateRequest {
                        path: path.clone(),
                        policy: policy.map(str::to_owned),
                        value: None,
                        rotation_id,
                        schedule_id: rotation_id,
                    })
                    .await?,
            )),
            other => Err(Error::invalid_input(format!("{other} cannot be rotated"))),
        }
    }

    /// Evaluates a policy for a target and rotates (then migrates and
    /// retires, for keyrings, if the policy says so) when it fires.
    async fn run_policy(&self, schedule: &Schedule, policy_name: &str) -> Result<Option<serde_json::Value>> {
        let target = &schedule.target;
        let policy = self.policy(policy_name).await?;
        if !self.policy_fires(target, &policy, schedule.offset_seconds).await? {
            return Ok(None);
        }
        let mut done = self.rotate_target(target, None, Some(policy_name)).await?;
        if let Target::Keyring(name) = target
            && (policy.migrate || policy.retire_old)
        {
            let options = super::MigrateOptions {
                retire_old: policy.retire_old,
                ..super::MigrateOptions::default()
            };
            let report = self.migrate_keyring(name, &options, &|_| {}).await?;
            done["migration"] = serde_json::to_value(&report).unwrap_or_default();
        }
        Ok(Some(done))
    }

    /// Resumes every run whose lease has expired (its process died).
    pub async fn resume_stale_runs(&self) -> Result<Vec<ScheduledOutcome>> {
        self.resume_stale_runs_while(&|| true).await
    }

    async fn resume_stale_runs_while(&self, keep_going: &(dyn Fn() -> bool + Sync)) -> Result<Vec<ScheduledOutcome>> {
        let now = self.now();
        let mut outcomes = Vec::new();
        for run in self.store.list_active_runs().await? {
            if run.lease_expires_at > now {
                continue;
            }
            if !keep_going() {
                break;
            }
            let mut outcome = ScheduledOutcome::new(run.rotation_id, run.target.clone());
            let started = std::time::Instant::now();
            match self.rotate_target(&run.target, Some(run.rotation_id), None).await {
                Ok(done) => outcome.result = Some(done),
                Err(e) => outcome.fail(&e, e.reason.is_retryable()),
            }
            outcome.duration_seconds = Some(started.elapsed().as_secs_f64());
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// One planned rotation (`schedule plan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    /// The schedule.
    pub schedule_id: RotationId,
    /// What would rotate.
    pub target: Target,
    /// When (at the earliest; usage triggers can make it sooner).
    pub at: Timestamp,
    /// The policy, for recurring schedules.
    pub policy: Option<String>,
    /// Strategy (secrets) or kind of rotation.
    pub strategy: String,
    /// What the rotation touches.
    pub touches: String,
    /// The schedule's offset in seconds.
    pub offset_seconds: i64,
}

/// Most occurrences listed per schedule.
const PLAN_PER_SCHEDULE: usize = 50;

impl Engine {
    /// What would rotate within `within` from now, when, how and what it
    /// touches, assuming each rotation happens on time. Changes nothing.
    pub async fn schedule_plan(&self, within: chrono::TimeDelta) -> Result<Vec<PlanItem>> {
        let now = self.now();
        let until = now + within;
        let mut items = Vec::new();
        for schedule in self.store.list_schedules(None, true).await? {
            if schedule.state != ScheduleState::Scheduled {
                continue;
            }
            let (strategy, touches) = self
                .plan_description(&schedule.target, schedule.policy.as_deref())
                .await?;
            let item = |at: Timestamp| PlanItem {
                schedule_id: schedule.id,
                target: schedule.target.clone(),
                at,
                policy: schedule.policy.clone(),
                strategy: strategy.clone(),
                touches: touches.clone(),
                offset_seconds: schedule.offset_seconds,
            };
            let Some(name) = &schedule.policy else {
                if schedule.due_at <= until {
                    items.push(item(schedule.due_at.max(now)));
                }
                continue;
            };
            let Some(policy) = self.store.get_policy(name).await? else {
                continue;
            };
            let Some(first) = self
                .next_policy_time(&schedule.target, &policy, schedule.offset_seconds)
                .await?
            else {
                continue;
            };
            // Later occurrences: as if each rotation happened on time.
            let mut at = first.max(now);
            let offset = chrono::TimeDelta::seconds(schedule.offset_seconds);
            for _ in 0..PLAN_PER_SCHEDULE {
                if at > until {
                    break;
                }
                items.push(item(at));
                let facts = crate::policy::Facts {
                    now: at,
                    current_since: at - offset,
                    uses: 0,
                };
                match policy.trigger.next_due_estimate(&facts)? {
                    Some(next) if next + offset > at => at = next + offset,
                    _ => break,
                }
            }
        }
        items.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then_with(|| a.target.to_string().cmp(&b.target.to_string()))
        });
        Ok(items)
    }

    async fn plan_description(&self, target: &Target, policy: Option<&str>) -> Result<(String, String)> {
        Ok(match target {
            Target::Authority(id) => {
                let records = self.store.count_records_of(id).await?;
                (
                    "key rotation".into(),
                    format!("new signing key for {id}; re-signs {records} trust-chain records"),
                )
            }
            Target::Keyring(name) => {
                let migrate = match policy {
                    Some(p) => self.store.get_policy(p).await?.is_some_and(|p| p.migrate),
                    None => false,
                };
                let count: u64 = self
                    .store
                    .count_values_by_version(name)
                    .await?
                    .iter()
                    .map(|(_, n)| n)
                    .sum();
                (
                    "key rotation".into(),
                    if migrate {
                        format!("new data key for {name}; re-encrypts {count} values")
                    } else {
                        format!("new data key for {name}")
                    },
                )
            }
            Target::Secret(path) => {
                let secret = self.secret(path).await?;
                let policy = match policy {
                    Some(p) => self.store.get_policy(p).await?,
                    None => None,
                };
                let strategy = self.secret_strategy(&secret, policy.as_ref()).await?;
                let touches = match self.resolver.target(&secret) {
                    Ok(t) => t.describe(&secret),
                    Err(e) => format!("cannot rotate: {}", e.message),
                };
                (strategy.as_str().to_owned(), touches)
            }
            Target::Store => ("-".into(), "-".into()),
        })
    }

    /// Dual-write: disables every PREVIOUS value whose grace period ended
    /// (the target's `disable` step, then `disabled_at` on the version),
    /// audited as `secret_previous_disabled` and notified as `grace_period_ended`.
    pub async fn end_grace_periods(&self) -> Result<Vec<ScheduledOutcome>> {
        let now = self.now();
        let backend = self.secret_backend();
        let mut outcomes = Vec::new();
        for secret in self.store.list_secrets().await? {
            let versions = backend.versions(&secret.path).await?;
            let Some(previous) = versions.iter().find(|v| v.has(crate::secret::Stage::Previous)) else {
                continue;
            };
            let ended = previous.attr("disabled_at").is_none()
                && previous
                    .attr("grace_until")
                    .and_then(|g| chrono::DateTime::parse_from_rfc3339(g).ok())
                    .is_some_and(|g| g <= now);
            if !ended {
                continue;
            }
            let target = Target::Secret(secret.path.clone());
            let mut outcome = ScheduledOutcome::new(RotationId::generate(), target.clone());
            match self.disable_previous(&secret, previous.version).await {
                Ok(()) => outcome.result = Some(json!({"disabled_version": previous.version})),
                Err(e) => outcome.fail(&e, e.reason.is_retryable()),
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Disables `version` at the target (`disable` step), marks it
    /// `disabled_at`, audits and notifies `grace_period_ended`.
    pub(super) async fn disable_previous(&self, secret: &crate::secret::Secret, version: u32) -> Result<()> {
        let backend = self.secret_backend();
        let target = self.resolver.target(secret)?;
        let previous = backend
            .read(&secret.path, crate::secret::VersionSelector::Version(version))
            .await?
            .map(|(version, value)| crate::ports::VersionedValue { version, value });
        let current = backend
            .read(
                &secret.path,
                crate::secret::VersionSelector::Stage(crate::secret::Stage::Current),
            )
            .await?
            .map(|(version, value)| crate::ports::VersionedValue { version, value });
        let ctx = crate::ports::StepContext {
            rotation_id: RotationId::generate(),
            step: crate::ports::Step::Disable,
            secret: secret.clone(),
            strategy: crate::secret::Strategy::DualWrite,
            current,
            pending: None,
            previous,
            references: self.references(secret).await?,
            slot: None,
            now: self.now(),
        };
        let result = target.run(&ctx).await;
        let values = ctx.values();
        let log = match &result {
            Ok(out) => crate::secret::redact(&out.log, &values),
            Err(e) => crate::secret::redact(&e.message, &values),
        };
        let now = self.now();
        let target_id = Target::Secret(secret.path.clone());
        if let Err(e) = result {
            let mut tx = self.store.begin().await?;
            let draft = self.draft(
                event::SECRET_STEP,
                target_id,
                None,
                json!({"step": "disable", "ok": false, "log": log, "version": version}),
            );
            self.append_audit(tx.as_mut(), now, vec![draft]).await?;
            tx.commit().await?;
            return Err(e);
        }
        let mark = std::collections::BTreeMap::from([("disabled_at".to_owned(), rfc3339(now))]);
        backend.update(&secret.path, &[], &[(version, mark)]).await?;
        let recipients = match &secret.policy {
            Some(p) => self
                .store
                .get_policy(p)
                .await?
                .map(|p| p.procedure.notify)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let details = json!({"version": version, "log": log});
        let mut tx = self.store.begin().await?;
        let draft = self.draft(
            event::SECRET_PREVIOUS_DISABLED,
            target_id.clone(),
            None,
            details.clone(),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        let notification = Notification {
            event: "grace_period_ended".into(),
            target: target_id.to_string(),
            rotation_id: None,
            details: json!({"version": version}),
        };
        let dedup = format!("grace_period_ended|{}|{version}", secret.path);
        self.enqueue(tx.as_mut(), &recipients, &notification, Some(&dedup), now)
            .await?;
        tx.commit().await
    }

    /// `notify_before`: enqueues, once per lead time, version and
    /// recipient, a notice that a certificate expires
    /// (`certificate_expiring`), a secret rotates soon (`rotation_due_soon`)
    /// or a dual-write grace period ends soon (`grace_period_ending`), for
    /// the secret's own policy and the policy of every schedule of it (with
    /// that schedule's offset).
    pub async fn notify_upcoming(&self) -> Result<u64> {
        let now = self.now();
        let schedules = self.store.list_schedules(None, true).await?;
        let mut enqueued = 0;
        for secret in self.store.list_secrets().await? {
            let target = Target::Secret(secret.path.clone());
            // The secret's own policy, and the policy of every live schedule
            // of it (with that schedule's offset).
            let mut sources: Vec<(String, i64)> = secret.policy.iter().map(|p| (p.clone(), 0)).collect();
            for schedule in schedules
                .iter()
                .filter(|x| x.target == target && x.state == ScheduleState::Scheduled)
            {
                if let Some(p) = &schedule.policy
                    && !sources
                        .iter()
                        .any(|(name, offset)| name == p && *offset == schedule.offset_seconds)
                {
                    sources.push((p.clone(), schedule.offset_seconds));
                }
            }
            if sources.is_empty() {
                continue;
            }
            let versions = self.secret_backend().versions(&secret.path).await?;
            let Some(current) = versions.iter().find(|v| v.has(crate::secret::Stage::Current)) else {
                continue;
            };
            let previous_grace_end = versions
                .iter()
                .find(|v| v.has(crate::secret::Stage::Previous) && v.attr("disabled_at").is_none())
                .and_then(|v| {
                    let end = v.attr("grace_until")?;
                    let end = chrono::DateTime::parse_from_rfc3339(end).ok()?;
                    Some((v.version, end.with_timezone(&chrono::Utc)))
                });
            for (policy_name, offset) in sources {
                let Some(policy) = self.store.get_policy(&policy_name).await? else {
                    continue;
                };
                if policy.procedure.notify_before_hours.is_empty() || policy.procedure.notify.is_empty() {
                    continue;
                }
                // What is coming: the certificate's expiry or the next rotation,
                // and the end of a dual-write grace period.
                let mut deadlines = Vec::new();
                match current
                    .attr("not_after")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    Some(not_after) => deadlines.push((
                        "certificate_expiring",
                        not_after.with_timezone(&chrono::Utc),
                        current.version,
                    )),
                    None => {
                        if let Some(t) = self.next_policy_time(&target, &policy, offset).await? {
                            deadlines.push(("rotation_due_soon", t, current.version));
                        }
                    }
                }
                if let Some((version, end)) = previous_grace_end {
                    deadlines.push(("grace_period_ending", end, version));
                }
                for (event_name, deadline, version) in deadlines {
                    for hours in &policy.procedure.notify_before_hours {
                        let lead = chrono::TimeDelta::hours(i64::from(*hours));
                        if now < deadline - lead || now >= deadline {
                            continue;
                        }
                        let notification = Notification {
                            event: event_name.into(),
                            target: target.to_string(),
                            rotation_id: None,
                            details: json!({"at": rfc3339(deadline), "lead_hours": hours, "version": version}),
                        };
                        let dedup = format!("{event_name}|{}|{version}|{hours}", secret.path);
                        let mut tx = self.store.begin().await?;
                        self.enqueue(tx.as_mut(), &policy.procedure.notify, &notification, Some(&dedup), now)
                            .await?;
                        tx.commit().await?;
                        enqueued += 1;
                    }
                }
            }
        }
        Ok(enqueued)
    }
}

impl Engine {
    /// Revokes every key past its grace period whose authority has a
    /// schedule under a policy with `auto_revoke` (audited as `key_revoked`).
    pub async fn auto_revoke_keys(&self) -> Result<Vec<ScheduledOutcome>> {
        let now = self.now();
        let mut outcomes = Vec::new();
        let mut done: Vec<AuthorityId> = Vec::new();
        for schedule in self.store.list_schedules(None, true).await? {
            let (Target::Authority(id), Some(policy)) = (&schedule.target, &schedule.policy) else {
                continue;
            };
            if done.contains(id) || schedule.state != ScheduleState::Scheduled {
                continue;
            }
            if !self
                .store
                .get_policy(policy)
                .await?
                .is_some_and(|p| p.procedure.auto_revoke)
            {
                continue;
            }
            done.push(id.clone());
            for key in self.store.list_keys(id).await? {
                if key.effective_state(now) != crate::authority::EffectiveKeyState::PendingRevocation {
                    continue;
                }
                let mut outcome = ScheduledOutcome::new(schedule.id, schedule.target.clone());
                match self
                    .revoke_old_key(id, &key.key_id, super::RevokeOptions::default())
                    .await
                {
                    Ok(k) => outcome.result = Some(json!({"revoked_key_id": k.key_id})),
                    Err(e) => outcome.fail(&e, e.reason.is_retryable()),
                }
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }
}
