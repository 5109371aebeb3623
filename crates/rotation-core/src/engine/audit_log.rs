//! Reading and verifying the audit log.

use serde::{Deserialize, Serialize};

use super::Engine;
use super::transparency::CheckpointCheck;
use crate::audit::{AuditBreak, AuditEvent, ChainVerifier};
use crate::error::Result;
use crate::tlog::Frontier;
use crate::tlog::note::Checkpoint;

/// Events read per page when verifying.
const PAGE: usize = 5000;

/// The outcome of `audit verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    /// Whether the whole chain is intact.
    pub valid: bool,
    /// Events checked before the first break (all of them when valid).
    pub events: u64,
    /// Where the chain breaks, or where the log stops extending a
    /// checkpoint (`checkpoint_beyond_log`: entries from `seq` on are
    /// missing; `checkpoint_root_mismatch`: the first `seq` entries do not
    /// hash to the checkpoint's root; `checkpoint_signature_invalid`).
    pub first_break: Option<AuditBreak>,
    /// Number of entries in the tree (the events read).
    #[serde(default)]
    pub tree_size: u64,
    /// RFC 9162 root hash of the whole log (standard base64).
    #[serde(default)]
    pub root_hash: String,
    /// Which checkpoints were checked.
    #[serde(default)]
    pub checkpoints: CheckpointCheck,
}

/// A checkpoint to hold the log against while verifying it.
struct Expect {
    checkpoint: Checkpoint,
    /// Whether it was given by the caller (else: the store's newest).
    given: bool,
    /// Whether the tree reached its size with its root.
    matched: Option<bool>,
}

impl Engine {
    /// The newest `limit` events, newest first.
    pub async fn audit_events(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        self.store.list_audit_newest(limit).await
    }

    /// Audit events matching `query`, newest first (page with `before_seq`
    /// = the last `seq` of the previous page). `limit` is capped at 10,000.
    pub async fn query_audit(&self, mut query: crate::ports::AuditQuery) -> Result<Vec<crate::audit::AuditEvent>> {
        query.limit = query.limit.clamp(1, 10_000);
        self.store.query_audit(&query).await
    }

    /// Checks the whole hash chain and its head, in constant memory, and
    /// the store's newest checkpoint (its signature, and that the log
    /// still has its tree).
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        self.verify_audit_against(None).await
    }

    /// [`Engine::verify_audit`], and with `checkpoint` (a signed note kept
    /// elsewhere) also that the log still contains that checkpoint's tree:
    /// the same root at its size. A checkpoint that is not a valid note, of
    /// another origin or not signed by this log's audit key is
    /// `invalid_input`; a log that does not extend it is reported as a break.
    pub async fn verify_audit_against(&self, checkpoint: Option<&str>) -> Result<AuditReport> {
        let crypto = self.crypto.as_ref();
        let mut expects = Vec::new();
        if let Some(text) = checkpoint {
            expects.push(Expect {
                checkpoint: self.open_audit_checkpoint(text).await?,
                given: true,
                matched: None,
            });
        }
        let mut signature_break = None;
        if let Some(stored) = self.latest_audit_checkpoint().await? {
            let vkey = self.audit_verifier_key().await?;
            let opened = match &vkey {
                Some(vkey) => crate::tlog::note::open_checkpoint(crypto, vkey, &stored.checkpoint).ok(),
                None => None,
            };
            match opened {
                Some(cp) => expects.push(Expect {
                    checkpoint: cp,
                    given: false,
                    matched: None,
                }),
                None => {
                    signature_break = Some(AuditBreak {
                        seq: stored.size as i64,
                        problem: "checkpoint_signature_invalid".into(),
                    })
                }
            }
        }
        let mut verifier = ChainVerifier::default();
        let mut frontier = Frontier::default();
        let check_sizes = |frontier: &Frontier, expects: &mut Vec<Expect>| {
            for e in expects.iter_mut() {
                if e.matched.is_none() && e.checkpoint.size == frontier.size() {
                    e.matched = Some(frontier.root(crypto) == e.checkpoint.root);
                }
            }
        };
        check_sizes(&frontier, &mut expects);
        let mut after = 0;
        let mut checked = 0u64;
        let mut chain_break = None;
        'read: loop {
            let page = self.store.list_audit(after, PAGE).await?;
            for event in &page {
                if let Err(b) = verifier.check(event, crypto) {
                    chain_break = Some(b);
                    break 'read;
                }
                frontier.push(crypto, self.audit_leaf_hash(event)?);
                check_sizes(&frontier, &mut expects);
                checked += 1;
                after = event.seq;
            }
            if page.len() < PAGE {
                break;
            }
        }
        if chain_break.is_none() {
            let head = self.store.audit_head().await?;
            if let Err(b) = verifier.finish(head.as_ref()) {
                chain_break = Some(b);
            }
        }
        let size = frontier.size();
        let mut checkpoints = CheckpointCheck::default();
        let mut checkpoint_break = None;
        for e in &expects {
            let problem = match e.matched {
                Some(true) => None,
                Some(false) => Some(AuditBreak {
                    seq: e.checkpoint.size as i64,
                    problem: "checkpoint_root_mismatch".into(),
                }),
                None => Some(AuditBreak {
                    seq: size as i64 + 1,
                    problem: "checkpoint_beyond_log".into(),
                }),
            };
            match problem {
                None if e.given => checkpoints.given_size = Some(e.checkpoint.size),
                None => checkpoints.stored_size = Some(e.checkpoint.size),
                Some(b) => {
                    if checkpoint_break.as_ref().is_none_or(|c: &AuditBreak| b.seq < c.seq) {
                        checkpoint_break = Some(b);
                    }
                }
            }
        }
        let first_break = chain_break.or(checkpoint_break).or(signature_break);
        Ok(AuditReport {
            valid: first_break.is_none(),
            events: checked,
            first_break,
            tree_size: size,
            root_hash: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, frontier.root(crypto)),
            checkpoints,
        })
    }
}
