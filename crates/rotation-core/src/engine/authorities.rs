//! Authorities: creation, status, revocation and public keys.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::authority::{
    Authority, DEFAULT_GRACE_PERIOD_HOURS, DEFAULT_ROTATION_PERIOD_DAYS, EffectiveKeyState, KeyState, SigningKey,
};
use crate::error::{Error, Reason, Result};
use crate::ids::{AuthorityId, KeyId, RotationId, Target};
use crate::run::RunState;
use crate::time::{Timestamp, rfc3339};

/// Longest accepted rotation period (10 years).
pub const MAX_ROTATION_PERIOD_DAYS: u32 = 3650;
/// Longest accepted grace period (1 year).
pub const MAX_GRACE_PERIOD_HOURS: u32 = 8760;

/// Parameters of a new authority.
#[derive(Debug, Clone)]
pub struct NewAuthority {
    /// Id.
    pub id: AuthorityId,
    /// Display name (defaults to the id).
    pub name: Option<String>,
    /// Rotation period in days (default 90).
    pub rotation_period_days: Option<u32>,
    /// Default grace period in hours (default 24).
    pub grace_period_hours: Option<u32>,
}

/// Overall rotation status of an authority (seed 000's `RotationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStatus {
    /// Never rotated and nothing scheduled.
    Idle,
    /// A rotation is scheduled and not yet started.
    Pending,
    /// A rotation run is in progress.
    InProgress,
    /// The last rotation completed and no old key is waiting.
    Completed,
    /// The last rotation failed or was rolled back.
    Failed,
    /// Old keys are in their grace period or awaiting revocation.
    GracePeriod,
}

impl RotationStatus {
    /// The stable string of this status.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStatus::Idle => "idle",
            RotationStatus::Pending => "pending",
            RotationStatus::InProgress => "in_progress",
            RotationStatus::Completed => "completed",
            RotationStatus::Failed => "failed",
            RotationStatus::GracePeriod => "grace_period",
        }
    }
}

/// Rotation status of an authority (seed 000's `RotationStatusInfo`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationStatusInfo {
    /// The authority.
    pub authority_id: AuthorityId,
    /// When the current key became current by rotation, if ever rotated.
    pub last_rotation: Option<Timestamp>,
    /// The earliest pending scheduled rotation.
    pub next_scheduled: Option<Timestamp>,
    /// When the rotation period says the current key is due.
    pub rotation_due_at: Timestamp,
    /// Whether the current key is older than the rotation period.
    pub overdue: bool,
    /// The active key.
    pub current_key_id: KeyId,
    /// Keys whose grace period has ended and that await revocation.
    pub pending_revocations: Vec<KeyId>,
    /// Configured rotation period.
    pub rotation_period_days: u32,
    /// Configured default grace period.
    pub grace_period_hours: u32,
    /// Overall status.
    pub status: RotationStatus,
    /// Keys in their grace period and when it ends.
    pub grace_period_keys: BTreeMap<KeyId, Timestamp>,
    /// The run in progress, if any.
    pub active_rotation_id: Option<RotationId>,
    /// State of the most recent run, if any.
    pub last_run_state: Option<RunState>,
}

/// Options of a key revocation.
#[derive(Debug, Clone, Default)]
pub struct RevokeOptions {
    /// Revoke even though the grace period has not ended (audited as `key_force_revoked`).
    pub force: bool,
    /// Operator's reason; required with `force`.
    pub reason: Option<String>,
}

/// One JSON Web Key (RFC 8037 OKP Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// Public key, base64url without padding.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `EdDSA`.
    pub alg: String,
}

/// A JWK Set (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Engine {
    /// Creates an authority with a fresh active signing key.
    pub async fn create_authority(&self, new: NewAuthority) -> Result<Authority> {
        let period = new.rotation_period_days.unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS);
        let grace = new.grace_period_hours.unwrap_or(DEFAULT_GRACE_PERIOD_HOURS);
        if period == 0 || period > MAX_ROTATION_PERIOD_DAYS {
            return Err(Error::invalid_input(format!(
                "rotation period must be 1 to {MAX_ROTATION_PERIOD_DAYS} days, got {period}"
            )));
        }
        check_grace(grace)?;
        let name = new.name.unwrap_or_else(|| new.id.to_string());
        if name.is_empty() || name.len() > 256 || name.chars().any(crate::ids::is_invisible) {
            return Err(Error::invalid_input(
                "authority name must be 1 to 256 printable characters (no control or invisible characters)",
            ));
        }
        if self.store.get_authority(&new.id).await?.is_some() {
            return Err(already_exists(&new.id));
        }
        let key_id = KeyId::generate(&new.id);
        let created = self.custody.create_signing_key(&key_id).await?;
        let now = self.now();
        let key = SigningKey {
            key_id: key_id.clone(),
            authority_id: new.id.clone(),
            algorithm: "Ed25519".into(),
            public_key: created.public_key,
            state: KeyState::Active,
            created_at: now,
            activated_at: Some(now),
            rotated_at: None,
            grace_until: None,
            revoked_at: None,
            revocation_reason: None,
            created_by: None,
            custody: created.custody,
        };
        let authority = Authority {
            id: new.id.clone(),
            name,
            rotation_period_days: period,
            grace_period_hours: grace,
            current_key_id: key_id.clone(),
            created_at: now,
            last_rotated_at: None,
            prepublish_hours: 0,
        };
        let target = Target::Authority(new.id.clone());
        let mut tx = self.store.begin().await?;
        if tx.get_authority(&new.id).await?.is_some() {
            return Err(already_exists(&new.id));
        }
        tx.insert_key(&key).await?;
        tx.insert_authority(&authority).await?;
        let drafts = vec![
            self.draft(
                event::AUTHORITY_CREATED,
                target.clone(),
                None,
                json!({"name": authority.name, "rotation_period_days": period, "grace_period_hours": grace}),
            ),
            self.draft(
                event::KEY_CREATED,
                target,
                None,
                json!({"key_id": key_id, "algorithm": "Ed25519", "custody": key.custody.custody}),
            ),
        ];
        self.append_audit(tx.as_mut(), now, drafts).await?;
        tx.commit().await?;
        tracing::info!(authority = %authority.id, key = %key_id, "authority created");
        Ok(authority)
    }

    /// One authority, or `not_found`.
    pub async fn authority(&self, id: &AuthorityId) -> Result<Authority> {
        self.store.get_authority(id).await?.ok_or_else(|| {
            Error::not_found(format!(
                "authority {id} not found; create it with `rotation authority create {id}`"
            ))
            .with_authority(id)
        })
    }

    /// All authorities.
    pub async fn list_authorities(&self) -> Result<Vec<Authority>> {
        self.store.list_authorities().await
    }

    /// An authority's keys, oldest first.
    pub async fn keys(&self, id: &AuthorityId) -> Result<Vec<SigningKey>> {
        self.authority(id).await?;
        self.store.list_keys(id).await
    }

    /// Current rotation status of an authority.
    pub async fn get_rotation_status(&self, id: &AuthorityId) -> Result<RotationStatusInfo> {
        let authority = self.authority(id).await?;
        let now = self.now();
        let target = Target::Authority(id.clone());
        let keys = self.store.list_keys(id).await?;
        let mut grace_period_keys = BTreeMap::new();
        let mut pending_revocations = Vec::new();
        for key in &keys {
            match key.effective_state(now) {
                EffectiveKeyState::Grace => {
                    grace_period_keys.insert(key.key_id.clone(), key.grace_until.unwrap_or(now));
                }
                EffectiveKeyState::PendingRevocation => pending_revocations.push(key.key_id.clone()),
                _ => {}
            }
        }
        let runs = self.store.list_runs(Some(&target), 1).await?;
        let last_run = runs.first();
        let active_rotation_id = last_run.filter(|r| !r.state.is_terminal()).map(|r| r.rotation_id);
        let next_scheduled = self
            .store
            .list_schedules(Some(&target), true)
            .await?
            .first()
            .map(|s| s.due_at);
        let status = if active_rotation_id.is_some() {
            RotationStatus::InProgress
        } else if matches!(last_run.map(|r| r.state), Some(RunState::Failed | RunState::RolledBack)) {
            RotationStatus::Failed
        } else if !grace_period_keys.is_empty() || !pending_revocations.is_empty() {
            RotationStatus::GracePeriod
        } else if next_scheduled.is_some() {
            RotationStatus::Pending
        } else if last_run.is_some() {
            RotationStatus::Completed
        } else {
            RotationStatus::Idle
        };
        let since = authority.last_rotated_at.unwrap_or(authority.created_at);
        let rotation_due_at = since + chrono::TimeDelta::days(i64::from(authority.rotation_period_days));
        Ok(RotationStatusInfo {
            authority_id: authority.id,
            last_rotation: authority.last_rotated_at,
            next_scheduled,
            rotation_due_at,
            overdue: now >= rotation_due_at,
            current_key_id: authority.current_key_id,
            pending_revocations,
            rotation_period_days: authority.rotation_period_days,
            grace_period_hours: authority.grace_period_hours,
            status,
            grace_period_keys,
            active_rotation_id,
            last_run_state: last_run.map(|r| r.state),
        })
    }

    /// Revokes a key whose grace period has ended (seed 000's
    /// `revoke_old_key`). Too early: `grace_period_not_expired`, unless
    /// `force` (audited as `key_force_revoked`). Not a grace key:
    /// `key_not_in_grace_period`.
    pub async fn revoke_old_key(
        &self,
        authority: &AuthorityId,
        key_id: &KeyId,
        options: RevokeOptions,
    ) -> Result<SigningKey> {
        self.authority(authority).await?;
        if options.force && options.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(
                Error::invalid_input("a forced revocation needs a reason (--reason TEXT)").with_authority(authority),
            );
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let not_in_grace = |why: &str| {
            Error::new(
                Reason::KeyNotInGracePeriod,
                format!("key {key_id} of authority {authority} {why}"),
            )
            .with_authority(authority)
        };
        let mut key = match tx.get_key(key_id).await? {
            Some(k) if k.authority_id == *authority => k,
            _ => return Err(not_in_grace("not found")),
        };
        match key.state {
            KeyState::Grace => {}
            KeyState::Active => return Err(not_in_grace("is the current key; rotate the authority first")),
            KeyState::Pending => return Err(not_in_grace("has not been promoted by its rotation yet")),
            KeyState::Revoked => return Err(not_in_grace("is already revoked")),
        }
        if !options.force && tx.active_run(&Target::Authority(authority.clone())).await?.is_some() {
            return Err(Error::new(
                Reason::ConcurrentRotation,
                format!("authority {authority} has a rotation in progress; revoke after it completes"),
            )
            .with_authority(authority));
        }
        // A grace key without an end belongs to a rotation still re-signing.
        let until = key.grace_until.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let early = now < until;
        if early && !options.force {
            let ends = key
                .grace_until
                .map(rfc3339)
                .unwrap_or_else(|| "after its rotation completes".into());
            return Err(Error::new(
                Reason::GracePeriodNotExpired,
                format!("grace period for key {key_id} ends {ends}; wait until then or use --force --reason TEXT to revoke now"),
            )
            .with_authority(authority));
        }
        // Unusable for signing before the revocation commits: if the custody
        // cannot be reached, the key stays in grace and the call can be retried.
        self.custody
            .retire_signing_key(key_id, &key.custody)
            .await
            .map_err(|e| e.with_authority(authority))?;
        key.state = KeyState::Revoked;
        key.revoked_at = Some(now);
        key.revocation_reason = options.reason.clone();
        tx.update_key(&key).await?;
        let kind = if early {
            event::KEY_FORCE_REVOKED
        } else {
            event::KEY_REVOKED
        };
        let draft = self.draft(
            kind,
            Target::Authority(authority.clone()),
            key.created_by,
            json!({
                "key_id": key_id,
                "grace_until": key.grace_until.map(rfc3339),
                "forced": early,
                "reason": options.reason,
            }),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        tracing::info!(authority = %authority, key = %key_id, forced = early, "key revoked");
        Ok(key)
    }

    /// The authority's public keys as a JWK Set: active and grace keys,
    /// and the prepublished next key (see [`Engine::prepublish_keys`]);
    /// never revoked or expired ones.
    pub async fn jwks(&self, id: &AuthorityId) -> Result<Jwks> {
        let now = self.now();
        let keys = self
            .keys(id)
            .await?
            .into_iter()
            .filter(|k| k.accepts_signatures(now) || is_prepublished(k))
            .map(|k| Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(&k.public_key),
                kid: k.key_id.to_string(),
                use_: "sig".into(),
                alg: "EdDSA".into(),
            })
            .collect();
        Ok(Jwks { keys })
    }
}

/// A key generated ahead of its rotation (pending, created by no run).
pub(super) fn is_prepublished(key: &SigningKey) -> bool {
    key.state == crate::authority::KeyState::Pending && key.created_by.is_none()
}

impl Engine {
    /// Sets how many hours before its due rotation an authority publishes
    /// its next key (0 turns it off); audited as `authority_updated`.
    pub async fn set_prepublish_hours(&self, id: &AuthorityId, hours: u32) -> Result<Authority> {
        if hours > MAX_GRACE_PERIOD_HOURS {
            return Err(Error::invalid_input(format!(
                "prepublish hours must be 0 to {MAX_GRACE_PERIOD_HOURS}, got {hours}"
            ))
            .with_authority(id));
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut authority = tx
            .get_authority(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("authority {id} not found")).with_authority(id))?;
        authority.prepublish_hours = hours;
        tx.update_authority(&authority).await?;
        let draft = self.draft(
            "authority_updated",
            Target::Authority(id.clone()),
            None,
            json!({"prepublish_hours": hours}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(authority)
    }

    /// For every authority with `prepublish_hours`, once its next rotation
    /// (the end of its rotation period, or an earlier one-off schedule) is
    /// that close, creates the next key now: it is listed in the JWKS but
    /// signs nothing until the rotation promotes it, so relying parties
    /// with cached key sets never meet an unknown `kid`. Returns the keys created.
    pub async fn prepublish_keys(&self) -> Result<Vec<SigningKey>> {
        let now = self.now();
        let mut created = Vec::new();
        for authority in self.store.list_authorities().await? {
            if authority.prepublish_hours == 0 {
                continue;
            }
            let since = authority.last_rotated_at.unwrap_or(authority.created_at);
            let mut due = since + chrono::TimeDelta::days(i64::from(authority.rotation_period_days));
            let target = Target::Authority(authority.id.clone());
            for s in self.store.list_schedules(Some(&target), true).await? {
                if s.policy.is_none() && s.state == crate::schedule::ScheduleState::Scheduled {
                    due = due.min(s.due_at);
                }
            }
            if now < due - chrono::TimeDelta::hours(i64::from(authority.prepublish_hours)) {
                continue;
            }
            let keys = self.store.list_keys(&authority.id).await?;
            if keys.iter().any(is_prepublished) {
                continue;
            }
            let key_id = KeyId::generate(&authority.id);
            let made = self.custody.create_signing_key(&key_id).await?;
            let key = SigningKey {
                key_id: key_id.clone(),
                authority_id: authority.id.clone(),
                algorithm: "Ed25519".into(),
                public_key: made.public_key,
                state: crate::authority::KeyState::Pending,
                created_at: now,
                activated_at: None,
                rotated_at: None,
                grace_until: None,
                revoked_at: None,
                revocation_reason: None,
                created_by: None,
                custody: made.custody,
            };
            let mut tx = self.store.begin().await?;
            tx.insert_key(&key).await?;
            let draft = self.draft(
                crate::audit::event::KEY_CREATED,
                target,
                None,
                json!({"key_id": key_id, "algorithm": "Ed25519", "prepublished": true, "rotation_due_at": crate::time::rfc3339(due)}),
            );
            self.append_audit(tx.as_mut(), now, vec![draft]).await?;
            tx.commit().await?;
            tracing::info!(authority = %authority.id, key = %key_id, "next key prepublished");
            created.push(key);
        }
        Ok(created)
    }
}

/// Grace periods are 0 to [`MAX_GRACE_PERIOD_HOURS`] hours.
pub(super) fn check_grace(grace: u32) -> Result<()> {
    if grace > MAX_GRACE_PERIOD_HOURS {
        return Err(Error::invalid_input(format!(
            "grace period must be 0 to {MAX_GRACE_PERIOD_HOURS} hours, got {grace}"
        )));
    }
    Ok(())
}

fn already_exists(id: &AuthorityId) -> Error {
    Error::new(Reason::AlreadyExists, format!("authority {id} already exists")).with_authority(id)
}
