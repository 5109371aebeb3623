//! Policies and policy-driven schedules.

use serde_json::json;

use super::Engine;
use crate::error::{Error, Result};
use crate::ids::RotationId;
use crate::ids::Target;
use crate::keyring::NONCE_LIMIT;
use crate::policy::{Facts, Policy};
use crate::schedule::{Schedule, ScheduleState};

impl Engine {
    /// Creates or replaces a policy (audited as `policy_changed`).
    pub async fn set_policy(&self, mut policy: Policy) -> Result<Policy> {
        policy.updated_at = self.now();
        policy.validate()?;
        let mut tx = self.store.begin().await?;
        tx.put_policy(&policy).await?;
        let draft = self.draft(
            "policy_changed",
            Target::Store,
            None,
            json!({"policy": policy.name, "trigger": policy.trigger, "migrate": policy.migrate, "retire_old": policy.retire_old}),
        );
        self.append_audit(tx.as_mut(), policy.updated_at, vec![draft]).await?;
        tx.commit().await?;
        Ok(policy)
    }

    /// One policy, or `not_found`.
    pub async fn policy(&self, name: &str) -> Result<Policy> {
        self.store
            .get_policy(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("policy {name} not found")))
    }

    /// All policies.
    pub async fn list_policies(&self) -> Result<Vec<Policy>> {
        self.store.list_policies().await
    }

    /// Removes a policy.
    pub async fn remove_policy(&self, name: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.delete_policy(name).await?;
        self.append_audit(
            tx.as_mut(),
            now,
            vec![self.draft(
                "policy_changed",
                Target::Store,
                None,
                json!({"policy": name, "removed": true}),
            )],
        )
        .await?;
        tx.commit().await
    }

    /// Adds a recurring schedule: each `run-due` evaluates `policy` for
    /// `target` and rotates when it fires.
    pub async fn add_policy_schedule(&self, target: Target, policy: &str) -> Result<Schedule> {
        self.policy(policy).await?;
        match &target {
            Target::Keyring(name) => {
                self.keyring(name).await?;
            }
            Target::Authority(id) => {
                self.authority(id).await?;
            }
            other => return Err(Error::invalid_input(format!("cannot schedule {other} yet"))),
        }
        let now = self.now();
        let schedule = Schedule {
            id: RotationId::generate(),
            target: target.clone(),
            due_at: now,
            state: ScheduleState::Scheduled,
            created_at: now,
            actor: self.config.actor.clone(),
            claimed_by: None,
            claim_expires_at: None,
            last_error: None,
            policy: Some(policy.to_owned()),
            attempts: 0,
            offset_seconds: 0,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_schedule(&schedule).await?;
        let draft = self.draft(
            crate::audit::event::ROTATION_SCHEDULED,
            target,
            None,
            json!({"schedule_id": schedule.id, "policy": policy}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Whether `policy` fires for `target` now (keyrings also rotate at
    /// half the AES-GCM nonce bound whatever the policy says).
    pub async fn policy_fires(&self, target: &Target, policy: &Policy) -> Result<bool> {
        let now = self.now();
        let facts = match target {
            Target::Keyring(name) => {
                let (since, uses) = self.keyring_facts(name).await?;
                if uses >= NONCE_LIMIT / 2 {
                    return Ok(true);
                }
                Facts {
                    now,
                    current_since: since,
                    uses,
                }
            }
            Target::Authority(id) => {
                let a = self.authority(id).await?;
                Facts {
                    now,
                    current_since: a.last_rotated_at.unwrap_or(a.created_at),
                    uses: 0,
                }
            }
            other => {
                return Err(Error::invalid_input(format!(
                    "policies for {other} are not supported yet"
                )));
            }
        };
        policy.trigger.is_due(&facts)
    }
}
