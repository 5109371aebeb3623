//! Reading and verifying the audit log.

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::audit::{AuditBreak, AuditEvent, ChainVerifier};
use crate::error::Result;

/// Events read per page when verifying.
const PAGE: usize = 5000;

/// The outcome of `audit verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    /// Whether the whole chain is intact.
    pub valid: bool,
    /// Events checked before the first break (all of them when valid).
    pub events: u64,
    /// Where the chain breaks.
    pub first_break: Option<AuditBreak>,
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

    /// Checks the whole hash chain and its head, in constant memory.
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        let mut checked = 0u64;
        loop {
            let page = self.store.list_audit(after, PAGE).await?;
            for event in &page {
                if let Err(first_break) = verifier.check(event, self.crypto.as_ref()) {
                    return Ok(AuditReport {
                        valid: false,
                        events: checked,
                        first_break: Some(first_break),
                    });
                }
                checked += 1;
                after = event.seq;
            }
            if page.len() < PAGE {
                break;
            }
        }
        let head = self.store.audit_head().await?;
        Ok(match verifier.finish(head.as_ref()) {
            Ok(n) => AuditReport {
                valid: true,
                events: n,
                first_break: None,
            },
            Err(first_break) => AuditReport {
                valid: false,
                events: checked,
                first_break: Some(first_break),
            },
        })
    }
}
