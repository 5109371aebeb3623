//! Authority key rotation: the run state machine and its steps.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::authority::{KeyState, SigningKey};
use crate::canonical::record_signing_bytes;
use crate::chain::{TrustRecord, resigned_body};
use crate::error::{Error, Reason, Result};
use crate::ids::{AuthorityId, KeyId, RotationId, Target};
use crate::ports::RecordQuery;
use crate::run::{Run, RunState};
use crate::time::{Timestamp, rfc3339};

/// A request to rotate an authority's signing key.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    /// The authority.
    pub authority_id: AuthorityId,
    /// Grace period of the old key; the authority's default when `None`.
    pub grace_period_hours: Option<u32>,
    /// Idempotency token: a run with this id is resumed or reported, never repeated.
    pub rotation_id: Option<RotationId>,
    /// The schedule that asks for this rotation.
    pub schedule_id: Option<RotationId>,
}

impl RotateRequest {
    /// A plain rotation of `authority_id` with its default grace period.
    pub fn new(authority_id: AuthorityId) -> Self {
        RotateRequest {
            authority_id,
            grace_period_hours: None,
            rotation_id: None,
            schedule_id: None,
        }
    }
}

/// The outcome of a completed rotation (seed 000's `RotationResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationResult {
    /// Run id.
    pub rotation_id: RotationId,
    /// The authority.
    pub authority_id: AuthorityId,
    /// The new current key.
    pub new_key_id: KeyId,
    /// The replaced key, now in its grace period.
    pub old_key_id: KeyId,
    /// Trust chains re-signed with the new key.
    pub chains_updated: u64,
    /// When the run was recorded.
    pub started_at: Timestamp,
    /// When it completed.
    pub completed_at: Timestamp,
    /// When the old key's grace period ends.
    pub grace_period_end: Option<Timestamp>,
    /// Whether this call finished a run an earlier process had started.
    pub resumed: bool,
}

const PROBE_PREFIX: &[u8] = b"rotation-probe-v1\n";

/// Outcome of [`Engine::start_run`].
pub(super) enum Started {
    /// The run with the requested id had already finished.
    Finished(Run),
    /// A run this engine now holds; `true` if it was taken over.
    Run(Run, bool),
}

impl Engine {
    /// Rotates an authority's signing key (seed 000's `rotate_key`): creates
    /// a key, verifies it signs, promotes it, puts the old key in its grace
    /// period and re-signs every trust-chain record the authority signed.
    ///
    /// If the authority has a run whose lease has expired (its process
    /// died), that run is resumed and its result returned. If a live run
    /// exists, fails with `concurrent_rotation`.
    pub async fn rotate_key(&self, request: RotateRequest) -> Result<RotationResult> {
        let authority = self.authority(&request.authority_id).await?;
        let grace = request.grace_period_hours.unwrap_or(authority.grace_period_hours);
        super::authorities::check_grace(grace).map_err(|e| e.with_authority(&authority.id))?;
        let target = Target::Authority(authority.id.clone());
        // A prepublished next key (already in the JWKS) is the one promoted.
        let next_key = self
            .store
            .list_keys(&authority.id)
            .await?
            .into_iter()
            .find(super::authorities::is_prepublished)
            .map_or_else(|| KeyId::generate(&authority.id), |k| k.key_id);
        let new_run = |now: Timestamp, rotation_id: RotationId| Run {
            old_key_id: Some(authority.current_key_id.clone()),
            new_key_id: Some(next_key.clone()),
            grace_period_hours: grace,
            schedule_id: request.schedule_id,
            ..self.blank_run(target.clone(), rotation_id, now)
        };
        let started = self.start_run(&target, request.rotation_id, new_run, None).await;
        let (run, resumed) = match started.map_err(|e| e.with_authority(&authority.id))? {
            Started::Finished(run) => return finished_result(&run, false),
            Started::Run(run, resumed) => (run, resumed),
        };
        tracing::info!(authority = %authority.id, rotation = %run.rotation_id, resumed, "rotation started");
        let rotation_id = run.rotation_id;
        let finished = self
            .drive(run)
            .await
            .map_err(|e| e.with_authority(&authority.id).with_rotation(rotation_id))?;
        finished_result(&finished, resumed)
    }

    /// A run of `target` with no kind-specific fields, leased to this engine.
    pub(super) fn blank_run(&self, target: Target, rotation_id: RotationId, now: Timestamp) -> Run {
        Run {
            rotation_id,
            target,
            state: RunState::Pending,
            started_at: now,
            updated_at: now,
            completed_at: None,
            lease_owner: self.config.owner.clone(),
            lease_expires_at: now + self.config.lease,
            actor: self.config.actor.clone(),
            old_key_id: None,
            new_key_id: None,
            old_version: None,
            new_version: None,
            grace_period_hours: 0,
            grace_period_end: None,
            chains_updated: 0,
            error_reason: None,
            error_message: None,
            schedule_id: None,
            staged_key: None,
        }
    }

    /// Records a new run of `target` (built by `new_run`), or takes over
    /// its non-terminal run if that run's lease has expired. A run with
    /// `rotation_id` that already finished is returned as `Finished`. A live
    /// run held by another process is `concurrent_rotation`.
    pub(super) async fn start_run(
        &self,
        target: &Target,
        rotation_id: Option<RotationId>,
        new_run: impl FnOnce(Timestamp, RotationId) -> Run,
        plan: Option<serde_json::Value>,
    ) -> Result<Started> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if let Some(id) = rotation_id
            && let Some(existing) = tx.get_run(id).await?
        {
            if existing.target != *target {
                return Err(Error::invalid_input(format!(
                    "rotation {id} belongs to {}",
                    existing.target
                )));
            }
            if existing.state.is_terminal() {
                return Ok(Started::Finished(existing));
            }
        }
        let lease_owner = format!(
            "{}#{}",
            self.config.owner,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let started = match tx.active_run(target).await? {
            Some(active) if rotation_id.is_some_and(|id| id != active.rotation_id) => {
                return Err(Error::new(
                    Reason::ConcurrentRotation,
                    format!("another rotation of {target} ({}) is in progress", active.rotation_id),
                )
                .with_rotation(active.rotation_id));
            }
            Some(mut active) => {
                if !active.lease_expired(now) {
                    return Err(Error::new(
                        Reason::ConcurrentRotation,
                        format!(
                            "another rotation of {target} is in progress (rotation {}, state {}, held by {} until {})",
                            active.rotation_id,
                            active.state.as_str(),
                            active.lease_owner,
                            rfc3339(active.lease_expires_at)
                        ),
                    )
                    .with_rotation(active.rotation_id));
                }
                let previous_owner = std::mem::replace(&mut active.lease_owner, lease_owner);
                active.lease_expires_at = now + self.config.lease;
                active.updated_at = now;
                tx.update_run(&active).await?;
                let draft = self.draft(
                    event::ROTATION_RESUMED,
                    target.clone(),
                    Some(active.rotation_id),
                    json!({"state": active.state.as_str(), "previous_owner": previous_owner}),
                );
                self.append_audit(tx.as_mut(), now, vec![draft]).await?;
                Started::Run(active, true)
            }
            None => {
                let mut run = new_run(now, rotation_id.unwrap_or_else(RotationId::generate));
                run.lease_owner = lease_owner;
                tx.insert_run(&run).await?;
                let mut details = json!({
                    "old_key_id": run.old_key_id, "new_key_id": run.new_key_id,
                    "old_version": run.old_version, "new_version": run.new_version,
                    "grace_period_hours": run.grace_period_hours,
                });
                if let Some(plan) = plan {
                    // The run's decisions, journaled with it so a resumed run keeps them.
                    details["plan"] = plan;
                }
                let draft = self.draft(event::ROTATION_STARTED, target.clone(), Some(run.rotation_id), details);
                self.append_audit(tx.as_mut(), now, vec![draft]).await?;
                Started::Run(run, false)
            }
        };
        tx.commit().await?;
        Ok(started)
    }

    /// Drives a run this engine holds the lease of to a terminal state.
    pub(super) async fn drive(&self, mut run: Run) -> Result<Run> {
        loop {
            let keyring = matches!(run.target, Target::Keyring(_));
            let step = match run.state {
                RunState::Pending => self.advance(&mut run, RunState::Creating).await,
                RunState::Creating if keyring => self.keyring_step_create(&mut run).await,
                RunState::Creating => self.step_create(&mut run).await,
                RunState::Verifying if keyring => self.keyring_step_verify(&mut run).await,
                RunState::Verifying => self.step_verify(&mut run).await,
                RunState::Promoting if keyring => self.keyring_step_promote(&mut run).await,
                RunState::Promoting => self.step_promote(&mut run).await,
                RunState::Finishing if keyring => self.finish_run(&mut run, RunState::Completed).await,
                RunState::Finishing => self.step_finish(&mut run).await,
                RunState::RollingBack => self.step_roll_back(&mut run).await,
                RunState::Completed | RunState::RolledBack | RunState::Failed => return Ok(run),
            };
            if let Err(error) = step {
                return Err(self.on_step_error(run, error).await);
            }
        }
    }

    /// Decides what a failed step means for the run. Backend outages and a
    /// lost lease leave the run as it is, for a later resume. Other failures
    /// before promotion roll back; after promotion (both keys valid, chains
    /// verifying) the run is marked failed and a new rotation re-signs
    /// whatever is left.
    async fn on_step_error(&self, mut run: Run, error: Error) -> Error {
        if error.reason.is_retryable() {
            tracing::warn!(rotation = %run.rotation_id, state = run.state.as_str(), %error, "rotation interrupted; it resumes after the lease expires");
            return error;
        }
        run.error_reason = Some(error.reason.as_str().to_owned());
        run.error_message = Some(error.message.clone());
        match run.state {
            // Promotion is one transaction: if it failed, nothing was promoted.
            RunState::Pending | RunState::Creating | RunState::Verifying | RunState::Promoting => {
                let reason = error.reason;
                if let Err(e) = self.advance(&mut run, RunState::RollingBack).await {
                    return e;
                }
                match self.step_roll_back(&mut run).await {
                    Ok(()) => Error::new(
                        reason,
                        format!("rotation failed and was rolled back: {}", error.message),
                    ),
                    Err(e) => e,
                }
            }
            _ => {
                if let Err(e) = self.finish_run(&mut run, RunState::Failed).await {
                    return e;
                }
                Error::new(
                    Reason::RotationFailed,
                    format!(
                        "rotation failed after promotion: {}; start a new rotation to finish re-signing",
                        error.message
                    ),
                )
            }
        }
    }

    /// Persists a plain state transition.
    pub(super) async fn advance(&self, run: &mut Run, next: RunState) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        run.state = next;
        tx.update_run(run).await?;
        tx.commit().await
    }

    /// `creating`: generate the new key (idempotent on its pre-chosen id)
    /// and store it as `pending`.
    async fn step_create(&self, run: &mut Run) -> Result<()> {
        let (authority, new_key_id) = authority_run_keys(run)?;
        if self.store.get_key(&new_key_id).await?.is_none() {
            let created = self.custody.create_signing_key(&new_key_id).await?;
            let now = self.now();
            let key = SigningKey {
                key_id: new_key_id.clone(),
                authority_id: authority.clone(),
                algorithm: "Ed25519".into(),
                public_key: created.public_key,
                state: KeyState::Pending,
                created_at: now,
                activated_at: None,
                rotated_at: None,
                grace_until: None,
                revoked_at: None,
                revocation_reason: None,
                created_by: Some(run.rotation_id),
                custody: created.custody,
            };
            let mut tx = self.store.begin().await?;
            self.hold_lease(tx.as_mut(), run, now).await?;
            if tx.get_key(&new_key_id).await?.is_none() {
                tx.insert_key(&key).await?;
                let draft = self.draft(
                    event::KEY_CREATED,
                    run.target.clone(),
                    Some(run.rotation_id),
                    json!({"key_id": new_key_id, "algorithm": "Ed25519", "custody": key.custody.custody}),
                );
                self.append_audit(tx.as_mut(), now, vec![draft]).await?;
            }
            run.state = RunState::Verifying;
            tx.update_run(run).await?;
            return tx.commit().await;
        }
        self.advance(run, RunState::Verifying).await
    }

    /// `verifying`: the new key must sign a probe that verifies with its
    /// stored public key.
    async fn step_verify(&self, run: &mut Run) -> Result<()> {
        let (_, new_key_id) = authority_run_keys(run)?;
        let key = self
            .store
            .get_key(&new_key_id)
            .await?
            .ok_or_else(|| Error::new(Reason::VerificationFailed, format!("new key {new_key_id} is missing")))?;
        let mut probe = PROBE_PREFIX.to_vec();
        probe.extend_from_slice(run.rotation_id.to_string().as_bytes());
        let signatures = self
            .custody
            .sign(&key.key_id, &key.custody, std::slice::from_ref(&probe))
            .await?;
        let ok = signatures
            .first()
            .is_some_and(|sig| self.crypto.verify_ed25519(&key.public_key, &probe, sig));
        if !ok {
            return Err(Error::new(
                Reason::VerificationFailed,
                format!("new key {new_key_id} does not produce signatures that verify with its public key"),
            ));
        }
        self.advance(run, RunState::Promoting).await
    }

    /// `promoting`: atomically make the new key current and start the old
    /// key's grace period.
    async fn step_promote(&self, run: &mut Run) -> Result<()> {
        let (authority_id, new_key_id) = authority_run_keys(run)?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        let mut authority = tx
            .get_authority(&authority_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("authority {authority_id} disappeared")))?;
        if authority.current_key_id != new_key_id {
            let mut new_key = tx
                .get_key(&new_key_id)
                .await?
                .ok_or_else(|| Error::new(Reason::RotationFailed, format!("new key {new_key_id} is missing")))?;
            new_key.state = KeyState::Active;
            new_key.activated_at = Some(now);
            tx.update_key(&new_key).await?;
            // The old key's grace period starts when the run ends (every
            // chain re-signed), so it never expires under a chain still
            // signed by it; until then it has no end.
            if let Some(mut old) = tx.get_key(&authority.current_key_id).await? {
                old.state = KeyState::Grace;
                old.rotated_at = Some(now);
                old.grace_until = None;
                tx.update_key(&old).await?;
            }
            run.old_key_id = Some(authority.current_key_id.clone());
            authority.current_key_id = new_key_id;
            authority.last_rotated_at = Some(now);
            tx.update_authority(&authority).await?;
        }
        run.state = RunState::Finishing;
        tx.update_run(run).await?;
        tx.commit().await
    }

    /// `finishing`: re-sign, batch by batch, every record of the authority
    /// still signed by one of its other non-revoked keys; then complete.
    async fn step_finish(&self, run: &mut Run) -> Result<()> {
        let (authority_id, new_key_id) = authority_run_keys(run)?;
        let keys = self.store.list_keys(&authority_id).await?;
        let new_key = keys
            .iter()
            .find(|k| k.key_id == new_key_id)
            .cloned()
            .ok_or_else(|| Error::new(Reason::RotationFailed, format!("new key {new_key_id} is missing")))?;
        let from_keys: Vec<KeyId> = keys
            .iter()
            .filter(|k| k.key_id != new_key_id && matches!(k.state, KeyState::Active | KeyState::Grace))
            .map(|k| k.key_id.clone())
            .collect();
        if !from_keys.is_empty() {
            let query = RecordQuery {
                authority: Some(authority_id.clone()),
                key_ids: Some(from_keys.clone()),
                limit: self.config.resign_batch.max(1),
                ..RecordQuery::default()
            };
            loop {
                let batch = self.store.list_records(&query).await?;
                if batch.is_empty() {
                    break;
                }
                let now = self.now();
                let resigned = self.resign(&batch, &new_key, run.rotation_id, now).await?;
                let mut tx = self.store.begin().await?;
                self.hold_lease(tx.as_mut(), run, now).await?;
                tx.resign_records(&from_keys, &resigned).await?;
                tx.update_run(run).await?;
                tx.commit().await?;
            }
        }
        run.chains_updated = self.store.count_agents_resigned_by(run.rotation_id).await?;
        self.finish_run(run, RunState::Completed).await
    }

    /// Signs new bodies for `batch` with `key` in one custody call.
    async fn resign(
        &self,
        batch: &[TrustRecord],
        key: &SigningKey,
        rotation: RotationId,
        now: Timestamp,
    ) -> Result<Vec<TrustRecord>> {
        let mut updated: Vec<TrustRecord> = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for record in batch {
            let body = resigned_body(record, &key.key_id, now);
            messages.push(record_signing_bytes(&body)?);
            let mut r = record.clone();
            r.body = body;
            r.key_id = key.key_id.clone();
            r.signed_at = now;
            r.resigned_by = Some(rotation);
            updated.push(r);
        }
        let signatures = self.custody.sign(&key.key_id, &key.custody, &messages).await?;
        if signatures.len() != updated.len() {
            return Err(Error::new(
                Reason::RotationFailed,
                "custody returned the wrong number of signatures",
            ));
        }
        for (record, signature) in updated.iter_mut().zip(signatures) {
            record.signature = signature;
        }
        Ok(updated)
    }

    /// `rolling_back`: forget the new key (or keyring version) if it was never promoted.
    async fn step_roll_back(&self, run: &mut Run) -> Result<()> {
        if let Target::Authority(_) = run.target {
            let (_, new_key_id) = authority_run_keys(run)?;
            // A prepublished key (created by no run) survives the rollback:
            // relying parties already cache it.
            if let Some(key) = self.store.get_key(&new_key_id).await?
                && key.state == KeyState::Pending
                && key.created_by == Some(run.rotation_id)
            {
                self.custody.destroy_signing_key(&key.key_id, &key.custody).await?;
            }
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        match (&run.target, &run.new_key_id, run.new_version) {
            (Target::Authority(_), Some(new_key_id), _) => {
                if let Some(key) = tx.get_key(new_key_id).await?
                    && key.state == KeyState::Pending
                    && key.created_by == Some(run.rotation_id)
                {
                    tx.delete_key(new_key_id).await?;
                }
            }
            (Target::Keyring(name), _, Some(version)) => {
                if let Some(v) = tx.get_key_version(name, version).await?
                    && v.state == crate::keyring::VersionState::Pending
                {
                    tx.delete_key_version(name, version).await?;
                }
            }
            _ => {}
        }
        run.state = RunState::RolledBack;
        run.completed_at = Some(now);
        tx.update_run(run).await?;
        let details =
            json!({"error_reason": run.error_reason, "error": run.error_message, "new_key_id": run.new_key_id});
        let drafts = vec![
            self.draft(
                event::ROTATION_FAILED,
                run.target.clone(),
                Some(run.rotation_id),
                details.clone(),
            ),
            self.draft(
                event::ROTATION_ROLLED_BACK,
                run.target.clone(),
                Some(run.rotation_id),
                details,
            ),
        ];
        self.append_audit(tx.as_mut(), now, drafts).await?;
        tx.commit().await?;
        tracing::warn!(rotation = %run.rotation_id, "rotation rolled back");
        Ok(())
    }

    /// Ends a run as `completed` or `failed`, with its audit event.
    pub(super) async fn finish_run(&self, run: &mut Run, state: RunState) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        run.state = state;
        run.completed_at = Some(now);
        if let (Target::Authority(_), Some(old_key_id)) = (&run.target, &run.old_key_id)
            && let Some(mut old) = tx.get_key(old_key_id).await?
            && old.state == KeyState::Grace
            && old.grace_until.is_none()
        {
            let end = now + chrono::TimeDelta::hours(i64::from(run.grace_period_hours));
            old.grace_until = Some(end);
            tx.update_key(&old).await?;
            run.grace_period_end = Some(end);
        }
        tx.update_run(run).await?;
        let draft = if state == RunState::Completed {
            self.draft(
                event::ROTATION_COMPLETED,
                run.target.clone(),
                Some(run.rotation_id),
                json!({
                    "old_key_id": run.old_key_id,
                    "new_key_id": run.new_key_id,
                    "old_version": run.old_version,
                    "new_version": run.new_version,
                    "chains_updated": run.chains_updated,
                    "grace_period_end": run.grace_period_end.map(rfc3339),
                }),
            )
        } else {
            self.draft(
                event::ROTATION_FAILED,
                run.target.clone(),
                Some(run.rotation_id),
                json!({"error_reason": run.error_reason, "error": run.error_message, "state": "failed"}),
            )
        };
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        tracing::info!(rotation = %run.rotation_id, state = state.as_str(), chains = run.chains_updated, "rotation finished");
        Ok(())
    }
}

fn authority_run_keys(run: &Run) -> Result<(AuthorityId, KeyId)> {
    match (&run.target, &run.new_key_id) {
        (Target::Authority(a), Some(k)) => Ok((a.clone(), k.clone())),
        _ => Err(Error::new(
            Reason::RotationFailed,
            format!("run {} is not an authority key rotation", run.rotation_id),
        )),
    }
}

/// The result of a run that reached a terminal state.
fn finished_result(run: &Run, resumed: bool) -> Result<RotationResult> {
    let Target::Authority(authority_id) = &run.target else {
        return Err(Error::invalid_input(format!(
            "rotation {} is not an authority rotation",
            run.rotation_id
        )));
    };
    if run.state != RunState::Completed {
        let reason = match run.state {
            RunState::RolledBack => Reason::RolledBack,
            _ => Reason::RotationFailed,
        };
        return Err(Error::new(
            reason,
            format!(
                "rotation {} ended {}: {}",
                run.rotation_id,
                run.state.as_str(),
                run.error_message.as_deref().unwrap_or("no error recorded")
            ),
        )
        .with_authority(authority_id)
        .with_rotation(run.rotation_id));
    }
    let (Some(new_key_id), Some(old_key_id)) = (run.new_key_id.clone(), run.old_key_id.clone()) else {
        return Err(Error::new(
            Reason::RotationFailed,
            format!("rotation {} completed without recording its keys", run.rotation_id),
        ));
    };
    Ok(RotationResult {
        rotation_id: run.rotation_id,
        authority_id: authority_id.clone(),
        new_key_id,
        old_key_id,
        chains_updated: run.chains_updated,
        started_at: run.started_at,
        completed_at: run.completed_at.unwrap_or(run.updated_at),
        grace_period_end: run.grace_period_end,
        resumed,
    })
}
