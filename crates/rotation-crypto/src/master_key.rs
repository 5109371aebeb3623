//! The master key's life in a store: unlocking (also half-way through a
//! rotation), rotation to a new master secret, and its status.
//!
//! The store keeps the current KEK parameters under `kek` and, while a
//! rotation runs, the new ones under `kek_next`. Every sealed key records
//! the KEK generation that sealed it (the version in its sealed header), so
//! a rotation stopped at any point is finished by running it again, and
//! until then the store opens with either secret.

use rotation_core::audit::{self, AuditDraft};
use rotation_core::ids::Target;
use rotation_core::ports::StateStore;
use rotation_core::{Error, Reason, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::custody::LocalCustody;
use crate::kek::{Argon2Cost, Kek, KekParams, MasterSecret};
use crate::provider::RingCrypto;
use crate::sealed;

/// Metadata key of the current KEK parameters.
pub const KEK_META: &str = "kek";
/// Metadata key of the next KEK parameters, while a rotation runs.
pub const KEK_NEXT_META: &str = "kek_next";

/// Reads KEK parameters stored under `key`.
pub async fn load_params(store: &dyn StateStore, key: &str) -> Result<Option<KekParams>> {
    match store.get_meta(key).await? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::tampered(format!("stored KEK parameters ({key}) are unreadable: {e}"))),
    }
}

/// The current KEK parameters; a store without them was never initialised.
pub async fn current_params(store: &dyn StateStore) -> Result<KekParams> {
    load_params(store, KEK_META)
        .await?
        .ok_or_else(|| Error::not_found("the store is not initialised; run `rotation init`"))
}

/// A custody for `secret`: the current KEK, or, while a rotation runs, the
/// new one if that is the secret given (keys already moved open; the others
/// fail with a message saying to finish the rotation).
pub async fn unlock(store: &dyn StateStore, secret: &MasterSecret) -> Result<LocalCustody> {
    let current = current_params(store).await?;
    let first = match Kek::unlock(secret, &current) {
        Ok(kek) => return Ok(LocalCustody::new(kek)),
        Err(e) => e,
    };
    if let Some(next) = load_params(store, KEK_NEXT_META).await?
        && let Ok(kek) = Kek::unlock(secret, &next)
    {
        return Ok(LocalCustody::new(kek));
    }
    Err(first)
}

/// Starts (or resumes) a rotation from `old` to `new`. A wrong `old` is
/// `unauthorized` and changes nothing. Returns a custody that seals under
/// the new KEK and still opens what the old one sealed.
///
/// The new KEK gets a fresh salt and the Argon2id costs `cost` (normally
/// [`Argon2Cost::DEFAULT`]), so a rotation also upgrades a store created
/// with older, lower costs. A resumed rotation keeps the costs it started with.
pub async fn begin_rotation(
    store: &dyn StateStore,
    old: &MasterSecret,
    new: &MasterSecret,
    cost: Argon2Cost,
) -> Result<LocalCustody> {
    let current = current_params(store).await?;
    let old_kek = Kek::unlock(old, &current)?;
    let new_kek = match load_params(store, KEK_NEXT_META).await? {
        Some(next) => Kek::unlock(new, &next).map_err(|_| {
            Error::new(
                Reason::Unauthorized,
                "a master-key rotation to a different new secret is in progress; finish it with that secret",
            )
        })?,
        None => {
            let (kek, params) = Kek::create_generation(new, current.generation + 1, cost)?;
            let raw = serde_json::to_vec(&params).map_err(|e| Error::invalid_input(e.to_string()))?;
            let mut tx = store.begin().await?;
            tx.put_meta(KEK_NEXT_META, &raw).await?;
            let draft = AuditDraft {
                event: "master_key_rotation_started".into(),
                target: Target::Store,
                rotation_id: None,
                actor: "cli".into(),
                details: json!({"from_generation": current.generation, "to_generation": params.generation, "kind": params.kind}),
            };
            audit::append(tx.as_mut(), &RingCrypto::new(), now(), vec![draft]).await?;
            tx.commit().await?;
            kek
        }
    };
    Ok(LocalCustody::with_older(new_kek, vec![old_kek]))
}

/// Ends a rotation whose keys have all been re-wrapped: the new parameters
/// become current and the old KEK no longer opens the store.
pub async fn finish_rotation(store: &dyn StateStore, details: serde_json::Value) -> Result<KekParams> {
    let next = load_params(store, KEK_NEXT_META)
        .await?
        .ok_or_else(|| Error::not_found("no master-key rotation is in progress"))?;
    let current = current_params(store).await?;
    let raw = serde_json::to_vec(&next).map_err(|e| Error::invalid_input(e.to_string()))?;
    let mut tx = store.begin().await?;
    tx.put_meta(KEK_META, &raw).await?;
    tx.delete_meta(KEK_NEXT_META).await?;
    let mut details = details;
    details["from_generation"] = json!(current.generation);
    details["to_generation"] = json!(next.generation);
    let draft = AuditDraft {
        event: "master_key_rotated".into(),
        target: Target::Store,
        rotation_id: None,
        actor: "cli".into(),
        details,
    };
    audit::append(tx.as_mut(), &RingCrypto::new(), now(), vec![draft]).await?;
    tx.commit().await?;
    Ok(next)
}

/// Where the master key stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterKeyStatus {
    /// Current KEK generation.
    pub generation: u32,
    /// `password` or `key_file`.
    pub kind: String,
    /// The Argon2id costs the current KEK is derived with (`password` only).
    pub argon2: Option<Argon2Cost>,
    /// A rotation has started and not finished.
    pub rotation_in_progress: bool,
    /// The generation being rotated to.
    pub next_generation: Option<u32>,
    /// Kind of the next secret.
    pub next_kind: Option<String>,
    /// Sealed keys (signing keys and data keys) per KEK generation.
    pub keys_by_generation: Vec<(u32, u64)>,
}

/// The master key's status, counting sealed keys by KEK generation.
pub async fn status(store: &dyn StateStore) -> Result<MasterKeyStatus> {
    let current = current_params(store).await?;
    let next = load_params(store, KEK_NEXT_META).await?;
    let mut counts = std::collections::BTreeMap::<u32, u64>::new();
    let mut count = |handle: &[u8]| {
        if let Ok(g) = sealed::key_version(handle) {
            *counts.entry(g).or_default() += 1;
        }
    };
    for a in store.list_authorities().await? {
        for k in store.list_keys(&a.id).await? {
            count(&k.custody.handle);
        }
    }
    for r in store.list_keyrings().await? {
        for v in store.list_key_versions(&r.name).await? {
            count(&v.wrapped.handle);
        }
    }
    Ok(MasterKeyStatus {
        generation: current.generation,
        argon2: (current.kind == "password").then_some(current.argon2),
        kind: current.kind,
        rotation_in_progress: next.is_some(),
        next_generation: next.as_ref().map(|n| n.generation),
        next_kind: next.map(|n| n.kind),
        keys_by_generation: counts.into_iter().collect(),
    })
}

fn now() -> rotation_core::time::Timestamp {
    rotation_core::time::truncate(chrono::Utc::now())
}
