//! Secrets: writing, reading, listing, history, status and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::error::{Error, Reason, Result};
use crate::ids::Target;
use crate::policy::Policy;
use crate::ports::{Step, StepContext, VersionedValue};
use crate::run::Run;
use crate::schedule::ScheduleState;
use crate::secret::{
    Generator, RotationStatus, Secret, SecretConfig, SecretType, SecretValue, SecretVersion, Stage, Strategy,
    VersionSelector, check_path,
};
use crate::time::{Timestamp, rfc3339};

/// A request to write a secret (`secret put`).
#[derive(Debug, Clone, Default)]
pub struct PutSecret {
    /// Path.
    pub path: String,
    /// Type; `generic` for a new secret when `None`, unchanged for an existing one.
    pub secret_type: Option<SecretType>,
    /// The value; generated (or issued, for certificates) when `None`.
    pub value: Option<SecretValue>,
    /// Generator used when no value is given (and stored as the secret's default).
    pub generator: Option<Generator>,
    /// Policy attached to the secret.
    pub policy: Option<String>,
    /// Settings; `None` keeps the existing ones.
    pub config: Option<SecretConfig>,
}

/// One secret in a listing (never its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretSummary {
    /// Path.
    pub path: String,
    /// Type.
    #[serde(rename = "type")]
    pub secret_type: SecretType,
    /// Policy.
    pub policy: Option<String>,
    /// Version labelled CURRENT.
    pub current_version: Option<u32>,
    /// When a rotation last completed.
    pub last_rotated_at: Option<Timestamp>,
}

/// A step of a rotation as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// When it ran.
    pub at: Timestamp,
    /// `create`, `set`, `test`, `finish`, `rollback`, `disable`, or a verification test name.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its output (redacted: never a secret value): what was done, or a
    /// script's exit status and stderr tail.
    pub log: String,
    /// A script's stdout (redacted), kept only when the secret's
    /// `script_log` setting is on; apart from `log` so that servers can
    /// show it to admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
}

/// One rotation of a secret (seed 003's history entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The rotation.
    pub rotation_id: crate::ids::RotationId,
    /// When it started.
    pub timestamp: Timestamp,
    /// Status (seed 001).
    pub status: RotationStatus,
    /// Version replaced.
    pub old_version: Option<u32>,
    /// Version introduced.
    pub new_version: Option<u32>,
    /// Duration until it ended, in milliseconds (so far, if running).
    pub duration_ms: i64,
    /// Error message, if any.
    pub error: Option<String>,
    /// Stable error reason, if any.
    pub error_reason: Option<String>,
    /// Steps with their output.
    pub steps: Vec<StepRecord>,
}

/// Rotation status of one secret (seed 003's `get_rotation_status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretStatus {
    /// Path.
    pub path: String,
    /// Type.
    #[serde(rename = "type")]
    pub secret_type: SecretType,
    /// Backend holding the values.
    pub backend: String,
    /// Policy.
    pub policy: Option<String>,
    /// Whether a schedule will rotate it.
    pub scheduled: bool,
    /// When a rotation last completed.
    pub last_rotated: Option<Timestamp>,
    /// When the next rotation is expected (schedules and policies).
    pub next_rotation: Option<Timestamp>,
    /// Version labelled CURRENT.
    pub current_version: Option<u32>,
    /// Version labelled PENDING.
    pub pending_version: Option<u32>,
    /// Version labelled PREVIOUS.
    pub previous_version: Option<u32>,
    /// Dual-write: until when the previous value is still accepted.
    pub previous_valid_until: Option<String>,
    /// Status of the newest rotation.
    pub last_status: Option<RotationStatus>,
    /// Versions (without values).
    pub versions: Vec<SecretVersion>,
}

/// Result of validating a presented value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// Whether the value is accepted.
    pub valid: bool,
    /// The matching version.
    pub version: Option<u32>,
    /// Its stage (`CURRENT`, or `PREVIOUS` during a dual-write grace period).
    pub stage: Option<Stage>,
}

impl Engine {
    /// One secret's metadata, or `not_found`.
    pub async fn secret(&self, path: &str) -> Result<Secret> {
        check_path(path)?;
        self.store
            .get_secret(path)
            .await?
            .ok_or_else(|| Error::not_found(format!("secret {path} not found")))
    }

    /// Writes a secret: creates it (or updates its settings) and writes a
    /// new CURRENT version (the old CURRENT becomes PREVIOUS). Without a
    /// value, one is generated (certificates: issued by the target).
    pub async fn put_secret(&self, request: PutSecret) -> Result<(Secret, SecretVersion)> {
        check_path(&request.path)?;
        let now = self.now();
        let existing = self.store.get_secret(&request.path).await?;
        if let (Some(e), Some(t)) = (&existing, request.secret_type)
            && e.secret_type != t
        {
            return Err(Error::invalid_input(format!(
                "secret {} is a {} secret; its type cannot change to {t}",
                request.path, e.secret_type
            )));
        }
        if let Some(p) = &request.policy {
            self.policy(p).await?;
        }
        // A put during a rotation would lose its labels to the run's promotion.
        let target_id = Target::Secret(request.path.clone());
        if let Some(run) = self
            .store
            .list_active_runs()
            .await?
            .into_iter()
            .find(|r| r.target == target_id)
        {
            return Err(Error::new(
                Reason::ConcurrentRotation,
                format!(
                    "secret {} is being rotated (rotation {}); write it after the rotation ends",
                    request.path, run.rotation_id
                ),
            )
            .with_rotation(run.rotation_id));
        }
        let mut secret = existing.clone().unwrap_or_else(|| Secret {
            path: request.path.clone(),
            secret_type: request.secret_type.unwrap_or(SecretType::Generic),
            policy: None,
            config: SecretConfig::default(),
            created_at: now,
            updated_at: now,
            last_rotated_at: None,
        });
        if let Some(config) = request.config.clone() {
            secret.config = config;
        }
        if let Some(g) = &request.generator {
            secret.config.generator = Some(g.clone());
        }
        if request.policy.is_some() {
            secret.policy.clone_from(&request.policy);
        }
        secret.updated_at = now;
        self.check_secret_config(&secret)?;
        for test in &secret.config.verify {
            self.resolver.verifier(test)?;
        }
        let target = self.resolver.target(&secret)?;
        let strategy = self.supported_strategy(&secret, None, target.as_ref()).await?;
        let backend = self.secret_backend();
        let current = backend
            .read(&secret.path, VersionSelector::Stage(Stage::Current))
            .await?;
        let (value, mut attributes) = match request.value {
            Some(v) => {
                if v.expose().is_empty() {
                    return Err(Error::invalid_input("a secret value cannot be empty"));
                }
                let attrs = target.inspect(&secret, &v)?;
                (v, attrs)
            }
            None if secret.secret_type == SecretType::Database => {
                // Generating here would store a password the role does not have.
                return Err(Error::invalid_input(format!(
                    "database secret {}: its value is the role's current password; give it with --value \
                     (then `secret rotate` sets a new one at the database)",
                    secret.path
                )));
            }
            None => {
                let ctx = StepContext {
                    rotation_id: crate::ids::RotationId::generate(),
                    step: Step::Create,
                    secret: secret.clone(),
                    strategy: Strategy::Immediate,
                    current: current
                        .clone()
                        .map(|(version, value)| VersionedValue { version, value }),
                    pending: None,
                    previous: None,
                    references: self.references(&secret).await?,
                    slot: None,
                    now,
                };
                let out = target.run(&ctx).await?;
                match out.value {
                    Some(v) => (v, out.attributes),
                    None => (self.generate(&secret, None)?, out.attributes),
                }
            }
        };
        if secret.secret_type == SecretType::Database {
            let role = secret.config.role.clone().unwrap_or_default();
            let blue_green = strategy == Strategy::BlueGreen;
            let username = match current
                .as_ref()
                .and_then(|(v, _)| v.attr("username").map(str::to_owned))
            {
                // Under blue-green the value belongs to a slot role, never the bare one.
                Some(u) if !(blue_green && u == role) => u,
                _ if blue_green => format!("{role}_blue"),
                _ => role,
            };
            attributes.insert("username".into(), username);
        }
        let mut tx = self.store.begin().await?;
        tx.put_secret(&secret).await?;
        tx.commit().await?;
        let cas = backend.versions(&secret.path).await?.last().map_or(0, |v| v.version);
        // Written unlabelled, then CURRENT and PREVIOUS move in one atomic
        // update: readers never see the secret without a CURRENT value.
        let version = backend.write(&secret.path, &value, &[], &attributes, Some(cas)).await?;
        let mut moves = vec![(Stage::Current, Some(version))];
        if let Some((old, _)) = &current {
            moves.push((Stage::Previous, Some(old.version)));
        }
        backend.update(&secret.path, &moves, &[]).await?;
        let mut tx = self.store.begin().await?;
        let draft = self.draft(
            event::SECRET_WRITTEN,
            Target::Secret(secret.path.clone()),
            None,
            json!({"version": version, "type": secret.secret_type, "created": existing.is_none(), "backend": backend.name()}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        let written = backend
            .versions(&secret.path)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::backend(format!("version {version} of {} vanished", secret.path)))?;
        Ok((secret, written))
    }

    /// Checks settings that depend on the type.
    fn check_secret_config(&self, secret: &Secret) -> Result<()> {
        let c = &secret.config;
        for reference in [&c.admin_secret, &c.ca_secret].into_iter().flatten() {
            check_path(reference)?;
            if *reference == secret.path {
                return Err(Error::invalid_input(format!(
                    "secret {} cannot refer to itself",
                    secret.path
                )));
            }
        }
        if secret.secret_type == SecretType::Database {
            let role = c
                .role
                .as_deref()
                .ok_or_else(|| Error::invalid_input("a database secret needs --role"))?;
            if role.is_empty() || role.len() > 50 || !role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Error::invalid_input(format!(
                    "invalid role {:?}: use 1 to 50 letters, digits or '_'",
                    role.chars().take(64).collect::<String>()
                )));
            }
            if c.admin_secret.is_none() {
                return Err(Error::invalid_input("a database secret needs --admin-secret"));
            }
        }
        if c.validity_days.is_some_and(|d| d == 0 || d > 3650) {
            return Err(Error::invalid_input("validity_days must be 1 to 3650"));
        }
        if c.renew_before_days.is_some_and(|d| d > 3650) {
            return Err(Error::invalid_input("renew_before_days must be 0 to 3650"));
        }
        Ok(())
    }

    /// CURRENT values of the secrets `secret`'s settings refer to.
    pub(super) async fn references(&self, secret: &Secret) -> Result<BTreeMap<String, SecretValue>> {
        let backend = self.secret_backend();
        let mut out = BTreeMap::new();
        for path in [&secret.config.admin_secret, &secret.config.ca_secret]
            .into_iter()
            .flatten()
        {
            let (_, value) = backend
                .read(path, VersionSelector::Stage(Stage::Current))
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "secret {path} (referenced by {}) has no CURRENT value",
                        secret.path
                    ))
                })?;
            out.insert(path.clone(), value);
        }
        Ok(out)
    }

    /// A new value from the policy's generator, the secret's, or `random:32`.
    pub(super) fn generate(&self, secret: &Secret, policy: Option<&Policy>) -> Result<SecretValue> {
        let generator = policy
            .and_then(|p| p.procedure.generator.clone())
            .or_else(|| secret.config.generator.clone())
            .unwrap_or_default();
        let crypto = self.crypto.clone();
        generator.generate(&move |buf: &mut [u8]| crypto.fill_random(buf))
    }

    /// The strategy a rotation of `secret` under `policy` (or its own)
    /// uses, if `target` supports it; `invalid_policy` naming `strategy`
    /// otherwise. Checked when a secret is put, scheduled and rotated, so a
    /// bad combination is refused up front rather than failing every run.
    pub(super) async fn supported_strategy(
        &self,
        secret: &Secret,
        policy: Option<&Policy>,
        target: &dyn crate::ports::CredentialTarget,
    ) -> Result<Strategy> {
        let strategy = self.secret_strategy(secret, policy).await?;
        if target.strategies().contains(&strategy) {
            return Ok(strategy);
        }
        Err(crate::policy::invalid_field(
            "strategy",
            format!(
                "{strategy} is not supported for {} secrets{} (use {})",
                secret.secret_type,
                secret
                    .config
                    .script
                    .as_deref()
                    .map_or(String::new(), |_| " with a script".to_owned()),
                target
                    .strategies()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// The strategy for `secret` under `policy` (or its own policy).
    pub(super) async fn secret_strategy(&self, secret: &Secret, policy: Option<&Policy>) -> Result<Strategy> {
        let own;
        let policy = match (policy, &secret.policy) {
            (Some(p), _) => Some(p),
            (None, Some(name)) => {
                own = self.store.get_policy(name).await?;
                own.as_ref()
            }
            (None, None) => None,
        };
        Ok(policy
            .and_then(|p| p.procedure.strategy)
            .unwrap_or_else(|| secret.secret_type.default_strategy()))
    }

    /// Reads a version of a secret (audited as `secret_read`).
    pub async fn get_secret(&self, path: &str, selector: VersionSelector) -> Result<(SecretVersion, SecretValue)> {
        self.secret(path).await?;
        let found = self.secret_backend().read(path, selector).await?;
        let (version, value) = found.ok_or_else(|| {
            let what = match selector {
                VersionSelector::Stage(s) => format!("no version labelled {}", s.as_str()),
                VersionSelector::Version(n) => format!("no version {n}"),
            };
            Error::not_found(format!("secret {path} has {what}"))
        })?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let draft = self.draft(
            event::SECRET_READ,
            Target::Secret(path.to_owned()),
            None,
            json!({"version": version.version, "stages": version.stages}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok((version, value))
    }

    /// Every secret (never values).
    pub async fn list_secrets(&self) -> Result<Vec<SecretSummary>> {
        let backend = self.secret_backend();
        let mut out = Vec::new();
        for s in self.store.list_secrets().await? {
            let current = backend
                .versions(&s.path)
                .await?
                .into_iter()
                .find(|v| v.has(Stage::Current))
                .map(|v| v.version);
            out.push(SecretSummary {
                path: s.path,
                secret_type: s.secret_type,
                policy: s.policy,
                current_version: current,
                last_rotated_at: s.last_rotated_at,
            });
        }
        Ok(out)
    }

    /// Rotation history of a secret, newest first, with each step's output.
    pub async fn secret_history(&self, path: &str, limit: usize) -> Result<Vec<HistoryEntry>> {
        self.secret(path).await?;
        let target = Target::Secret(path.to_owned());
        let runs = self.store.list_runs(Some(&target), limit).await?;
        let now = self.now();
        let mut history = Vec::with_capacity(runs.len());
        for run in runs {
            // One indexed query per run (its step events, newest first), so
            // a secret with a long history never loses an older run's steps.
            let events = self
                .store
                .query_audit(&crate::ports::AuditQuery {
                    event: Some(event::SECRET_STEP.to_owned()),
                    rotation_id: Some(run.rotation_id),
                    limit: 10_000,
                    ..crate::ports::AuditQuery::default()
                })
                .await?;
            let steps: Vec<StepRecord> = events
                .iter()
                .rev()
                .map(|e| StepRecord {
                    at: e.at,
                    step: e.details["step"].as_str().unwrap_or_default().to_owned(),
                    ok: e.details["ok"].as_bool().unwrap_or(false),
                    log: e.details["log"].as_str().unwrap_or_default().to_owned(),
                    stdout: e.details["stdout"].as_str().map(str::to_owned),
                })
                .collect();
            history.push(history_entry(&run, steps, now));
        }
        Ok(history)
    }

    /// Rotation status of a secret.
    pub async fn secret_status(&self, path: &str) -> Result<SecretStatus> {
        let secret = self.secret(path).await?;
        let backend = self.secret_backend();
        let versions = backend.versions(path).await?;
        let target = Target::Secret(path.to_owned());
        let schedules: Vec<_> = self
            .store
            .list_schedules(Some(&target), true)
            .await?
            .into_iter()
            .filter(|s| s.state == ScheduleState::Scheduled)
            .collect();
        let mut next_rotation: Option<Timestamp> = None;
        for s in &schedules {
            let at = match &s.policy {
                None => Some(s.due_at),
                Some(p) => match self.store.get_policy(p).await? {
                    Some(policy) => self.next_policy_time(&target, &policy, s.offset_seconds).await?,
                    None => None,
                },
            };
            if let Some(at) = at {
                next_rotation = Some(next_rotation.map_or(at, |n| n.min(at)));
            }
        }
        let label = |stage| versions.iter().find(|v| v.has(stage));
        let last = self.store.list_runs(Some(&target), 1).await?.into_iter().next();
        Ok(SecretStatus {
            path: secret.path.clone(),
            secret_type: secret.secret_type,
            backend: backend.name().to_owned(),
            policy: secret.policy.clone(),
            scheduled: !schedules.is_empty(),
            last_rotated: secret.last_rotated_at,
            next_rotation,
            current_version: label(Stage::Current).map(|v| v.version),
            pending_version: label(Stage::Pending).map(|v| v.version),
            previous_version: label(Stage::Previous).map(|v| v.version),
            previous_valid_until: label(Stage::Previous)
                .filter(|v| v.attr("disabled_at").is_none())
                .and_then(|v| v.attr("grace_until").map(str::to_owned)),
            last_status: last.map(|r| RotationStatus::of(r.state)),
            versions,
        })
    }

    /// Whether `presented` is an accepted value of the secret: CURRENT, or
    /// PREVIOUS while a dual-write grace period lasts. Compares digests,
    /// so the time taken does not depend on how much of the value matched.
    pub async fn validate_secret(&self, path: &str, presented: &SecretValue) -> Result<Validation> {
        self.secret(path).await?;
        let backend = self.secret_backend();
        let now = self.now();
        let digest = self.crypto.sha256(presented.expose().as_bytes());
        for stage in [Stage::Current, Stage::Previous] {
            let Some((version, value)) = backend.read(path, VersionSelector::Stage(stage)).await? else {
                continue;
            };
            if stage == Stage::Previous {
                let in_grace = version.attr("disabled_at").is_none()
                    && version
                        .attr("grace_until")
                        .and_then(|g| chrono::DateTime::parse_from_rfc3339(g).ok())
                        .is_some_and(|g| g > now);
                if !in_grace {
                    continue;
                }
            }
            if self.crypto.sha256(value.expose().as_bytes()) == digest {
                return Ok(Validation {
                    valid: true,
                    version: Some(version.version),
                    stage: Some(stage),
                });
            }
        }
        Ok(Validation {
            valid: false,
            version: None,
            stage: None,
        })
    }
}

fn history_entry(run: &Run, steps: Vec<StepRecord>, now: Timestamp) -> HistoryEntry {
    let end = run.completed_at.unwrap_or(now);
    HistoryEntry {
        rotation_id: run.rotation_id,
        timestamp: run.started_at,
        status: RotationStatus::of(run.state),
        old_version: run.old_version,
        new_version: run.new_version,
        duration_ms: (end - run.started_at).num_milliseconds(),
        error: run.error_message.clone(),
        error_reason: run.error_reason.clone(),
        steps,
    }
}

/// `not_found` for a secret path, with the reason kept for callers.
pub(super) fn missing_value(path: &str) -> Error {
    Error::new(
        Reason::NotFound,
        format!("secret {path} has no CURRENT value to rotate; put one first"),
    )
}

/// RFC 3339 of `t`, for version attributes.
pub(super) fn attr_time(t: Timestamp) -> String {
    rfc3339(t)
}
