//! One-off scheduled rotations and the processing of due work.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use super::rotation::RotateRequest;
use crate::audit::event;
use crate::error::{Error, Reason, Result};
use crate::ids::{AuthorityId, RotationId, Target};
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
        let mut outcomes = self.resume_stale_runs().await?;
        loop {
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
            for schedule in claimed {
                let outcome = self.run_schedule(schedule).await?;
                deferred_any |= outcome.deferred;
                outcomes.push(outcome);
            }
            if !full || deferred_any {
                break;
            }
        }
        Ok(outcomes)
    }

    async fn run_schedule(&self, mut schedule: Schedule) -> Result<ScheduledOutcome> {
        let mut outcome = ScheduledOutcome::new(schedule.id, schedule.target.clone());
        let result = match &schedule.policy {
            None => self.rotate_target(&schedule.target, Some(schedule.id)).await,
            Some(policy) => match self.run_policy(&schedule.target, policy).await {
                Ok(Some(done)) => Ok(done),
                Ok(None) => {
                    outcome.skipped = true;
                    Ok(serde_json::Value::Null)
                }
                Err(e) => Err(e),
            },
        };
        let now = self.now();
        match result {
            Ok(done) => {
                if schedule.policy.is_none() {
                    schedule.state = ScheduleState::Done;
                } else {
                    // Recurring: evaluated again at the next run-due.
                    schedule.due_at = now;
                }
                schedule.last_error = None;
                outcome.result = (!done.is_null()).then_some(done);
            }
            Err(e) if e.reason.is_retryable() => {
                // Leave it scheduled; release the claim for the next round.
                schedule.last_error = Some(e.message.clone());
                outcome.fail(&e, true);
            }
            Err(e) => {
                if schedule.policy.is_none() {
                    schedule.state = ScheduleState::Failed;
                }
                schedule.last_error = Some(e.message.clone());
                outcome.fail(&e, false);
            }
        }
        schedule.claimed_by = None;
        schedule.claim_expires_at = None;
        let mut tx = self.store.begin().await?;
        tx.update_schedule(&schedule).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Rotates any kind of target; returns the kind's result as JSON.
    async fn rotate_target(&self, target: &Target, rotation_id: Option<RotationId>) -> Result<serde_json::Value> {
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
            other => Err(Error::invalid_input(format!(
                "schedules of {other} are not supported yet"
            ))),
        }
    }

    /// Evaluates a policy for a target and rotates (then migrates and
    /// retires, for keyrings, if the policy says so) when it fires.
    async fn run_policy(&self, target: &Target, policy_name: &str) -> Result<Option<serde_json::Value>> {
        let policy = self.policy(policy_name).await?;
        if !self.policy_fires(target, &policy).await? {
            return Ok(None);
        }
        let mut done = self.rotate_target(target, None).await?;
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
        let now = self.now();
        let mut outcomes = Vec::new();
        for run in self.store.list_active_runs().await? {
            if run.lease_expires_at > now {
                continue;
            }
            let mut outcome = ScheduledOutcome::new(run.rotation_id, run.target.clone());
            match self.rotate_target(&run.target, Some(run.rotation_id)).await {
                Ok(done) => outcome.result = Some(done),
                Err(e) => outcome.fail(&e, e.reason.is_retryable()),
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
