//! Keyring rotation (through the run state machine) and migration of
//! stored values to a new version.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use super::rotation::Started;
use crate::error::{Error, Reason, Result};
use crate::ids::{KeyringName, RotationId, Target, ValueId};
use crate::keyring::{KeyVersion, Reseal, VersionState, value_aad};
use crate::ports::Notification;
use crate::run::{Run, RunState};
use crate::time::Timestamp;

/// The outcome of a keyring rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringRotation {
    /// Run id (absent for a dry run).
    pub rotation_id: Option<RotationId>,
    /// The keyring.
    pub keyring: KeyringName,
    /// Version that was current.
    pub previous_version: u32,
    /// Version now current (or that would be, for a dry run).
    pub new_version: u32,
    /// When the run started.
    pub started_at: Timestamp,
    /// When it completed.
    pub completed_at: Timestamp,
    /// Whether this call finished a run an earlier process had started.
    pub resumed: bool,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Values sealed under older versions (they still decrypt).
    pub values_needing_migration: u64,
}

/// Options of a keyring rotation beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct KeyringRotateRequest {
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// Idempotency token.
    pub rotation_id: Option<RotationId>,
    /// Explicit new version number (must exceed every existing one).
    pub new_version: Option<u32>,
    /// Key material to use instead of a generated key.
    pub key: Option<crate::ports::DataKey>,
    /// Where `key` came from (recorded in the audit log), e.g. `imported:FILE`.
    pub source: Option<String>,
}

/// Options of `keyring migrate`.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Version to migrate to (default: the current one).
    pub target_version: Option<u32>,
    /// Values per committed batch.
    pub batch_size: usize,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Allow a target that is not the current version.
    pub force: bool,
    /// After a complete migration, retire every older version no value uses.
    pub retire_old: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            target_version: None,
            batch_size: 5000,
            dry_run: false,
            force: false,
            retire_old: false,
        }
    }
}

/// Progress of a migration, reported after each batch.
#[derive(Debug, Clone, Copy)]
pub struct MigrationProgress {
    /// Values to migrate when the migration started.
    pub to_migrate: u64,
    /// Values migrated so far.
    pub migrated: u64,
    /// Values that failed so far.
    pub failed: u64,
}

/// A value that could not be migrated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValueFailure {
    /// The value.
    pub id: ValueId,
    /// Stable reason.
    pub reason: String,
    /// What went wrong.
    pub message: String,
}

/// The summary of a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationReport {
    /// The keyring.
    pub keyring: KeyringName,
    /// Version values were migrated to.
    pub target_version: u32,
    /// Values re-encrypted.
    pub migrated: u64,
    /// Values already on (or above) the target when the migration started.
    pub already_current: u64,
    /// Values that failed (reported by id; the others went on).
    pub failed: u64,
    /// All values.
    pub total: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Versions retired afterwards (`--retire-old`).
    pub retired_versions: Vec<u32>,
    /// The failures, by id (at most 1000 listed).
    pub failures: Vec<ValueFailure>,
}

const LISTED_FAILURES: usize = 1000;

impl Engine {
    /// Rotates a keyring: adds a version, verifies it, and makes it current
    /// (through the run state machine: one run per keyring, resumable).
    /// With `dry_run`, reports what would happen and changes nothing.
    pub async fn rotate_keyring(
        &self,
        name: &KeyringName,
        dry_run: bool,
        rotation_id: Option<RotationId>,
    ) -> Result<KeyringRotation> {
        self.rotate_keyring_with(
            name,
            KeyringRotateRequest {
                dry_run,
                rotation_id,
                ..KeyringRotateRequest::default()
            },
        )
        .await
    }

    /// Rotates a keyring with options: an explicit new version number
    /// (greater than every existing one, e.g. an emergency version), and
    /// key material brought by the caller (imported, or from a key provider
    /// command) instead of a generated key.
    pub async fn rotate_keyring_with(
        &self,
        name: &KeyringName,
        request: KeyringRotateRequest,
    ) -> Result<KeyringRotation> {
        let KeyringRotateRequest {
            dry_run,
            rotation_id,
            new_version,
            key,
            source,
        } = request;
        let keyring = self.keyring(name).await?;
        let versions = self.store.list_key_versions(name).await?;
        let highest = versions.iter().map(|v| v.version).max().unwrap_or(0);
        let next = match new_version {
            None => highest + 1,
            Some(v) if v > highest => v,
            Some(v) => {
                return Err(Error::invalid_input(format!(
                    "new version {v} must be greater than every existing version of keyring {name} (highest is {highest})"
                )));
            }
        };
        let target = Target::Keyring(name.clone());
        let staged = match &key {
            Some(k) if !dry_run => Some(self.custody.wrap_data_key(name, next, k).await?),
            _ => None,
        };
        if dry_run {
            let report = self.keyring_report(name).await?;
            let now = self.now();
            return Ok(KeyringRotation {
                rotation_id: None,
                keyring: name.clone(),
                previous_version: keyring.current_version,
                new_version: next,
                started_at: now,
                completed_at: now,
                resumed: false,
                dry_run: true,
                values_needing_migration: report.total_values,
            });
        }
        let new_run = |now: Timestamp, id: RotationId| Run {
            old_version: Some(keyring.current_version),
            new_version: Some(next),
            staged_key: staged,
            ..self.blank_run(target.clone(), id, now)
        };
        let (run, resumed) = match self.start_run(&target, rotation_id, new_run, None).await? {
            Started::Finished(run) => return self.keyring_result(&run, false).await,
            Started::Run(run, resumed) => (run, resumed),
        };
        let id = run.rotation_id;
        let finished = self.drive(run).await.map_err(|e| e.with_rotation(id))?;
        let result = self.keyring_result(&finished, resumed).await?;
        if let Some(source) = source {
            let now = self.now();
            let mut tx = self.store.begin().await?;
            let draft = self.draft(
                "key_imported",
                target.clone(),
                Some(id),
                json!({"version": result.new_version, "source": source}),
            );
            self.append_audit(tx.as_mut(), now, vec![draft]).await?;
            tx.commit().await?;
        }
        self.notify(Notification {
            event: "key_rotated".into(),
            target: target.to_string(),
            rotation_id: Some(id),
            details: json!({"previous_version": result.previous_version, "new_version": result.new_version}),
        })
        .await;
        Ok(result)
    }

    async fn keyring_result(&self, run: &Run, resumed: bool) -> Result<KeyringRotation> {
        let Target::Keyring(name) = &run.target else {
            return Err(Error::invalid_input(format!(
                "rotation {} is not a keyring rotation",
                run.rotation_id
            )));
        };
        if run.state != RunState::Completed {
            let reason = if run.state == RunState::RolledBack {
                Reason::RolledBack
            } else {
                Reason::RotationFailed
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
            .with_rotation(run.rotation_id));
        }
        let report = self.keyring_report(name).await?;
        Ok(KeyringRotation {
            rotation_id: Some(run.rotation_id),
            keyring: name.clone(),
            previous_version: run.old_version.unwrap_or_default(),
            new_version: run.new_version.unwrap_or_default(),
            started_at: run.started_at,
            completed_at: run.completed_at.unwrap_or(run.updated_at),
            resumed,
            dry_run: false,
            values_needing_migration: report.needing_migration,
        })
    }

    fn keyring_run_version(run: &Run) -> Result<(KeyringName, u32)> {
        match (&run.target, run.new_version) {
            (Target::Keyring(name), Some(v)) => Ok((name.clone(), v)),
            _ => Err(Error::new(
                Reason::RotationFailed,
                format!("run {} is not a keyring rotation", run.rotation_id),
            )),
        }
    }

    /// `creating`: a new data key, stored wrapped as a `pending` version.
    pub(super) async fn keyring_step_create(&self, run: &mut Run) -> Result<()> {
        let (name, version) = Self::keyring_run_version(run)?;
        let mut tx_check = self.store.list_key_versions(&name).await?;
        tx_check.retain(|v| v.version == version);
        if tx_check.is_empty() {
            let wrapped = match &run.staged_key {
                Some(staged) => staged.clone(),
                None => self.custody.create_data_key(&name, version).await?.1,
            };
            let now = self.now();
            let mut tx = self.store.begin().await?;
            self.hold_lease(tx.as_mut(), run, now).await?;
            if tx.get_key_version(&name, version).await?.is_none() {
                tx.insert_key_version(&KeyVersion {
                    keyring: name.clone(),
                    version,
                    state: VersionState::Pending,
                    created_at: now,
                    activated_at: None,
                    rotated_at: None,
                    retired_at: None,
                    usage_count: 0,
                    created_by: Some(run.rotation_id),
                    wrapped: wrapped.clone(),
                })
                .await?;
                let draft = self.draft(
                    crate::audit::event::KEY_CREATED,
                    run.target.clone(),
                    Some(run.rotation_id),
                    json!({"version": version, "custody": wrapped.custody}),
                );
                self.append_audit(tx.as_mut(), now, vec![draft]).await?;
            }
            run.state = RunState::Verifying;
            tx.update_run(run).await?;
            return tx.commit().await;
        }
        self.advance(run, RunState::Verifying).await
    }

    /// `verifying`: the stored version unwraps and round-trips a probe.
    pub(super) async fn keyring_step_verify(&self, run: &mut Run) -> Result<()> {
        let (name, version) = Self::keyring_run_version(run)?;
        let stored = self
            .store
            .list_key_versions(&name)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::new(Reason::VerificationFailed, format!("version {version} is missing")))?;
        let key = self.custody.unwrap_data_key(&name, version, &stored.wrapped).await?;
        let probe = run.rotation_id.to_string();
        let ok = self
            .crypto
            .seal(&key, version, b"rotation-probe", probe.as_bytes())
            .and_then(|s| self.crypto.open(&key, b"rotation-probe", &s))
            .is_ok_and(|p| p.as_slice() == probe.as_bytes());
        if !ok {
            return Err(Error::new(
                Reason::VerificationFailed,
                format!("version {version} does not round-trip a value"),
            ));
        }
        self.advance(run, RunState::Promoting).await
    }

    /// `promoting`: the new version becomes current, the old one active.
    pub(super) async fn keyring_step_promote(&self, run: &mut Run) -> Result<()> {
        let (name, version) = Self::keyring_run_version(run)?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        let mut keyring = tx
            .get_keyring(&name)
            .await?
            .ok_or_else(|| Error::not_found(format!("keyring {name} disappeared")))?;
        if keyring.current_version != version {
            let mut new = tx
                .get_key_version(&name, version)
                .await?
                .ok_or_else(|| Error::new(Reason::RotationFailed, format!("version {version} is missing")))?;
            new.state = VersionState::Current;
            new.activated_at = Some(now);
            tx.update_key_version(&new).await?;
            if let Some(mut old) = tx.get_key_version(&name, keyring.current_version).await? {
                old.state = VersionState::Active;
                old.rotated_at = Some(now);
                tx.update_key_version(&old).await?;
            }
            run.old_version = Some(keyring.current_version);
            keyring.current_version = version;
            keyring.rotated_at = Some(now);
            tx.update_keyring(&keyring).await?;
        }
        run.state = RunState::Finishing;
        tx.update_run(run).await?;
        tx.commit().await
    }

    /// Re-encrypts every value sealed under a version older than the target,
    /// batch by batch: each batch is read, re-sealed in parallel and
    /// committed atomically (conditional on each value's version, so a
    /// value rewritten meanwhile is left alone). Memory is bounded by the
    /// batch. Killed at any point, running it again finishes the job.
    pub async fn migrate_keyring(
        &self,
        name: &KeyringName,
        options: &MigrateOptions,
        progress: &(dyn Fn(MigrationProgress) + Send + Sync),
    ) -> Result<MigrationReport> {
        let started = Instant::now();
        if options.batch_size == 0 || options.batch_size > 100_000 {
            return Err(Error::invalid_input("batch size must be 1 to 100000"));
        }
        let keyring = self.keyring(name).await?;
        let target = options.target_version.unwrap_or(keyring.current_version);
        if target != keyring.current_version && !options.force {
            return Err(Error::invalid_input(format!(
                "target version {target} is not the current version {}; use --force to migrate to it anyway",
                keyring.current_version
            )));
        }
        let usable = self
            .store
            .list_key_versions(name)
            .await?
            .iter()
            .any(|v| v.version == target && v.state.decrypts());
        if !usable {
            return Err(Error::invalid_input(format!(
                "version {target} of keyring {name} cannot encrypt (missing or retired)"
            )));
        }
        let counts: HashMap<u32, u64> = self.store.count_values_by_version(name).await?.into_iter().collect();
        let total: u64 = counts.values().sum();
        let to_migrate: u64 = counts.iter().filter(|(v, _)| **v < target).map(|(_, n)| n).sum();
        let mut report = MigrationReport {
            keyring: name.clone(),
            target_version: target,
            migrated: 0,
            already_current: total - to_migrate,
            failed: 0,
            total,
            duration_ms: 0,
            dry_run: options.dry_run,
            retired_versions: Vec::new(),
            failures: Vec::new(),
        };
        if options.dry_run {
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        let (_, keys) = self.decrypting_keys(name).await?;
        let target_key = keys
            .get(&target)
            .cloned()
            .ok_or_else(|| Error::invalid_input(format!("version {target} of keyring {name} cannot encrypt")))?;
        // Pipelined: while page N is written, page N+1 is read (another
        // connection; the write touches only page N's rows).
        let mut page = self
            .store
            .list_values(name, Some(target), None, options.batch_size)
            .await?;
        while let Some(last) = page.last() {
            let after = last.id.clone();
            let aads: Vec<Vec<u8>> = page.iter().map(|v| value_aad(name, &v.id)).collect();
            let items: Vec<(&[u8], &[u8])> = aads
                .iter()
                .zip(&page)
                .map(|(a, v)| (a.as_slice(), v.sealed.as_slice()))
                .collect();
            let resealed = self.crypto.reseal_batch(&keys, target, &target_key, &items)?;
            let mut batch = Vec::with_capacity(page.len());
            for (value, outcome) in page.into_iter().zip(resealed) {
                match outcome {
                    Ok(sealed) => batch.push(Reseal {
                        id: value.id,
                        from_version: value.key_version,
                        sealed,
                    }),
                    Err(e) => {
                        report.failed += 1;
                        if report.failures.len() < LISTED_FAILURES {
                            report.failures.push(ValueFailure {
                                id: value.id,
                                reason: e.reason.as_str().into(),
                                message: e.message,
                            });
                        }
                    }
                }
            }
            let write = async {
                if batch.is_empty() {
                    return Ok(0);
                }
                let now = self.now();
                let mut tx = self.store.begin().await?;
                let n = tx.reseal_values(name, target, &batch, now).await?;
                tx.add_usage(name, target, n).await?;
                tx.commit().await?;
                Ok::<u64, Error>(n)
            };
            let read_next = self
                .store
                .list_values(name, Some(target), Some(&after), options.batch_size);
            let (written, next) = futures_util::future::join(write, read_next).await;
            report.migrated += written?;
            page = next?;
            progress(MigrationProgress {
                to_migrate,
                migrated: report.migrated,
                failed: report.failed,
            });
        }
        if options.retire_old && report.failed == 0 {
            report.retired_versions = self.retire_unused(name, target).await?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let draft = self.draft(
            "keyring_migrated",
            Target::Keyring(name.clone()),
            None,
            json!({
                "target_version": target, "migrated": report.migrated, "failed": report.failed,
                "already_current": report.already_current, "total": report.total,
                "retired_versions": report.retired_versions,
            }),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Retires every active version below `target` that no value uses.
    async fn retire_unused(&self, name: &KeyringName, target: u32) -> Result<Vec<u32>> {
        let mut retired = Vec::new();
        for v in self.store.list_key_versions(name).await? {
            if v.state == VersionState::Active && v.version < target {
                match self.retire_version(name, v.version).await {
                    Ok(_) => retired.push(v.version),
                    Err(e) if e.reason == Reason::InvalidInput => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(retired)
    }
}
