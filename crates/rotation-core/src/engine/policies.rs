//! Policies and policy-driven schedules.

use serde_json::json;

use super::Engine;
use crate::error::{Error, Result};
use crate::ids::RotationId;
use crate::ids::Target;
use crate::keyring::NONCE_LIMIT;
use chrono::TimeDelta;

use crate::policy::{Facts, Policy, RotationType};
use crate::secret::{SecretType, Stage};
use crate::time::Timestamp;

/// Longest schedule offset: 30 days.
pub const MAX_OFFSET_SECONDS: i64 = 30 * 86_400;
use crate::schedule::{Schedule, ScheduleState};

impl Engine {
    /// Creates or replaces a policy (audited as `policy_changed`).
    pub async fn set_policy(&self, mut policy: Policy) -> Result<Policy> {
        policy.updated_at = self.now();
        policy.validate()?;
        for test in &policy.procedure.verification_tests {
            self.resolver.verifier(test)?;
        }
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
    /// `target` and rotates when it fires, `offset_seconds` later than the
    /// policy alone would (so paired credentials never rotate together).
    pub async fn add_policy_schedule(&self, target: Target, policy: &str, offset_seconds: i64) -> Result<Schedule> {
        let policy_record = self.policy(policy).await?;
        if !(0..=MAX_OFFSET_SECONDS).contains(&offset_seconds) {
            return Err(Error::invalid_input(format!(
                "the offset must be 0 to {} days",
                MAX_OFFSET_SECONDS / 86_400
            )));
        }
        match &target {
            Target::Keyring(name) => {
                self.keyring(name).await?;
            }
            Target::Authority(id) => {
                self.authority(id).await?;
            }
            Target::Secret(path) => {
                let secret = self.secret(path).await?;
                let resolved = self.resolver.target(&secret)?;
                self.supported_strategy(&secret, Some(&policy_record), resolved.as_ref())
                    .await?;
            }
            other => return Err(Error::invalid_input(format!("cannot schedule {other}"))),
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
            offset_seconds,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_schedule(&schedule).await?;
        let draft = self.draft(
            crate::audit::event::ROTATION_SCHEDULED,
            target,
            None,
            json!({"schedule_id": schedule.id, "policy": policy, "offset_seconds": offset_seconds}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Whether `policy` fires for `target` now, `offset_seconds` late
    /// (keyrings also rotate at half the AES-GCM nonce bound whatever the
    /// policy says; certificates also within `renew_before_days` of expiry).
    pub async fn policy_fires(&self, target: &Target, policy: &Policy, offset_seconds: i64) -> Result<bool> {
        let facts = self.facts(target, offset_seconds).await?;
        if let Target::Keyring(_) = target
            && facts.uses >= NONCE_LIMIT / 2
        {
            return Ok(true);
        }
        if !policy.procedure.is_active || policy.procedure.rotation_type == RotationType::Manual {
            return Ok(false);
        }
        if let Some(renew_at) = self.certificate_renewal_time(target).await?
            && renew_at <= facts.now
        {
            return Ok(true);
        }
        policy.fires(&facts)
    }

    /// When `policy` is expected to fire next for `target` (time-based
    /// triggers and certificate expiry; `None` for manual or inactive policies).
    pub async fn next_policy_time(
        &self,
        target: &Target,
        policy: &Policy,
        offset_seconds: i64,
    ) -> Result<Option<Timestamp>> {
        if !policy.procedure.is_active || policy.procedure.rotation_type == RotationType::Manual {
            return Ok(None);
        }
        let facts = self.facts(target, 0).await?;
        let mut next = policy.trigger.next_due_estimate(&facts)?;
        if let Some(renew_at) = self.certificate_renewal_time(target).await? {
            next = Some(next.map_or(renew_at, |n| n.min(renew_at)));
        }
        Ok(next.map(|t| t + TimeDelta::seconds(offset_seconds)))
    }

    /// A certificate secret's renewal time: its CURRENT `not_after` minus
    /// `renew_before_days` (default 30).
    pub(super) async fn certificate_renewal_time(&self, target: &Target) -> Result<Option<Timestamp>> {
        let Target::Secret(path) = target else {
            return Ok(None);
        };
        let secret = self.secret(path).await?;
        if secret.secret_type != SecretType::Certificate {
            return Ok(None);
        }
        let current = self
            .secret_backend()
            .versions(path)
            .await?
            .into_iter()
            .find(|v| v.has(Stage::Current));
        let not_after = current
            .as_ref()
            .and_then(|v| v.attr("not_after"))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let before = i64::from(secret.config.renew_before_days.unwrap_or(30));
        Ok(not_after.map(|t| t - TimeDelta::days(before)))
    }

    /// What policies are evaluated against, `offset_seconds` late.
    async fn facts(&self, target: &Target, offset_seconds: i64) -> Result<Facts> {
        let now = self.now() - TimeDelta::seconds(offset_seconds);
        Ok(match target {
            Target::Keyring(name) => {
                let (since, uses) = self.keyring_facts(name).await?;
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
            Target::Secret(path) => {
                let secret = self.secret(path).await?;
                let current = self
                    .secret_backend()
                    .versions(path)
                    .await?
                    .into_iter()
                    .find(|v| v.has(Stage::Current));
                Facts {
                    now,
                    current_since: current.map_or(secret.created_at, |v| v.created_at),
                    uses: 0,
                }
            }
            Target::Store => return Err(Error::invalid_input("the store has no policy")),
        })
    }
}
