//! Trust chains: issuing and verifying records.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::authority::SigningKey;
use crate::canonical::record_signing_bytes;
use crate::chain::{ChainVerdict, RecordDraft, RecordKind, TrustRecord, check_issue_request, new_body, verify_chain};
use crate::error::{Error, Reason, Result};
use crate::ids::{AgentId, AuthorityId, KeyId, Target};
use crate::ports::RecordQuery;

/// A request to extend an agent's trust chain.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The agent.
    pub agent_id: AgentId,
    /// The signing authority.
    pub authority_id: AuthorityId,
    /// Capabilities to attest (and to delegate, with `delegate_to`).
    pub capabilities: Vec<String>,
    /// Delegate the capabilities to this agent (the authority is the delegator).
    pub delegate_to: Option<AgentId>,
}

/// Records fetched per page when verifying every chain.
const VERIFY_PAGE: usize = 2000;

impl Engine {
    /// Issues records for one agent: a genesis record if the agent has
    /// none, one capability attestation per capability, and a delegation
    /// record with `delegate_to`. Returns the new records.
    pub async fn issue_chain(&self, request: IssueRequest) -> Result<Vec<TrustRecord>> {
        self.issue_chains(std::slice::from_ref(&request)).await
    }

    /// Issues many chains at once: one signing batch per authority and one
    /// transaction for all records.
    pub async fn issue_chains(&self, requests: &[IssueRequest]) -> Result<Vec<TrustRecord>> {
        let now = self.now();
        let mut keys: HashMap<AuthorityId, SigningKey> = HashMap::new();
        let mut with_genesis: HashSet<AgentId> = HashSet::new();
        let mut pending: Vec<TrustRecord> = Vec::new();
        for request in requests {
            check_issue_request(&request.capabilities, request.delegate_to.as_ref())?;
            if !keys.contains_key(&request.authority_id) {
                let authority = self.authority(&request.authority_id).await?;
                let key = self.store.get_key(&authority.current_key_id).await?.ok_or_else(|| {
                    Error::new(
                        Reason::NotFound,
                        format!("current key of authority {} is missing", authority.id),
                    )
                })?;
                keys.insert(authority.id.clone(), key);
            }
            let key = &keys[&request.authority_id];
            if !with_genesis.contains(&request.agent_id) {
                let existing = self
                    .store
                    .list_records(&RecordQuery {
                        agent: Some(request.agent_id.clone()),
                        ..RecordQuery::default()
                    })
                    .await?;
                if !existing.iter().any(|r| r.kind == RecordKind::Genesis) {
                    pending.push(self.unsigned(request, key, RecordKind::Genesis, vec![], now));
                }
                with_genesis.insert(request.agent_id.clone());
            }
            for capability in &request.capabilities {
                pending.push(self.unsigned(request, key, RecordKind::Capability, vec![capability.clone()], now));
            }
            if request.delegate_to.is_some() {
                pending.push(self.unsigned(request, key, RecordKind::Delegation, request.capabilities.clone(), now));
            }
        }
        // One custody call per signing key.
        let mut by_key: HashMap<KeyId, Vec<usize>> = HashMap::new();
        for (i, r) in pending.iter().enumerate() {
            by_key.entry(r.key_id.clone()).or_default().push(i);
        }
        for (key_id, indexes) in by_key {
            let key = keys.values().find(|k| k.key_id == key_id).expect("key loaded above");
            let messages = indexes
                .iter()
                .map(|&i| record_signing_bytes(&pending[i].body))
                .collect::<Result<Vec<_>>>()?;
            let signatures = self.custody.sign(&key.key_id, &key.custody, &messages).await?;
            for (&i, signature) in indexes.iter().zip(signatures) {
                pending[i].signature = signature;
            }
        }
        let mut tx = self.store.begin().await?;
        for a in keys.keys() {
            // The key may have been rotated away between reading and committing.
            let current = tx.get_authority(a).await?.map(|a| a.current_key_id);
            if current.as_ref() != Some(&keys[a].key_id) {
                return Err(Error::new(
                    Reason::ConcurrentRotation,
                    format!("authority {a} rotated its key while the chain was being issued; issue it again"),
                )
                .with_authority(a));
            }
        }
        tx.insert_records(&pending).await?;
        let mut per_agent: HashMap<(&AgentId, &AuthorityId), usize> = HashMap::new();
        for r in &pending {
            *per_agent.entry((&r.agent_id, &r.authority_id)).or_default() += 1;
        }
        let mut drafts: Vec<_> = per_agent
            .into_iter()
            .map(|((agent, authority), n)| {
                self.draft(
                    event::CHAIN_ISSUED,
                    Target::Authority(authority.clone()),
                    None,
                    json!({"agent_id": agent, "records": n}),
                )
            })
            .collect();
        drafts.sort_by_key(|d| d.details.to_string());
        self.append_audit(tx.as_mut(), now, drafts).await?;
        tx.commit().await?;
        Ok(pending)
    }

    fn unsigned(
        &self,
        request: &IssueRequest,
        key: &SigningKey,
        kind: RecordKind,
        capabilities: Vec<String>,
        now: crate::time::Timestamp,
    ) -> TrustRecord {
        let id = uuid::Uuid::now_v7();
        let draft = RecordDraft {
            kind,
            capabilities,
            delegate_to: request.delegate_to.clone(),
        };
        TrustRecord {
            id,
            agent_id: request.agent_id.clone(),
            authority_id: request.authority_id.clone(),
            kind,
            body: new_body(id, &request.agent_id, &request.authority_id, &key.key_id, &draft, now),
            key_id: key.key_id.clone(),
            signature: Vec::new(),
            issued_at: now,
            signed_at: now,
            resigned_by: None,
        }
    }

    /// Records matching `query` (see [`RecordQuery`]).
    pub async fn list_records(&self, query: &RecordQuery) -> Result<Vec<TrustRecord>> {
        self.store.list_records(query).await
    }

    /// Verifies one agent's chain; `not_found` if the agent has no records.
    pub async fn verify_agent_chain(&self, agent: &AgentId) -> Result<ChainVerdict> {
        let records = self
            .store
            .list_records(&RecordQuery {
                agent: Some(agent.clone()),
                ..RecordQuery::default()
            })
            .await?;
        if records.is_empty() {
            return Err(Error::not_found(format!("agent {agent} has no trust chain")));
        }
        let mut keys = HashMap::new();
        self.load_keys(&records, &mut keys).await?;
        Ok(verify_chain(agent, &records, &keys, self.crypto.as_ref(), self.now()))
    }

    /// Verifies every chain, streaming the records page by page.
    pub async fn verify_all_chains(&self) -> Result<Vec<ChainVerdict>> {
        let now = self.now();
        let mut keys = HashMap::new();
        let mut verdicts = Vec::new();
        let mut current: Vec<TrustRecord> = Vec::new();
        let mut query = RecordQuery {
            limit: VERIFY_PAGE,
            ..RecordQuery::default()
        };
        loop {
            let page = self.store.list_records(&query).await?;
            let done = page.len() < VERIFY_PAGE;
            if let Some(last) = page.last() {
                query.after = Some((last.agent_id.clone(), last.id));
            }
            self.load_keys(&page, &mut keys).await?;
            for record in page {
                if current.first().is_some_and(|r| r.agent_id != record.agent_id) {
                    let agent = current[0].agent_id.clone();
                    verdicts.push(verify_chain(&agent, &current, &keys, self.crypto.as_ref(), now));
                    current.clear();
                }
                current.push(record);
            }
            if done {
                break;
            }
        }
        if let Some(first) = current.first() {
            let agent = first.agent_id.clone();
            verdicts.push(verify_chain(&agent, &current, &keys, self.crypto.as_ref(), now));
        }
        Ok(verdicts)
    }

    async fn load_keys(&self, records: &[TrustRecord], keys: &mut HashMap<KeyId, SigningKey>) -> Result<()> {
        for r in records {
            if !keys.contains_key(&r.key_id)
                && let Some(k) = self.store.get_key(&r.key_id).await?
            {
                keys.insert(k.key_id.clone(), k);
            }
        }
        Ok(())
    }
}
