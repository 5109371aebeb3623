//! One-off scheduled rotations and the processing of due work.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use super::rotation::{RotateRequest, RotationResult};
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
    /// Schedule id (= rotation id), or the resumed run's id.
    pub rotation_id: RotationId,
    /// Target.
    pub target: Target,
    /// The rotation result on success.
    pub result: Option<RotationResult>,
    /// Stable reason on failure.
    pub error_reason: Option<String>,
    /// Message on failure.
    pub error: Option<String>,
    /// The schedule was left for a later attempt (e.g. another run in progress).
    pub deferred: bool,
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
        let Target::Authority(authority) = schedule.target.clone() else {
            return Err(Error::invalid_input(format!(
                "schedule {} has an unsupported target {}",
                schedule.id, schedule.target
            )));
        };
        let request = RotateRequest {
            authority_id: authority,
            grace_period_hours: None,
            rotation_id: Some(schedule.id),
            schedule_id: Some(schedule.id),
        };
        let result = self.rotate_key(request).await;
        let mut outcome = ScheduledOutcome {
            rotation_id: schedule.id,
            target: schedule.target.clone(),
            result: None,
            error_reason: None,
            error: None,
            deferred: false,
        };
        match result {
            Ok(r) => {
                schedule.state = ScheduleState::Done;
                outcome.result = Some(r);
            }
            Err(e) if e.reason.is_retryable() => {
                // Leave it scheduled; release the claim for the next round.
                schedule.last_error = Some(e.message.clone());
                outcome.deferred = true;
                outcome.error_reason = Some(e.reason.as_str().into());
                outcome.error = Some(e.message);
            }
            Err(e) => {
                schedule.state = ScheduleState::Failed;
                schedule.last_error = Some(e.message.clone());
                outcome.error_reason = Some(e.reason.as_str().into());
                outcome.error = Some(e.message);
            }
        }
        schedule.claimed_by = None;
        schedule.claim_expires_at = None;
        let mut tx = self.store.begin().await?;
        tx.update_schedule(&schedule).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Resumes every run whose lease has expired (its process died).
    pub async fn resume_stale_runs(&self) -> Result<Vec<ScheduledOutcome>> {
        let now = self.now();
        let mut outcomes = Vec::new();
        for run in self.store.list_active_runs().await? {
            if run.lease_expires_at > now {
                continue;
            }
            let Target::Authority(authority) = run.target.clone() else {
                continue;
            };
            let request = RotateRequest {
                authority_id: authority,
                grace_period_hours: Some(run.grace_period_hours),
                rotation_id: Some(run.rotation_id),
                schedule_id: run.schedule_id,
            };
            let result = self.rotate_key(request).await;
            outcomes.push(match result {
                Ok(r) => ScheduledOutcome {
                    rotation_id: run.rotation_id,
                    target: run.target,
                    result: Some(r),
                    error_reason: None,
                    error: None,
                    deferred: false,
                },
                Err(e) => ScheduledOutcome {
                    rotation_id: run.rotation_id,
                    target: run.target,
                    result: None,
                    error_reason: Some(e.reason.as_str().into()),
                    error: Some(e.message),
                    deferred: e.reason.is_retryable(),
                },
            });
        }
        Ok(outcomes)
    }
}
