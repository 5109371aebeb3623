//! The tamper-evident audit log: an append-only, SHA-256 hash chain.
//!
//! `hash = SHA-256(prev_hash || "rotation-audit-v1\n" || JCS(event without hashes))`,
//! with 32 zero bytes as the first `prev_hash`. Events are appended in the
//! same store transaction as the state change they record, and the store
//! keeps a head (last sequence and hash) so deleting the newest events is
//! detected as well as editing, inserting or deleting any other.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canonical::{AUDIT_PREFIX, jcs};
use crate::error::Result;
use crate::ids::{RotationId, Target};
use crate::ports::{CryptoProvider, StoreTx};
use crate::time::{Timestamp, rfc3339};

/// Audit event types used by the engine.
pub mod event {
    /// A rotation run was recorded.
    pub const ROTATION_STARTED: &str = "rotation_started";
    /// A rotation run completed.
    pub const ROTATION_COMPLETED: &str = "rotation_completed";
    /// A rotation run failed.
    pub const ROTATION_FAILED: &str = "rotation_failed";
    /// A rotation run was rolled back.
    pub const ROTATION_ROLLED_BACK: &str = "rotation_rolled_back";
    /// A rotation run was resumed by another process after its lease expired.
    pub const ROTATION_RESUMED: &str = "rotation_resumed";
    /// A future rotation was scheduled.
    pub const ROTATION_SCHEDULED: &str = "rotation_scheduled";
    /// A signing key was created.
    pub const KEY_CREATED: &str = "key_created";
    /// A key was revoked after its grace period.
    pub const KEY_REVOKED: &str = "key_revoked";
    /// A key was revoked before its grace period ended, on explicit request.
    pub const KEY_FORCE_REVOKED: &str = "key_force_revoked";
    /// An authority was created.
    pub const AUTHORITY_CREATED: &str = "authority_created";
    /// A trust chain was issued.
    pub const CHAIN_ISSUED: &str = "chain_issued";
    /// The store was initialised.
    pub const STORE_INITIALISED: &str = "store_initialised";
    /// A secret value was written by a caller (`secret put`).
    pub const SECRET_WRITTEN: &str = "secret_written";
    /// A secret (or keyring value) was read in plaintext.
    pub const SECRET_READ: &str = "secret_read";
    /// One step of a secret rotation ran at its target (details: step, log).
    pub const SECRET_STEP: &str = "secret_step";
    /// Dual-write: the previous value was disabled after its grace period.
    pub const SECRET_PREVIOUS_DISABLED: &str = "secret_previous_disabled";
    /// A schedule exhausted its retries and stopped.
    pub const SCHEDULE_ORPHANED: &str = "schedule_orphaned";
    /// An orphaned or failed schedule was resumed by an operator.
    pub const SCHEDULE_RESUMED: &str = "schedule_resumed";
    /// The store was replaced from a backup (`restore`); the log goes on
    /// from the backup's log (details: backup time, whether it replaced data,
    /// the entries it replaced and restored).
    pub const STORE_RESTORED: &str = "store_restored";
    /// The witnesses that receive each new checkpoint were replaced (details: their number).
    pub const AUDIT_WITNESSES_SET: &str = "audit_witnesses_set";
    /// Statistics were reset.
    pub const STATS_RESET: &str = "stats_reset";
    /// Values presented for validation (`:validate`), counted per caller
    /// and secret over a window (details: attempts, valid, window start and end).
    pub const SECRET_VALIDATED: &str = "secret_validated";
}

/// An event to append; the store assigns sequence and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    /// Event type (see [`event`]).
    pub event: String,
    /// Target concerned.
    pub target: Target,
    /// Rotation run concerned.
    pub rotation_id: Option<RotationId>,
    /// Who caused it.
    pub actor: String,
    /// Event-specific details; never secret material.
    pub details: Value,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1, contiguous.
    pub seq: i64,
    /// Unique id (UUID v7).
    pub id: uuid::Uuid,
    /// When it happened.
    pub at: Timestamp,
    /// Event type.
    pub event: String,
    /// Target, as `kind:name`.
    pub target: String,
    /// Rotation run concerned.
    pub rotation_id: Option<RotationId>,
    /// Who caused it.
    pub actor: String,
    /// Details.
    pub details: Value,
    /// Hash of the previous event (hex; 64 zeros for the first).
    pub prev_hash: String,
    /// This event's hash (hex).
    pub hash: String,
}

/// The newest event's position and hash, kept by the store beside the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Sequence of the newest event.
    pub seq: i64,
    /// Hash of the newest event (hex).
    pub hash: String,
}

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEvent {
    /// The canonical bytes covered by `hash` (everything but the hashes).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        let body = json!({
            "seq": self.seq,
            "id": self.id.to_string(),
            "at": rfc3339(self.at),
            "event": self.event,
            "target": self.target,
            "rotation_id": self.rotation_id.map(|r| r.to_string()),
            "actor": self.actor,
            "details": self.details,
        });
        let mut out = AUDIT_PREFIX.to_vec();
        out.extend_from_slice(&jcs(&body)?);
        Ok(out)
    }

    /// Computes the hash this event must carry, given its `prev_hash`.
    pub fn compute_hash(&self, crypto: &dyn CryptoProvider) -> Result<String> {
        let prev = decode_hash(&self.prev_hash).unwrap_or([0xff; 32]);
        let mut data = prev.to_vec();
        data.extend_from_slice(&self.canonical_bytes()?);
        Ok(hex::encode(crypto.sha256(&data)))
    }
}

/// Appends `drafts` to the log inside `tx`, chaining from the current head.
/// Must be called in the transaction that makes the change it records.
pub async fn append(
    tx: &mut dyn StoreTx,
    crypto: &dyn CryptoProvider,
    at: Timestamp,
    drafts: Vec<AuditDraft>,
) -> Result<()> {
    let head = tx.audit_head().await?;
    let (mut seq, mut prev) = match head {
        Some(h) => (h.seq, h.hash),
        None => (0, GENESIS_HASH.to_owned()),
    };
    for draft in drafts {
        seq += 1;
        let mut event = AuditEvent {
            seq,
            id: uuid::Uuid::now_v7(),
            at,
            event: draft.event,
            target: draft.target.to_string(),
            rotation_id: draft.rotation_id,
            actor: draft.actor,
            details: draft.details,
            prev_hash: prev,
            hash: String::new(),
        };
        event.hash = event.compute_hash(crypto)?;
        prev = event.hash.clone();
        tx.append_audit(&event).await?;
    }
    Ok(())
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBreak {
    /// Sequence number where the check failed (the expected one for gaps).
    pub seq: i64,
    /// What is wrong: `hash_mismatch`, `prev_hash_mismatch`, `sequence_gap`,
    /// `head_mismatch`.
    pub problem: String,
}

/// Incremental verifier of the hash chain, so a log of any length is
/// checked page by page in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks the next event in sequence order.
    pub fn check(&mut self, event: &AuditEvent, crypto: &dyn CryptoProvider) -> Result<(), AuditBreak> {
        let broken = |problem: &str| AuditBreak {
            seq: event.seq,
            problem: problem.to_owned(),
        };
        if event.seq != self.next_seq {
            return Err(AuditBreak {
                seq: self.next_seq,
                problem: "sequence_gap".into(),
            });
        }
        if event.prev_hash != self.prev_hash {
            return Err(broken("prev_hash_mismatch"));
        }
        match event.compute_hash(crypto) {
            Ok(h) if h == event.hash => {}
            _ => return Err(broken("hash_mismatch")),
        }
        self.next_seq += 1;
        self.prev_hash = event.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// Checks that the chain ends where the store's head says it does.
    pub fn finish(&self, head: Option<&AuditHead>) -> Result<u64, AuditBreak> {
        let last_seq = self.next_seq - 1;
        let ok = match head {
            None => last_seq == 0,
            Some(h) => h.seq == last_seq && h.hash == self.prev_hash,
        };
        if ok {
            Ok(self.checked)
        } else {
            Err(AuditBreak {
                seq: head.map(|h| h.seq).unwrap_or(0).max(last_seq),
                problem: "head_mismatch".into(),
            })
        }
    }
}

/// A 32-byte hash from its 64 hex digits; `None` for anything else.
pub(crate) fn decode_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}
