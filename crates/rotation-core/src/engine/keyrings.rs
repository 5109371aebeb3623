//! Keyrings and stored values: create, encrypt, decrypt, import, export,
//! reports, health, retirement and history.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::Engine;
use crate::audit::{AuditEvent, event};
use crate::error::{Error, Reason, Result};
use crate::ids::{KeyringName, Target, ValueId};
use crate::keyring::{KeyVersion, Keyring, NONCE_LIMIT, SealedValue, VersionState, value_aad};
use crate::ports::DataKey;
use crate::time::Timestamp;

/// Outcome of an import.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// Values stored.
    pub imported: u64,
    /// Version they were sealed under.
    pub key_version: u32,
}

/// One version's share of a keyring's values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionShare {
    /// Version.
    pub version: u32,
    /// Its state.
    pub state: VersionState,
    /// Values sealed under it.
    pub values: u64,
    /// Percentage of all values.
    pub percent: f64,
}

/// `keyring report`: the version distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyringReport {
    /// Keyring.
    pub keyring: KeyringName,
    /// Current version.
    pub current_version: u32,
    /// All values.
    pub total_values: u64,
    /// Values not on the current version.
    pub needing_migration: u64,
    /// Distribution by version.
    pub versions: Vec<VersionShare>,
}

/// One health check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Name.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// `keyring health-check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthReport {
    /// Keyring.
    pub keyring: KeyringName,
    /// All checks passed.
    pub healthy: bool,
    /// The checks.
    pub checks: Vec<HealthCheck>,
}

impl Engine {
    /// Creates a keyring with a fresh version 1.
    pub async fn create_keyring(&self, name: &KeyringName) -> Result<Keyring> {
        if self.store.get_keyring(name).await?.is_some() {
            return Err(Error::new(
                Reason::AlreadyExists,
                format!("keyring {name} already exists"),
            ));
        }
        let (_, wrapped) = self.custody.create_data_key(name, 1).await?;
        let now = self.now();
        let keyring = Keyring {
            name: name.clone(),
            current_version: 1,
            created_at: now,
            rotated_at: None,
        };
        let version = KeyVersion {
            keyring: name.clone(),
            version: 1,
            state: VersionState::Current,
            created_at: now,
            activated_at: Some(now),
            rotated_at: None,
            retired_at: None,
            usage_count: 0,
            created_by: None,
            wrapped,
        };
        let target = Target::Keyring(name.clone());
        let mut tx = self.store.begin().await?;
        tx.insert_keyring(&keyring).await?;
        tx.insert_key_version(&version).await?;
        let drafts = vec![
            self.draft("keyring_created", target.clone(), None, json!({})),
            self.draft(
                event::KEY_CREATED,
                target,
                None,
                json!({"version": 1, "custody": version.wrapped.custody}),
            ),
        ];
        self.append_audit(tx.as_mut(), now, drafts).await?;
        tx.commit().await?;
        Ok(keyring)
    }

    /// One keyring, or `not_found`.
    pub async fn keyring(&self, name: &KeyringName) -> Result<Keyring> {
        self.store.get_keyring(name).await?.ok_or_else(|| {
            Error::not_found(format!(
                "keyring {name} not found; create it with `rotation keyring create {name}`"
            ))
        })
    }

    /// All keyrings.
    pub async fn list_keyrings(&self) -> Result<Vec<Keyring>> {
        self.store.list_keyrings().await
    }

    /// A keyring's versions, ascending.
    pub async fn key_versions(&self, name: &KeyringName) -> Result<Vec<KeyVersion>> {
        self.keyring(name).await?;
        self.store.list_key_versions(name).await
    }

    /// Unwraps the data keys of every version that still decrypts.
    pub(super) async fn decrypting_keys(&self, name: &KeyringName) -> Result<(Keyring, HashMap<u32, DataKey>)> {
        let keyring = self.keyring(name).await?;
        let mut keys = HashMap::new();
        for v in self.store.list_key_versions(name).await? {
            if v.state.decrypts() {
                keys.insert(
                    v.version,
                    self.custody.unwrap_data_key(name, v.version, &v.wrapped).await?,
                );
            }
        }
        Ok((keyring, keys))
    }

    /// The current version and its key, refusing a key at its nonce bound.
    pub(super) async fn current_key(&self, name: &KeyringName, adding: u64) -> Result<(KeyVersion, DataKey)> {
        let keyring = self.keyring(name).await?;
        let versions = self.store.list_key_versions(name).await?;
        let current = versions
            .into_iter()
            .find(|v| v.version == keyring.current_version)
            .ok_or_else(|| {
                Error::tampered(format!(
                    "current version {} of keyring {name} is missing",
                    keyring.current_version
                ))
            })?;
        if current.usage_count.saturating_add(adding) > NONCE_LIMIT {
            return Err(Error::invalid_input(format!(
                "version {} of keyring {name} has sealed {} values, at the AES-GCM random-nonce bound of 2^32; rotate the keyring",
                current.version, current.usage_count
            )));
        }
        let key = self
            .custody
            .unwrap_data_key(name, current.version, &current.wrapped)
            .await?;
        Ok((current, key))
    }

    /// Seals and stores `plaintext` as `id` under the current version.
    pub async fn encrypt_value(&self, name: &KeyringName, id: &ValueId, plaintext: &[u8]) -> Result<SealedValue> {
        self.import_batch(name, &[(id.clone(), Zeroizing::new(plaintext.to_vec()))])
            .await?;
        self.store
            .get_value(name, id)
            .await?
            .ok_or_else(|| Error::backend(format!("value {id} vanished after it was written")))
    }

    /// Seals and stores a batch of values under the current version in one
    /// transaction (one usage update for the whole batch).
    pub async fn import_batch(
        &self,
        name: &KeyringName,
        values: &[(ValueId, Zeroizing<Vec<u8>>)],
    ) -> Result<ImportReport> {
        if values.is_empty() {
            return Ok(ImportReport::default());
        }
        let (version, key) = self.current_key(name, values.len() as u64).await?;
        let aads: Vec<Vec<u8>> = values.iter().map(|(id, _)| value_aad(name, id)).collect();
        let items: Vec<(&[u8], &[u8])> = aads
            .iter()
            .zip(values)
            .map(|(a, (_, p))| (a.as_slice(), p.as_slice()))
            .collect();
        let sealed = self.crypto.seal_batch(&key, version.version, &items)?;
        let now = self.now();
        let rows: Vec<SealedValue> = values
            .iter()
            .zip(sealed)
            .map(|((id, _), sealed)| SealedValue {
                keyring: name.clone(),
                id: id.clone(),
                key_version: version.version,
                sealed,
                created_at: now,
                updated_at: now,
            })
            .collect();
        let mut tx = self.store.begin().await?;
        let current = tx.get_keyring(name).await?.map(|k| k.current_version);
        if current != Some(version.version) {
            return Err(Error::new(
                Reason::ConcurrentRotation,
                format!("keyring {name} rotated while values were being sealed; try again"),
            ));
        }
        tx.put_values(&rows).await?;
        tx.add_usage(name, version.version, rows.len() as u64).await?;
        let detail = if rows.len() == 1 {
            json!({"value_id": rows[0].id, "version": version.version})
        } else {
            json!({"count": rows.len(), "version": version.version, "first_id": rows[0].id, "last_id": rows[rows.len() - 1].id})
        };
        self.append_audit(
            tx.as_mut(),
            now,
            vec![self.draft("value_written", Target::Keyring(name.clone()), None, detail)],
        )
        .await?;
        tx.commit().await?;
        Ok(ImportReport {
            imported: rows.len() as u64,
            key_version: version.version,
        })
    }

    /// Opens a stored value; the read is audited as `secret_read`.
    pub async fn decrypt_value(&self, name: &KeyringName, id: &ValueId) -> Result<Zeroizing<Vec<u8>>> {
        let value = self
            .store
            .get_value(name, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("value {id} not found in keyring {name}")))?;
        let mut opened = self.open_values(name, std::slice::from_ref(&value)).await?;
        let plaintext = opened.pop().expect("one value in, one out")?;
        self.audit_read(name, &[value]).await?;
        Ok(plaintext)
    }

    /// Opens values (each with the key of its version); one result per value.
    pub async fn open_values(
        &self,
        name: &KeyringName,
        values: &[SealedValue],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>>>> {
        let (_, keys) = self.decrypting_keys(name).await?;
        Ok(values
            .iter()
            .map(|v| match keys.get(&v.key_version) {
                Some(key) => self.crypto.open(key, &value_aad(name, &v.id), &v.sealed).map_err(|_| {
                    Error::tampered(format!(
                        "value {} of keyring {name} does not open: modified or moved",
                        v.id
                    ))
                }),
                None => Err(Error::new(
                    Reason::Tampered,
                    format!(
                        "value {} is sealed under version {}, which no longer decrypts",
                        v.id, v.key_version
                    ),
                )),
            })
            .collect())
    }

    /// Records that plaintext of `values` was read (`secret_read`).
    pub async fn audit_read(&self, name: &KeyringName, values: &[SealedValue]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let detail = if values.len() == 1 {
            json!({"value_id": values[0].id})
        } else {
            json!({"count": values.len(), "first_id": values[0].id, "last_id": values[values.len() - 1].id})
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.append_audit(
            tx.as_mut(),
            now,
            vec![self.draft("secret_read", Target::Keyring(name.clone()), None, detail)],
        )
        .await?;
        tx.commit().await
    }

    /// A page of a keyring's values (sealed), ordered by id.
    pub async fn list_values(
        &self,
        name: &KeyringName,
        after: Option<&ValueId>,
        limit: usize,
    ) -> Result<Vec<SealedValue>> {
        self.keyring(name).await?;
        self.store.list_values(name, None, after, limit).await
    }

    /// The version distribution of a keyring's values.
    pub async fn keyring_report(&self, name: &KeyringName) -> Result<KeyringReport> {
        let keyring = self.keyring(name).await?;
        let versions = self.store.list_key_versions(name).await?;
        let counts: HashMap<u32, u64> = self.store.count_values_by_version(name).await?.into_iter().collect();
        let total: u64 = counts.values().sum();
        let shares = versions
            .iter()
            .map(|v| {
                let n = counts.get(&v.version).copied().unwrap_or(0);
                VersionShare {
                    version: v.version,
                    state: v.state,
                    values: n,
                    percent: if total == 0 {
                        0.0
                    } else {
                        (n as f64 * 10000.0 / total as f64).round() / 100.0
                    },
                }
            })
            .collect();
        let needing = total - counts.get(&keyring.current_version).copied().unwrap_or(0);
        Ok(KeyringReport {
            keyring: keyring.name,
            current_version: keyring.current_version,
            total_values: total,
            needing_migration: needing,
            versions: shares,
        })
    }

    /// Checks the KEK, the current key, a seal/open round trip and the
    /// values' versions. Unhealthy when any check fails; values needing
    /// migration are reported but are not a failure.
    pub async fn keyring_health(&self, name: &KeyringName) -> Result<HealthReport> {
        let keyring = self.keyring(name).await?;
        let versions = self.store.list_key_versions(name).await?;
        let mut checks = Vec::new();
        let mut check = |name: &str, ok: bool, detail: String| {
            checks.push(HealthCheck {
                check: name.into(),
                ok,
                detail,
            })
        };
        let mut unwrap_failures = Vec::new();
        let mut current_key = None;
        for v in versions.iter().filter(|v| v.state.decrypts()) {
            match self.custody.unwrap_data_key(name, v.version, &v.wrapped).await {
                Ok(k) if v.version == keyring.current_version => current_key = Some(k),
                Ok(_) => {}
                Err(e) => unwrap_failures.push(format!("v{}: {}", v.version, e.message)),
            }
        }
        check(
            "kek",
            unwrap_failures.is_empty(),
            if unwrap_failures.is_empty() {
                "every decrypting version unwraps under the KEK".into()
            } else {
                unwrap_failures.join("; ")
            },
        );
        check(
            "current_key",
            current_key.is_some(),
            format!(
                "version {} {}",
                keyring.current_version,
                if current_key.is_some() { "usable" } else { "unusable" }
            ),
        );
        let round_trip = current_key.as_ref().map(|k| {
            let probe = b"rotation-health-probe";
            self.crypto
                .seal(k, keyring.current_version, b"health", probe)
                .and_then(|s| self.crypto.open(k, b"health", &s))
                .map(|p| p.as_slice() == probe)
                .unwrap_or(false)
        });
        check(
            "round_trip",
            round_trip == Some(true),
            if round_trip == Some(true) {
                "seal and open agree".into()
            } else {
                "seal/open failed".into()
            },
        );
        let report = self.keyring_report(name).await?;
        let stranded: u64 = report
            .versions
            .iter()
            .filter(|v| !v.state.decrypts())
            .map(|v| v.values)
            .sum();
        check(
            "values_readable",
            stranded == 0,
            format!("{stranded} values under versions that no longer decrypt"),
        );
        let current = versions.iter().find(|v| v.version == keyring.current_version);
        let uses = current.map(|v| v.usage_count).unwrap_or(0);
        check(
            "nonce_budget",
            uses < NONCE_LIMIT / 2,
            format!("current version sealed {uses} values (rotate before 2^32; warn at 2^31)"),
        );
        check(
            "migration",
            true,
            format!(
                "{} of {} values need migration to version {}",
                report.needing_migration, report.total_values, keyring.current_version
            ),
        );
        let healthy = checks.iter().all(|c| c.ok);
        Ok(HealthReport {
            keyring: keyring.name,
            healthy,
            checks,
        })
    }

    /// Retires a version: refused for the current version and while any
    /// value is sealed under it. A retired version no longer decrypts.
    pub async fn retire_version(&self, name: &KeyringName, version: u32) -> Result<KeyVersion> {
        let keyring = self.keyring(name).await?;
        if version == keyring.current_version {
            return Err(Error::invalid_input(format!(
                "version {version} is the current version of keyring {name}; rotate first"
            )));
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut v = tx
            .get_key_version(name, version)
            .await?
            .ok_or_else(|| Error::not_found(format!("keyring {name} has no version {version}")))?;
        if v.state != VersionState::Active {
            return Err(Error::invalid_input(format!(
                "version {version} is {}, not active",
                v.state.as_str()
            )));
        }
        let in_use = tx.count_values_at(name, version).await?;
        if in_use > 0 {
            return Err(Error::invalid_input(format!(
                "version {version} of keyring {name} still seals {in_use} values; run `rotation keyring migrate {name}` first"
            )));
        }
        v.state = VersionState::Retired;
        v.retired_at = Some(now);
        tx.update_key_version(&v).await?;
        self.append_audit(
            tx.as_mut(),
            now,
            vec![self.draft(
                "key_retired",
                Target::Keyring(name.clone()),
                None,
                json!({"version": version}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(v)
    }

    /// Key history (seed 002): the keyring's audit events, newest first,
    /// optionally for one version and one event type.
    pub async fn keyring_history(
        &self,
        name: &KeyringName,
        version: Option<u32>,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.keyring(name).await?;
        let target = Target::Keyring(name.clone()).to_string();
        // Filters apply after reading, so read generously.
        let events = self
            .store
            .list_audit_for_target(&target, limit.saturating_mul(20).max(1000))
            .await?;
        let mentions = |e: &AuditEvent, v: u32| {
            ["version", "old_version", "new_version", "target_version"]
                .iter()
                .any(|k| e.details.get(*k).and_then(serde_json::Value::as_u64) == Some(u64::from(v)))
        };
        Ok(events
            .into_iter()
            .filter(|e| version.is_none_or(|v| mentions(e, v)))
            .filter(|e| {
                event_type.is_none_or(|t| {
                    e.event == t || e.event.starts_with(&format!("{t}_")) || e.event.ends_with(&format!("_{t}"))
                })
            })
            .take(limit)
            .collect())
    }

    /// When the current version became current, and its usage.
    pub(super) async fn keyring_facts(&self, name: &KeyringName) -> Result<(Timestamp, u64)> {
        let keyring = self.keyring(name).await?;
        let current = self
            .store
            .list_key_versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == keyring.current_version)
            .ok_or_else(|| Error::tampered(format!("current version of keyring {name} is missing")))?;
        Ok((current.activated_at.unwrap_or(current.created_at), current.usage_count))
    }
}
