//! The compliance report: every target's credential age against its
//! policy, what is overdue or stuck, and what needs attention soon.

use std::collections::HashMap;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::authority::EffectiveKeyState;
use crate::error::Result;
use crate::ids::{RotationId, Target};
use crate::keyring::NONCE_LIMIT;
use crate::policy::{Facts, Trigger};
use crate::secret::Stage;
use crate::time::Timestamp;

/// One target in the compliance report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComplianceItem {
    /// `authority:<id>`, `keyring:<name>` or `secret:<path>`.
    pub target: String,
    /// The current credential (key id, or `v<N>` for keyrings and secrets).
    pub current: String,
    /// When it became current.
    pub current_since: Timestamp,
    /// Its age in days.
    pub age_days: f64,
    /// The longest age its policies allow, if any sets one.
    pub max_age_days: Option<u32>,
    /// A policy says it is due and it has not rotated.
    pub overdue: bool,
    /// Why it is overdue.
    pub overdue_reason: Option<String>,
    /// The next scheduled or policy-estimated rotation.
    pub next_rotation: Option<Timestamp>,
    /// Policies attached through schedules.
    pub policies: Vec<String>,
    /// Keys whose grace period has ended, awaiting revocation.
    pub pending_revocations: Vec<String>,
    /// Keys whose grace period ends within 24 hours.
    pub grace_ending_soon: Vec<String>,
    /// Keyring versions still sealing values.
    pub versions_referenced: Vec<u32>,
}

/// A run whose lease expired without the run finishing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StuckRun {
    /// Run id.
    pub rotation_id: RotationId,
    /// Target.
    pub target: String,
    /// State it stopped in.
    pub state: String,
    /// Last lease holder.
    pub lease_owner: String,
    /// When its lease expired.
    pub lease_expired_at: Timestamp,
}

/// `rotation report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComplianceReport {
    /// When the report was made.
    pub generated_at: Timestamp,
    /// Every target.
    pub items: Vec<ComplianceItem>,
    /// Runs stuck past their lease.
    pub stuck_runs: Vec<StuckRun>,
    /// Targets overdue.
    pub overdue: usize,
    /// Nothing overdue and nothing stuck.
    pub ok: bool,
}

fn max_age(trigger: &Trigger) -> Option<u32> {
    match trigger {
        Trigger::MaxAgeDays(d) => Some(*d),
        Trigger::Any(list) | Trigger::All(list) => list.iter().filter_map(max_age).min(),
        _ => None,
    }
}

impl Engine {
    /// Builds the compliance report.
    pub async fn compliance_report(&self) -> Result<ComplianceReport> {
        let now = self.now();
        let mut policies_of: HashMap<Target, Vec<String>> = HashMap::new();
        let mut next_of: HashMap<Target, Timestamp> = HashMap::new();
        for s in self.store.list_schedules(None, true).await? {
            match &s.policy {
                Some(p) => policies_of.entry(s.target.clone()).or_default().push(p.clone()),
                None => {
                    let e = next_of.entry(s.target.clone()).or_insert(s.due_at);
                    *e = (*e).min(s.due_at);
                }
            }
        }
        let mut items = Vec::new();
        for a in self.store.list_authorities().await? {
            let target = Target::Authority(a.id.clone());
            let since = a.last_rotated_at.unwrap_or(a.created_at);
            let mut pending = Vec::new();
            let mut soon = Vec::new();
            for k in self.store.list_keys(&a.id).await? {
                match k.effective_state(now) {
                    EffectiveKeyState::PendingRevocation => pending.push(k.key_id.to_string()),
                    EffectiveKeyState::Grace if k.grace_until.is_some_and(|u| u - now <= TimeDelta::hours(24)) => {
                        soon.push(k.key_id.to_string())
                    }
                    _ => {}
                }
            }
            let period_end = since + TimeDelta::days(i64::from(a.rotation_period_days));
            let mut item = ComplianceItem {
                target: target.to_string(),
                current: a.current_key_id.to_string(),
                current_since: since,
                age_days: age_days(now, since),
                max_age_days: Some(a.rotation_period_days),
                overdue: now >= period_end,
                overdue_reason: (now >= period_end)
                    .then(|| format!("older than its rotation period of {} days", a.rotation_period_days)),
                next_rotation: Some(next_of.get(&target).copied().map_or(period_end, |s| s.min(period_end))),
                policies: Vec::new(),
                pending_revocations: pending,
                grace_ending_soon: soon,
                versions_referenced: Vec::new(),
            };
            self.apply_policies(
                &target,
                &policies_of,
                Facts {
                    now,
                    current_since: since,
                    uses: 0,
                },
                &mut item,
            )
            .await?;
            items.push(item);
        }
        for k in self.store.list_keyrings().await? {
            let target = Target::Keyring(k.name.clone());
            let (since, uses) = self.keyring_facts(&k.name).await?;
            let referenced = self
                .store
                .count_values_by_version(&k.name)
                .await?
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(v, _)| v)
                .collect();
            let mut item = ComplianceItem {
                target: target.to_string(),
                current: format!("v{}", k.current_version),
                current_since: since,
                age_days: age_days(now, since),
                max_age_days: None,
                overdue: uses >= NONCE_LIMIT / 2,
                overdue_reason: (uses >= NONCE_LIMIT / 2)
                    .then(|| "current key is past half its AES-GCM nonce budget".to_owned()),
                next_rotation: next_of.get(&target).copied(),
                policies: Vec::new(),
                pending_revocations: Vec::new(),
                grace_ending_soon: Vec::new(),
                versions_referenced: referenced,
            };
            self.apply_policies(
                &target,
                &policies_of,
                Facts {
                    now,
                    current_since: since,
                    uses,
                },
                &mut item,
            )
            .await?;
            items.push(item);
        }
        let orphaned: Vec<Target> = self
            .store
            .list_schedules(None, false)
            .await?
            .into_iter()
            .filter(|s| s.state == crate::schedule::ScheduleState::Orphaned)
            .map(|s| s.target)
            .collect();
        for secret in self.store.list_secrets().await? {
            let target = Target::Secret(secret.path.clone());
            let versions = self.secret_backend().versions(&secret.path).await?;
            let Some(current) = versions.iter().find(|v| v.has(Stage::Current)) else {
                continue;
            };
            let mut soon = Vec::new();
            if let Some(previous) = versions.iter().find(|v| v.has(Stage::Previous))
                && previous.attr("disabled_at").is_none()
                && let Some(until) = previous
                    .attr("grace_until")
                    .and_then(|g| chrono::DateTime::parse_from_rfc3339(g).ok())
                && until.with_timezone(&chrono::Utc) - now <= TimeDelta::hours(24)
            {
                soon.push(format!("v{}", previous.version));
            }
            let mut item = ComplianceItem {
                target: target.to_string(),
                current: format!("v{}", current.version),
                current_since: current.created_at,
                age_days: age_days(now, current.created_at),
                max_age_days: None,
                overdue: false,
                overdue_reason: None,
                next_rotation: next_of.get(&target).copied(),
                policies: Vec::new(),
                pending_revocations: Vec::new(),
                grace_ending_soon: soon,
                versions_referenced: Vec::new(),
            };
            let mut policies = policies_of.clone();
            if let Some(p) = &secret.policy {
                let list = policies.entry(target.clone()).or_default();
                if !list.contains(p) {
                    list.push(p.clone());
                }
            }
            self.apply_policies(
                &target,
                &policies,
                Facts {
                    now,
                    current_since: current.created_at,
                    uses: 0,
                },
                &mut item,
            )
            .await?;
            if let Some(renew_at) = self.certificate_renewal_time(&target).await? {
                item.next_rotation = Some(item.next_rotation.map_or(renew_at, |n| n.min(renew_at)));
                if renew_at <= now {
                    item.overdue = true;
                    item.overdue_reason = Some("certificate is inside its renewal window".into());
                }
            }
            if orphaned.contains(&target) {
                item.overdue = true;
                item.overdue_reason =
                    Some("its schedule is orphaned (retries exhausted); see `schedule resume`".into());
            }
            items.push(item);
        }
        let stuck_runs: Vec<StuckRun> = self
            .store
            .list_active_runs()
            .await?
            .into_iter()
            .filter(|r| r.lease_expires_at <= now)
            .map(|r| StuckRun {
                rotation_id: r.rotation_id,
                target: r.target.to_string(),
                state: r.state.as_str().into(),
                lease_owner: r.lease_owner,
                lease_expired_at: r.lease_expires_at,
            })
            .collect();
        let overdue = items.iter().filter(|i| i.overdue).count();
        Ok(ComplianceReport {
            generated_at: now,
            ok: overdue == 0 && stuck_runs.is_empty(),
            items,
            stuck_runs,
            overdue,
        })
    }

    async fn apply_policies(
        &self,
        target: &Target,
        policies_of: &HashMap<Target, Vec<String>>,
        facts: Facts,
        item: &mut ComplianceItem,
    ) -> Result<()> {
        for name in policies_of.get(target).into_iter().flatten() {
            item.policies.push(name.clone());
            let Some(policy) = self.store.get_policy(name).await? else {
                continue;
            };
            if let Some(days) = max_age(&policy.trigger) {
                item.max_age_days = Some(item.max_age_days.map_or(days, |d| d.min(days)));
            }
            if policy.trigger.is_due(&facts)? {
                item.overdue = true;
                item.overdue_reason = Some(format!("policy {name} is due"));
            }
            if let Some(next) = policy.trigger.next_due_estimate(&facts)? {
                item.next_rotation = Some(item.next_rotation.map_or(next, |n| n.min(next)));
            }
        }
        Ok(())
    }
}

fn age_days(now: Timestamp, since: Timestamp) -> f64 {
    ((now - since).num_seconds() as f64 / 86_400.0 * 100.0).round() / 100.0
}
