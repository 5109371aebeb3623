//! The audit log as a transparency log: the audit key, signed checkpoints,
//! verification against a checkpoint kept elsewhere, and proofs.
//!
//! The entries are the audit events in `seq` order (entry index = `seq - 1`),
//! each as its canonical bytes ([`AuditEvent::canonical_bytes`]). The store
//! keeps, as meta rows, the audit key ([`AUDIT_KEY_META`]: origin, key id,
//! public key and custody handle) and the newest signed checkpoint with the
//! tree's right edge at its size ([`AUDIT_CHECKPOINT_META`]), so a new
//! checkpoint hashes only the entries added since the last one and, by
//! construction, extends it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::audit::AuditEvent;
use crate::authority::CustodyRef;
use crate::error::{Error, Reason, Result};
use crate::ids::KeyId;
use crate::tlog::note::{Checkpoint, VerifierKey, open_checkpoint, signed_checkpoint};
use crate::tlog::{self, Frontier, Hash};

/// Meta row holding the audit key (JSON, see [`AuditKey`]).
pub const AUDIT_KEY_META: &str = "audit.key";
/// Meta row holding the newest signed checkpoint and the tree's right edge.
pub const AUDIT_CHECKPOINT_META: &str = "audit.checkpoint";
/// Meta row holding the witnesses each new checkpoint is pushed to (JSON
/// array of webhook URLs).
pub const AUDIT_WITNESSES_META: &str = "audit.witnesses";
/// Notification event carrying a new checkpoint to the witnesses.
pub const AUDIT_CHECKPOINT_EVENT: &str = "audit_checkpoint";
/// Prefix of the audit key's reserved key id (`rotation.audit.<log id>`);
/// authority key ids always contain `.k-`, so they never collide.
pub const AUDIT_KEY_ID_PREFIX: &str = "rotation.audit.";
/// Prefix of the origin line of this store's log (`rotation-audit/<log id>`).
pub const AUDIT_ORIGIN_PREFIX: &str = "rotation-audit/";

/// Events read per page.
const PAGE: usize = 5000;

/// The audit key as stored (the private half only as a custody handle).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditKey {
    /// The log's origin line, also the note key name.
    pub origin: String,
    /// Reserved key id under which the custody holds the key.
    pub key_id: KeyId,
    /// Ed25519 public key, standard base64.
    pub public_key: String,
    /// Custody handle of the private key.
    pub custody: CustodyRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCheckpoint {
    note: String,
    /// Roots of the perfect subtrees at the checkpoint's size (hex), largest first.
    frontier: Vec<String>,
}

/// A signed checkpoint of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// Number of entries it covers.
    pub size: u64,
    /// Root hash (standard base64, as in the note).
    pub root_hash: String,
    /// The signed note, exactly as stored and served.
    pub checkpoint: String,
}

/// An inclusion proof: leaf `index` in the tree of `size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Entry index (`seq - 1`).
    pub index: u64,
    /// Tree size.
    pub size: u64,
    /// The entry's leaf hash (standard base64).
    pub leaf_hash: String,
    /// Root hash of the tree of `size` entries (standard base64).
    pub root_hash: String,
    /// RFC 9162 PATH, from the leaf upwards (standard base64 each).
    pub proof: Vec<String>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Root hash at `from` (standard base64).
    pub from_root: String,
    /// Root hash at `to` (standard base64).
    pub to_root: String,
    /// RFC 9162 PROOF (standard base64 each).
    pub proof: Vec<String>,
}

/// What was checked about checkpoints during `audit verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCheck {
    /// Size of the store's newest checkpoint (its signature and root were checked).
    pub stored_size: Option<u64>,
    /// Size of the checkpoint given by the caller (the log extends it when valid).
    pub given_size: Option<u64>,
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

impl Engine {
    /// The leaf hash of an audit event (its canonical bytes as the entry).
    pub fn audit_leaf_hash(&self, event: &AuditEvent) -> Result<Hash> {
        Ok(tlog::leaf_hash(self.crypto.as_ref(), &event.canonical_bytes()?))
    }

    /// The stored audit key, if one was created.
    pub async fn audit_key(&self) -> Result<Option<AuditKey>> {
        match self.store.get_meta(AUDIT_KEY_META).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::tampered(format!("the stored audit key is not readable: {e}"))),
        }
    }

    /// The note verifier key of the stored audit key, if one was created.
    pub async fn audit_verifier_key(&self) -> Result<Option<VerifierKey>> {
        let Some(key) = self.audit_key().await? else {
            return Ok(None);
        };
        let public = STANDARD
            .decode(&key.public_key)
            .map_err(|_| Error::tampered("the stored audit public key is not base64"))?;
        VerifierKey::new(self.crypto.as_ref(), &key.origin, &public)
            .map(Some)
            .map_err(|e| Error::tampered(format!("the stored audit key is invalid: {}", e.message)))
    }

    /// The audit key, created in the custody on first use (at `init`, or by
    /// the first command that signs a checkpoint). Needs an unlocked custody
    /// to create it.
    pub async fn ensure_audit_key(&self) -> Result<AuditKey> {
        if let Some(key) = self.audit_key().await? {
            return Ok(key);
        }
        let log_id = uuid::Uuid::new_v4().simple().to_string();
        let key_id = KeyId::parse(format!("{AUDIT_KEY_ID_PREFIX}{log_id}"))?;
        let new = self.custody.create_signing_key(&key_id).await?;
        let key = AuditKey {
            origin: format!("{AUDIT_ORIGIN_PREFIX}{log_id}"),
            key_id,
            public_key: STANDARD.encode(&new.public_key),
            custody: new.custody,
        };
        let mut tx = self.store.begin().await?;
        // The head lock serialises creators; the first one's key is kept.
        tx.audit_head().await?;
        tx.put_meta(
            AUDIT_KEY_META,
            &serde_json::to_vec(&key).map_err(|e| Error::new(Reason::InvalidInput, e.to_string()))?,
        )
        .await?;
        tx.commit().await?;
        Ok(self.audit_key().await?.unwrap_or(key))
    }

    async fn stored_checkpoint(&self) -> Result<Option<(StoredCheckpoint, Checkpoint)>> {
        let Some(bytes) = self.store.get_meta(AUDIT_CHECKPOINT_META).await? else {
            return Ok(None);
        };
        let stored: StoredCheckpoint = serde_json::from_slice(&bytes)
            .map_err(|e| Error::tampered(format!("the stored audit checkpoint is not readable: {e}")))?;
        let note = crate::tlog::note::Note::parse(&stored.note)
            .map_err(|e| Error::tampered(format!("the stored audit checkpoint: {}", e.message)))?;
        let checkpoint = Checkpoint::parse(&note.text)
            .map_err(|e| Error::tampered(format!("the stored audit checkpoint: {}", e.message)))?;
        Ok(Some((stored, checkpoint)))
    }

    /// The newest stored checkpoint, as it was signed (no custody needed).
    pub async fn latest_audit_checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        Ok(self.stored_checkpoint().await?.map(|(stored, cp)| SignedCheckpoint {
            size: cp.size,
            root_hash: b64(&cp.root),
            checkpoint: stored.note,
        }))
    }

    /// Number of entries in the log (the stored head's `seq`).
    pub async fn audit_size(&self) -> Result<u64> {
        Ok(self.store.audit_head().await?.map(|h| h.seq.max(0) as u64).unwrap_or(0))
    }

    /// Whether the newest checkpoint covers the whole log (true when both
    /// are empty).
    pub async fn audit_checkpoint_is_current(&self) -> Result<bool> {
        let size = self.audit_size().await?;
        let stored = self.stored_checkpoint().await?.map(|(_, cp)| cp.size);
        Ok(stored == Some(size) || (size == 0 && stored.is_none()))
    }

    /// Signs a checkpoint of the whole log unless the newest one already
    /// covers it, and returns the newest. The tree is extended from the
    /// stored right edge with the entries added since, so the new
    /// checkpoint always extends the previous one; a log shorter than its
    /// newest checkpoint is `tampered` and nothing is signed. Needs the
    /// custody (the audit key signs).
    pub async fn sign_audit_checkpoint(&self) -> Result<SignedCheckpoint> {
        let key = self.ensure_audit_key().await?;
        let vkey = self
            .audit_verifier_key()
            .await?
            .ok_or_else(|| Error::tampered("the audit key disappeared"))?;
        let size = self.audit_size().await?;
        let mut frontier = match self.stored_checkpoint().await? {
            None => Frontier::default(),
            Some((stored, cp)) => {
                if cp.origin != key.origin {
                    return Err(Error::tampered(format!(
                        "the stored audit checkpoint is of origin {:?}, the audit key of {:?}",
                        cp.origin, key.origin
                    )));
                }
                let subtrees = stored
                    .frontier
                    .iter()
                    .map(|h| {
                        crate::audit::decode_hash(h)
                            .ok_or_else(|| Error::tampered("the stored audit tree edge is not hex"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let frontier = Frontier::from_parts(cp.size, subtrees)?;
                if frontier.root(self.crypto.as_ref()) != cp.root {
                    return Err(Error::tampered(
                        "the stored audit tree edge does not match the newest checkpoint",
                    ));
                }
                if size < cp.size {
                    return Err(Error::tampered(format!(
                        "the audit log has {size} entries but its newest checkpoint covers {}: entries from index {size} are missing",
                        cp.size
                    )));
                }
                if size == cp.size {
                    return Ok(SignedCheckpoint {
                        size,
                        root_hash: b64(&cp.root),
                        checkpoint: stored.note,
                    });
                }
                frontier
            }
        };
        let mut after = frontier.size() as i64;
        while frontier.size() < size {
            let page = self.store.list_audit(after, PAGE).await?;
            if page.is_empty() {
                return Err(Error::tampered(format!(
                    "the audit log ends at {after} entries but its head says {size}"
                )));
            }
            for event in &page {
                if frontier.size() >= size {
                    break;
                }
                if event.seq != after + 1 {
                    return Err(Error::tampered(format!("audit event {} is missing", after + 1)));
                }
                frontier.push(self.crypto.as_ref(), self.audit_leaf_hash(event)?);
                after = event.seq;
            }
        }
        let checkpoint = Checkpoint {
            origin: key.origin.clone(),
            size,
            root: frontier.root(self.crypto.as_ref()),
            extensions: vec![],
        };
        let signature = self
            .custody
            .sign(&key.key_id, &key.custody, &[checkpoint.body().into_bytes()])
            .await?
            .pop()
            .ok_or_else(|| Error::new(Reason::BackendUnavailable, "the custody returned no signature"))?;
        let note = signed_checkpoint(&vkey, &checkpoint, &signature);
        // Never store what the key cannot verify (e.g. a custody that signs wrongly).
        open_checkpoint(self.crypto.as_ref(), &vkey, &note)?;
        let stored = StoredCheckpoint {
            note: note.clone(),
            frontier: frontier.subtrees().iter().map(hex::encode).collect(),
        };
        let witnesses = self.audit_witnesses().await?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.audit_head().await?;
        // Witnesses get each new checkpoint through the outbox, committed
        // with it: a witness that is down receives it later.
        let notification = crate::ports::Notification {
            event: AUDIT_CHECKPOINT_EVENT.into(),
            target: crate::ids::Target::Store.to_string(),
            rotation_id: None,
            details: serde_json::json!({
                "origin": checkpoint.origin,
                "size": size,
                "root_hash": b64(&checkpoint.root),
                "checkpoint": note,
            }),
        };
        let dedup = format!(
            "{AUDIT_CHECKPOINT_EVENT}|{}|{size}|{}",
            checkpoint.origin,
            b64(&checkpoint.root)
        );
        self.enqueue(tx.as_mut(), &witnesses, &notification, Some(&dedup), now)
            .await?;
        tx.put_meta(
            AUDIT_CHECKPOINT_META,
            &serde_json::to_vec(&stored).map_err(|e| Error::new(Reason::InvalidInput, e.to_string()))?,
        )
        .await?;
        tx.commit().await?;
        Ok(SignedCheckpoint {
            size,
            root_hash: b64(&checkpoint.root),
            checkpoint: note,
        })
    }

    /// The webhook URLs each new checkpoint is pushed to.
    pub async fn audit_witnesses(&self) -> Result<Vec<String>> {
        match self.store.get_meta(AUDIT_WITNESSES_META).await? {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::tampered(format!("the stored audit witnesses are not readable: {e}"))),
        }
    }

    /// Replaces the witnesses each new checkpoint is pushed to (`http://`
    /// or `https://` webhook URLs, delivered by the notifier from the
    /// outbox, signed like every webhook); audited as `audit_witnesses_set`
    /// with their number only (URLs may carry credentials).
    pub async fn set_audit_witnesses(&self, urls: Vec<String>) -> Result<Vec<String>> {
        let mut urls: Vec<String> = urls.into_iter().map(|u| u.trim().to_owned()).collect();
        urls.sort();
        urls.dedup();
        if urls.len() > 100 {
            return Err(Error::invalid_input("at most 100 audit witnesses"));
        }
        for url in &urls {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .filter(|r| !r.is_empty() && !r.starts_with('/'));
            if rest.is_none() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid_input(format!(
                    "an audit witness is an http:// or https:// webhook URL; {:?} is not",
                    url.chars().take(64).collect::<String>()
                )));
            }
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.put_meta(
            AUDIT_WITNESSES_META,
            &serde_json::to_vec(&urls).map_err(|e| Error::invalid_input(e.to_string()))?,
        )
        .await?;
        let draft = self.draft(
            crate::audit::event::AUDIT_WITNESSES_SET,
            crate::ids::Target::Store,
            None,
            serde_json::json!({"witnesses": urls.len()}),
        );
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(urls)
    }

    /// Opens a checkpoint given by a caller (e.g. kept by a witness): it
    /// must be a valid note, of this log's origin, signed by this log's
    /// audit key (`invalid_input` naming which check failed).
    pub async fn open_audit_checkpoint(&self, text: &str) -> Result<Checkpoint> {
        let vkey = self
            .audit_verifier_key()
            .await?
            .ok_or_else(|| Error::invalid_input("this store has no audit key yet, so no checkpoint can be checked"))?;
        open_checkpoint(self.crypto.as_ref(), &vkey, text)
    }

    /// The leaf hashes of the first `size` entries (`size` must not exceed the log).
    async fn audit_leaves(&self, size: u64) -> Result<Vec<Hash>> {
        let have = self.audit_size().await?;
        if size > have {
            return Err(Error::invalid_input(format!(
                "tree size {size} is larger than the log ({have} entries)"
            )));
        }
        let mut leaves = Vec::with_capacity(size as usize);
        let mut after = 0i64;
        while (leaves.len() as u64) < size {
            let page = self.store.list_audit(after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                if leaves.len() as u64 >= size {
                    break;
                }
                leaves.push(self.audit_leaf_hash(event)?);
                after = event.seq;
            }
        }
        if (leaves.len() as u64) < size {
            return Err(Error::tampered(format!("the audit log has fewer than {size} entries")));
        }
        Ok(leaves)
    }

    /// The inclusion proof of entry `index` (`seq - 1`) in the tree of
    /// `size` entries.
    pub async fn audit_inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        if index >= size {
            return Err(Error::invalid_input(format!(
                "index {index} is not below size {size} (indexes start at 0)"
            )));
        }
        let leaves = self.audit_leaves(size).await?;
        let crypto = self.crypto.as_ref();
        let proof = tlog::inclusion_proof(crypto, &leaves, index)?;
        Ok(InclusionProof {
            index,
            size,
            leaf_hash: b64(&leaves[index as usize]),
            root_hash: b64(&tlog::root(crypto, &leaves)),
            proof: proof.iter().map(b64).collect(),
        })
    }

    /// The consistency proof between the trees of `from` and `to` entries
    /// (`1 <= from <= to`).
    pub async fn audit_consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof> {
        if from == 0 || from > to {
            return Err(Error::invalid_input(format!(
                "a consistency proof needs 1 <= from <= to; got from {from}, to {to}"
            )));
        }
        let leaves = self.audit_leaves(to).await?;
        let crypto = self.crypto.as_ref();
        let proof = tlog::consistency_proof(crypto, &leaves, from)?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root: b64(&tlog::root(crypto, &leaves[..from as usize])),
            to_root: b64(&tlog::root(crypto, &leaves)),
            proof: proof.iter().map(b64).collect(),
        })
    }
}
