//! [`VaultKvBackend`]: the [`SecretBackend`] port over a KV v2 mount.
//!
//! # Layout
//!
//! A secret `<path>` lives at the KV v2 key `<prefix>/<path>` of the
//! mount (`<prefix>` may be empty), so its current value is
//! `GET /v1/<mount>/data/<prefix>/<path>` and any version
//! `GET /v1/<mount>/data/<prefix>/<path>?version=N`. The value is the
//! string field **`value`** of the version's data (`{"value": "..."}`).
//! Our versions are the KV versions.
//!
//! Labels and attributes are kept in the key's `custom_metadata` (whose
//! values are strings), next to any keys other tools put there, which are
//! left alone:
//!
//! | key | value |
//! | --- | --- |
//! | `rotation:stage:CURRENT`, `rotation:stage:PENDING`, `rotation:stage:PREVIOUS` | the version carrying the label, decimal (one key per label: a label is on one version at most by construction) |
//! | `rotation:v<N>` | version N's attributes as a JSON object of strings (absent when it has none) |
//!
//! Vault limits `custom_metadata` to 64 keys, 128-byte keys and 512-byte
//! values: a version's attributes must fit in 512 bytes of JSON
//! (`invalid_input` otherwise), and entries of versions KV no longer keeps
//! (`max_versions`) are dropped at the next metadata write.
//!
//! # Atomicity
//!
//! - `write` is a data write with KV's check-and-set (`options.cas`, the
//!   caller's `cas`), so two writers never overwrite each other silently:
//!   the loser gets `concurrent_rotation`. Its labels and attributes follow
//!   in a second request (a metadata write); a process stopped between the
//!   two leaves a version without labels or attributes, which nothing
//!   reads (the engine writes a new version when it resumes).
//! - `update` (label moves and attribute merges) is one metadata write, so
//!   readers see all of its moves or none. On OpenBao it carries
//!   `metadata_cas` (the `current_metadata_version` it read): a concurrent
//!   metadata change makes it re-read and re-apply (up to 5 times), so
//!   concurrent updaters never lose each other's moves. HashiCorp Vault has
//!   no check-and-set for metadata: there the last metadata write wins (the
//!   engine runs one rotation per secret at a time, so its own updates do
//!   not race).
//! - With `max_versions` set, every metadata write sets it on the key; KV
//!   then deletes the oldest versions on the next data write (keep it at 3
//!   or more so PREVIOUS survives a rotation).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rotation_core::error::{Error, Reason, Result};
use rotation_core::ports::SecretBackend;
use rotation_core::secret::{SecretValue, SecretVersion, Stage, VersionSelector, apply_update, check_path};
use rotation_core::time::Timestamp;
use serde_json::{Map, Value, json};

use crate::client::{Retry, VaultClient};

/// Prefix of every `custom_metadata` key this backend owns.
const KEY_PREFIX: &str = "rotation:";
/// Largest `custom_metadata` value Vault accepts.
const MAX_METADATA_VALUE: usize = 512;
/// Attempts of a metadata read-modify-write that loses a check-and-set race.
const METADATA_ATTEMPTS: u32 = 5;

/// [`SecretBackend`] over a Vault/OpenBao KV v2 mount (see the module docs
/// for the layout and the atomicity it gives).
#[derive(Debug, Clone)]
pub struct VaultKvBackend {
    client: Arc<VaultClient>,
    mount: String,
    prefix: String,
    max_versions: Option<u32>,
}

/// What the backend needs of a key's metadata.
#[derive(Debug, Default)]
struct Metadata {
    /// OpenBao's metadata version (check-and-set on metadata writes).
    metadata_version: Option<u64>,
    custom: BTreeMap<String, String>,
    /// KV versions still kept (not destroyed), with their creation times.
    versions: BTreeMap<u32, Timestamp>,
}

fn check_segments(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    check_path(s).map_err(|_| {
        Error::invalid_input(format!(
            "vault {what} {s:?}: use [A-Za-z0-9._-] segments separated by '/'"
        ))
    })
}

fn stage_key(stage: Stage) -> String {
    format!("{KEY_PREFIX}stage:{}", stage.as_str())
}

fn attrs_key(version: u32) -> String {
    format!("{KEY_PREFIX}v{version}")
}

const STAGES: [Stage; 3] = [Stage::Current, Stage::Pending, Stage::Previous];

impl VaultKvBackend {
    /// A backend on KV v2 mount `mount` (e.g. `secret`) under `prefix`
    /// (e.g. `rotation`; empty for the mount's root).
    pub fn new(client: Arc<VaultClient>, mount: &str, prefix: &str) -> Result<Self> {
        let mount = mount.trim_matches('/');
        let prefix = prefix.trim_matches('/');
        if mount.is_empty() {
            return Err(Error::invalid_input("vault KV mount must not be empty"));
        }
        check_segments("KV mount", mount)?;
        check_segments("KV prefix", prefix)?;
        Ok(VaultKvBackend {
            client,
            mount: mount.to_owned(),
            prefix: prefix.to_owned(),
            max_versions: None,
        })
    }

    /// The same backend setting `max_versions` on every key it writes
    /// (KV deletes older versions on the next write; `0` is the mount's default).
    pub fn with_max_versions(mut self, max_versions: u32) -> Self {
        self.max_versions = Some(max_versions);
        self
    }

    /// The KV key of a secret path: `<prefix>/<path>`.
    pub fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    /// The API path of a secret's data: `<mount>/data/<prefix>/<path>`
    /// (read it as `GET /v1/<that>`).
    pub fn data_path(&self, path: &str) -> String {
        format!("{}/data/{}", self.mount, self.key(path))
    }

    fn metadata_path(&self, path: &str) -> String {
        format!("{}/metadata/{}", self.mount, self.key(path))
    }

    async fn metadata(&self, path: &str) -> Result<Option<Metadata>> {
        let Some(body) = self.client.read(&self.metadata_path(path)).await? else {
            return Ok(None);
        };
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        let custom = data
            .get("custom_metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let mut versions = BTreeMap::new();
        if let Some(vs) = data.get("versions").and_then(Value::as_object) {
            for (n, v) in vs {
                let Ok(n) = n.parse::<u32>() else { continue };
                if v.get("destroyed").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let created = v
                    .get("created_time")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| rotation_core::time::truncate(t.to_utc()))
                    .unwrap_or_default();
                versions.insert(n, created);
            }
        }
        Ok(Some(Metadata {
            metadata_version: data.get("current_metadata_version").and_then(Value::as_u64),
            custom,
            versions,
        }))
    }

    /// Our versions (labels and attributes decoded) from the metadata.
    fn decode(path: &str, meta: &Metadata) -> Vec<SecretVersion> {
        let mut out: Vec<SecretVersion> = meta
            .versions
            .iter()
            .map(|(n, created)| SecretVersion {
                path: path.to_owned(),
                version: *n,
                stages: Vec::new(),
                created_at: *created,
                attributes: meta
                    .custom
                    .get(&attrs_key(*n))
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or_default(),
            })
            .collect();
        for stage in STAGES {
            let Some(n) = meta.custom.get(&stage_key(stage)).and_then(|v| v.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(v) = out.iter_mut().find(|v| v.version == n) {
                v.stages.push(stage);
                v.stages.sort();
            }
        }
        out
    }

    /// `custom_metadata` for `versions`, keeping other tools' keys.
    fn encode(meta: &Metadata, versions: &[SecretVersion]) -> Result<Map<String, Value>> {
        let mut custom: Map<String, Value> = meta
            .custom
            .iter()
            .filter(|(k, _)| !k.starts_with(KEY_PREFIX))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        for v in versions {
            for stage in &v.stages {
                custom.insert(stage_key(*stage), Value::String(v.version.to_string()));
            }
            if !v.attributes.is_empty() {
                let json = encode_attributes(&v.attributes)?;
                custom.insert(attrs_key(v.version), Value::String(json));
            }
        }
        Ok(custom)
    }

    /// Re-reads the metadata, applies `change` to the decoded versions and
    /// writes it back (with `metadata_cas` where the server has it),
    /// retrying when another writer changed the metadata meanwhile. Writes
    /// nothing when nothing changes or the secret does not exist (`written`:
    /// a version was just written, so missing metadata is an error).
    async fn modify(
        &self,
        path: &str,
        written: bool,
        change: impl Fn(&mut Vec<SecretVersion>) -> Result<()>,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let found = self.metadata(path).await?;
            let exists = found.is_some();
            let meta = found.unwrap_or_default();
            let mut versions = Self::decode(path, &meta);
            change(&mut versions)?;
            let custom = Self::encode(&meta, &versions)?;
            let unchanged = custom.len() == meta.custom.len()
                && custom
                    .iter()
                    .all(|(k, v)| meta.custom.get(k).map(String::as_str) == v.as_str());
            if !exists && written {
                return Err(Error::backend(format!(
                    "vault: the metadata of {path} is not visible right after its write; try again"
                )));
            }
            if !exists || (unchanged && self.max_versions.is_none()) {
                // Nothing to write (and never create metadata for a missing secret).
                return Ok(());
            }
            let mut body = json!({ "custom_metadata": custom });
            if let Some(cas) = meta.metadata_version {
                body["metadata_cas"] = json!(cas);
            }
            if let Some(max) = self.max_versions {
                body["max_versions"] = json!(max);
            }
            match self.client.write(&self.metadata_path(path), &body, Retry::Safe).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.reason == Reason::ConcurrentRotation
                        && e.message.contains("metadata")
                        && attempt + 1 < METADATA_ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn encode_attributes(attributes: &BTreeMap<String, String>) -> Result<String> {
    let json = serde_json::to_string(attributes).map_err(|e| Error::invalid_input(e.to_string()))?;
    if json.len() > MAX_METADATA_VALUE {
        return Err(Error::invalid_input(format!(
            "a version's attributes take {} bytes as JSON; Vault's custom_metadata holds at most {MAX_METADATA_VALUE}",
            json.len()
        )));
    }
    Ok(json)
}

#[async_trait]
impl SecretBackend for VaultKvBackend {
    fn name(&self) -> &'static str {
        "vault"
    }

    async fn write(
        &self,
        path: &str,
        value: &SecretValue,
        stages: &[Stage],
        attributes: &BTreeMap<String, String>,
        cas: Option<u32>,
    ) -> Result<u32> {
        check_path(path)?;
        if !attributes.is_empty() {
            encode_attributes(attributes)?;
        }
        let mut body = json!({ "data": { "value": value.expose() } });
        if let Some(cas) = cas {
            body["options"] = json!({ "cas": cas });
        }
        let answer = self
            .client
            .write(&self.data_path(path), &body, Retry::ConnectOnly)
            .await
            .map_err(|e| {
                if e.reason == Reason::ConcurrentRotation {
                    Error::new(
                        Reason::ConcurrentRotation,
                        format!(
                            "secret {path} changed meanwhile (expected newest version {}); try again: {}",
                            cas.unwrap_or(0),
                            e.message
                        ),
                    )
                } else {
                    e
                }
            })?
            .ok_or_else(|| Error::not_found(format!("vault KV mount {:?} not found", self.mount)))?;
        let version = answer
            .pointer("/data/version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| Error::backend(format!("vault: the write of {path} returned no version")))?;
        if stages.is_empty() && attributes.is_empty() && self.max_versions.is_none() {
            return Ok(version);
        }
        let moves: Vec<(Stage, Option<u32>)> = stages.iter().map(|s| (*s, Some(version))).collect();
        let attrs = [(version, attributes.clone())];
        self.modify(path, true, |versions| apply_update(versions, &moves, &attrs).map(drop))
            .await?;
        Ok(version)
    }

    async fn read(&self, path: &str, selector: VersionSelector) -> Result<Option<(SecretVersion, SecretValue)>> {
        check_path(path)?;
        let Some(meta) = self.metadata(path).await? else {
            return Ok(None);
        };
        let versions = Self::decode(path, &meta);
        let found = versions.into_iter().find(|v| match selector {
            VersionSelector::Stage(s) => v.has(s),
            VersionSelector::Version(n) => v.version == n,
        });
        let Some(version) = found else {
            return Ok(None);
        };
        let url = format!("{}?version={}", self.data_path(path), version.version);
        let Some(body) = self.client.read(&url).await? else {
            return Ok(None);
        };
        let Some(data) = body.pointer("/data/data").filter(|d| !d.is_null()) else {
            return Ok(None); // deleted (not destroyed) version
        };
        let value = data.get("value").and_then(Value::as_str).ok_or_else(|| {
            Error::tampered(format!(
                "vault: version {} of {path} has no string field \"value\"",
                version.version
            ))
        })?;
        Ok(Some((version, SecretValue::new(value))))
    }

    async fn versions(&self, path: &str) -> Result<Vec<SecretVersion>> {
        check_path(path)?;
        Ok(self
            .metadata(path)
            .await?
            .map(|m| Self::decode(path, &m))
            .unwrap_or_default())
    }

    async fn update(
        &self,
        path: &str,
        moves: &[(Stage, Option<u32>)],
        attributes: &[(u32, BTreeMap<String, String>)],
    ) -> Result<()> {
        check_path(path)?;
        self.modify(path, false, |versions| {
            apply_update(versions, moves, attributes).map(drop)
        })
        .await
    }
}
