//! The store's own [`SecretBackend`]: secret values sealed like keyring
//! values, under the reserved keyring [`SECRETS_KEYRING`], with their
//! labels and attributes in the store's secret-version rows.
//!
//! Sealing through a keyring means the data keys are wrapped by the key
//! custody (so `master-key rotate` re-wraps them), the keyring rotates and
//! migrates like any other, and backups carry the values sealed.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Engine;
use crate::error::{Error, Reason, Result};
use crate::ids::{KeyringName, ValueId};
use crate::keyring::{SealedValue, value_aad};
use crate::ports::SecretBackend;
use crate::secret::{SecretValue, SecretVersion, Stage, VersionSelector, apply_update};

/// Name of the keyring sealing secrets held by the store backend.
pub const SECRETS_KEYRING: &str = "rotation.secrets";

/// [`SecretBackend`] over the engine's own store (see the module docs).
#[derive(Clone)]
pub struct StoreSecretBackend {
    engine: Engine,
}

impl StoreSecretBackend {
    /// A backend sealing through `engine`'s store, custody and crypto.
    pub fn new(engine: Engine) -> Self {
        StoreSecretBackend { engine }
    }

    fn keyring() -> KeyringName {
        KeyringName::parse(SECRETS_KEYRING).expect("the reserved keyring name is valid")
    }

    fn value_id(path: &str, version: u32) -> Result<ValueId> {
        ValueId::parse(format!("{path}@{version}"))
    }

    async fn ensure_keyring(&self) -> Result<KeyringName> {
        let name = Self::keyring();
        if self.engine.store.get_keyring(&name).await?.is_none() {
            match self.engine.create_keyring(&name).await {
                Ok(_) => {}
                Err(e) if e.reason == Reason::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(name)
    }
}

#[async_trait]
impl SecretBackend for StoreSecretBackend {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn write(
        &self,
        path: &str,
        value: &SecretValue,
        stages: &[Stage],
        attributes: &BTreeMap<String, String>,
        cas: Option<u32>,
    ) -> Result<u32> {
        crate::secret::check_path(path)?;
        let keyring = self.ensure_keyring().await?;
        let latest = self
            .engine
            .store
            .list_secret_versions(path)
            .await?
            .last()
            .map_or(0, |v| v.version);
        let conflict = |latest: u32| {
            Error::new(
                Reason::ConcurrentRotation,
                format!("secret {path} changed meanwhile (newest version {latest}); try again"),
            )
        };
        if cas.is_some_and(|c| c != latest) {
            return Err(conflict(latest));
        }
        let version = latest + 1;
        let id = Self::value_id(path, version)?;
        let (key_version, key) = self.engine.current_key(&keyring, 1).await?;
        let aad = value_aad(&keyring, &id);
        let sealed = self
            .engine
            .crypto
            .seal(&key, key_version.version, &aad, value.expose().as_bytes())?;
        let now = self.engine.now();
        let mut tx = self.engine.store.begin().await?;
        let mut versions = tx.list_secret_versions(path).await?;
        let latest_now = versions.last().map_or(0, |v| v.version);
        if latest_now != latest {
            return Err(conflict(latest_now));
        }
        if tx.get_keyring(&keyring).await?.map(|k| k.current_version) != Some(key_version.version) {
            return Err(Error::new(
                Reason::ConcurrentRotation,
                format!("keyring {keyring} rotated while the secret was being sealed; try again"),
            ));
        }
        tx.put_values(&[SealedValue {
            keyring: keyring.clone(),
            id,
            key_version: key_version.version,
            sealed,
            created_at: now,
            updated_at: now,
        }])
        .await?;
        tx.add_usage(&keyring, key_version.version, 1).await?;
        versions.push(SecretVersion {
            path: path.to_owned(),
            version,
            stages: Vec::new(),
            created_at: now,
            attributes: attributes.clone(),
        });
        let moves: Vec<(Stage, Option<u32>)> = stages.iter().map(|s| (*s, Some(version))).collect();
        let changed = apply_update(&mut versions, &moves, &[])?;
        // The new row always; the older ones whose labels moved.
        for v in versions.iter().filter(|v| v.version == version || changed.contains(v)) {
            tx.put_secret_version(v).await?;
        }
        tx.commit().await?;
        Ok(version)
    }

    async fn read(&self, path: &str, selector: VersionSelector) -> Result<Option<(SecretVersion, SecretValue)>> {
        let versions = self.engine.store.list_secret_versions(path).await?;
        let found = versions.into_iter().find(|v| match selector {
            VersionSelector::Stage(s) => v.has(s),
            VersionSelector::Version(n) => v.version == n,
        });
        let Some(version) = found else {
            return Ok(None);
        };
        let keyring = Self::keyring();
        let id = Self::value_id(path, version.version)?;
        let sealed =
            self.engine.store.get_value(&keyring, &id).await?.ok_or_else(|| {
                Error::tampered(format!("the value of {path} version {} is missing", version.version))
            })?;
        let mut opened = self.engine.open_values(&keyring, std::slice::from_ref(&sealed)).await?;
        let plaintext = opened.pop().expect("one value in, one out")?;
        let text = String::from_utf8(plaintext.to_vec())
            .map_err(|_| Error::tampered(format!("the value of {path} version {} is not UTF-8", version.version)))?;
        Ok(Some((version, SecretValue::new(text))))
    }

    async fn versions(&self, path: &str) -> Result<Vec<SecretVersion>> {
        self.engine.store.list_secret_versions(path).await
    }

    async fn update(
        &self,
        path: &str,
        moves: &[(Stage, Option<u32>)],
        attributes: &[(u32, BTreeMap<String, String>)],
    ) -> Result<()> {
        let mut tx = self.engine.store.begin().await?;
        let mut versions = tx.list_secret_versions(path).await?;
        for changed in apply_update(&mut versions, moves, attributes)? {
            tx.put_secret_version(&changed).await?;
        }
        tx.commit().await
    }
}
