//! Trust chains (seed 000): per agent a genesis record, capability
//! attestations and delegation records, each signed by an authority key
//! over `"rotation-record-v1\n" || JCS(body)`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::authority::{EffectiveKeyState, SigningKey};
use crate::canonical::record_signing_bytes;
use crate::error::{Error, Result};
use crate::ids::{AgentId, AuthorityId, KeyId, RotationId};
use crate::ports::CryptoProvider;
use crate::time::{Timestamp, rfc3339};

/// The kind of a trust-chain record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The agent's root record: the authority vouches for the agent.
    Genesis,
    /// The authority attests that the agent holds a capability.
    Capability,
    /// The authority (as delegator) delegates capabilities to another agent.
    Delegation,
}

impl RecordKind {
    /// The stable string of this kind (the body's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Genesis => "genesis",
            RecordKind::Capability => "capability",
            RecordKind::Delegation => "delegation",
        }
    }

    /// Parses the stable string of a kind.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "genesis" => RecordKind::Genesis,
            "capability" => RecordKind::Capability,
            "delegation" => RecordKind::Delegation,
            _ => return None,
        })
    }
}

/// One signed record of an agent's trust chain.
///
/// `body` is the signed JSON object; it repeats `record_id`, `agent_id`,
/// `authority_id`, `key_id` and `type`, so a signature binds all of them
/// and cannot be moved to another record or attributed to another key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// Unique record id (UUID v7).
    pub id: uuid::Uuid,
    /// The agent whose chain this record belongs to.
    pub agent_id: AgentId,
    /// The signing authority.
    pub authority_id: AuthorityId,
    /// Record kind.
    pub kind: RecordKind,
    /// The signed JSON object.
    pub body: Value,
    /// Key that made `signature`.
    pub key_id: KeyId,
    /// Ed25519 signature over [`record_signing_bytes`] of `body`.
    pub signature: Vec<u8>,
    /// When the record was first issued.
    pub issued_at: Timestamp,
    /// When the current signature was made.
    pub signed_at: Timestamp,
    /// The rotation that last re-signed the record, if any.
    pub resigned_by: Option<RotationId>,
}

/// What a new record should say, before it is signed.
#[derive(Debug, Clone)]
pub struct RecordDraft {
    /// Record kind.
    pub kind: RecordKind,
    /// Capability (for `capability`) or delegated capabilities (for `delegation`).
    pub capabilities: Vec<String>,
    /// The delegatee (for `delegation`).
    pub delegate_to: Option<AgentId>,
}

/// Builds the body of a new record.
pub fn new_body(
    id: uuid::Uuid,
    agent: &AgentId,
    authority: &AuthorityId,
    key: &KeyId,
    draft: &RecordDraft,
    issued_at: Timestamp,
) -> Value {
    let mut body = json!({
        "type": draft.kind.as_str(),
        "record_id": id.to_string(),
        "agent_id": agent.as_str(),
        "authority_id": authority.as_str(),
        "key_id": key.as_str(),
        "issued_at": rfc3339(issued_at),
        "signed_at": rfc3339(issued_at),
    });
    let obj = body.as_object_mut().expect("literal object");
    match draft.kind {
        RecordKind::Genesis => {}
        RecordKind::Capability => {
            obj.insert(
                "capability".into(),
                Value::String(draft.capabilities.first().cloned().unwrap_or_default()),
            );
        }
        RecordKind::Delegation => {
            obj.insert("delegator".into(), Value::String(authority.to_string()));
            obj.insert(
                "delegatee".into(),
                Value::String(draft.delegate_to.as_ref().map(ToString::to_string).unwrap_or_default()),
            );
            obj.insert("capabilities".into(), json!(draft.capabilities));
        }
    }
    body
}

/// The body of `record` re-targeted at `key` and signed at `at`, ready to
/// be signed again. Everything else is kept.
pub fn resigned_body(record: &TrustRecord, key: &KeyId, at: Timestamp) -> Value {
    let mut body = record.body.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("key_id".into(), Value::String(key.to_string()));
        obj.insert("signed_at".into(), Value::String(rfc3339(at)));
    }
    body
}

/// The result of verifying one agent's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainVerdict {
    /// The agent whose chain was checked.
    pub agent_id: AgentId,
    /// Whether every record verified.
    pub valid: bool,
    /// Number of records checked.
    pub records: usize,
    /// Why the chain is invalid: a stable code and the record concerned.
    pub reason: Option<String>,
    /// The first failing record.
    pub record_id: Option<uuid::Uuid>,
}

/// Verifies one agent's chain: exactly one genesis record; every body
/// consistent with its row; every key known, of the record's authority,
/// active or in grace at `now`; every signature valid.
///
/// Reasons: `empty_chain`, `missing_genesis`, `duplicate_genesis`,
/// `malformed_record`, `unknown_key`, `key_not_active`, `key_expired`,
/// `key_revoked`, `signature_invalid`.
pub fn verify_chain(
    agent: &AgentId,
    records: &[TrustRecord],
    keys: &HashMap<KeyId, SigningKey>,
    crypto: &dyn CryptoProvider,
    now: Timestamp,
) -> ChainVerdict {
    let verdict = |reason: Option<(&str, Option<uuid::Uuid>)>| ChainVerdict {
        agent_id: agent.clone(),
        valid: reason.is_none(),
        records: records.len(),
        reason: reason.map(|(r, _)| r.to_owned()),
        record_id: reason.and_then(|(_, id)| id),
    };
    if records.is_empty() {
        return verdict(Some(("empty_chain", None)));
    }
    let genesis = records.iter().filter(|r| r.kind == RecordKind::Genesis).count();
    if genesis == 0 {
        return verdict(Some(("missing_genesis", None)));
    }
    if genesis > 1 {
        return verdict(Some(("duplicate_genesis", None)));
    }
    for record in records {
        if let Err(code) = verify_record(agent, record, keys, crypto, now) {
            return verdict(Some((code, Some(record.id))));
        }
    }
    verdict(None)
}

fn verify_record(
    agent: &AgentId,
    record: &TrustRecord,
    keys: &HashMap<KeyId, SigningKey>,
    crypto: &dyn CryptoProvider,
    now: Timestamp,
) -> Result<(), &'static str> {
    let field = |name: &str| record.body.get(name).and_then(Value::as_str);
    let consistent = record.agent_id == *agent
        && field("record_id") == Some(record.id.to_string().as_str())
        && field("agent_id") == Some(agent.as_str())
        && field("authority_id") == Some(record.authority_id.as_str())
        && field("key_id") == Some(record.key_id.as_str())
        && field("type") == Some(record.kind.as_str());
    if !consistent {
        return Err("malformed_record");
    }
    let key = keys.get(&record.key_id).ok_or("unknown_key")?;
    if key.authority_id != record.authority_id {
        return Err("unknown_key");
    }
    match key.effective_state(now) {
        EffectiveKeyState::Active | EffectiveKeyState::Grace => {}
        EffectiveKeyState::Pending => return Err("key_not_active"),
        EffectiveKeyState::PendingRevocation => return Err("key_expired"),
        EffectiveKeyState::Revoked => return Err("key_revoked"),
    }
    let message = record_signing_bytes(&record.body).map_err(|_| "malformed_record")?;
    if crypto.verify_ed25519(&key.public_key, &message, &record.signature) {
        Ok(())
    } else {
        Err("signature_invalid")
    }
}

/// Checks the inputs of a chain issue request.
pub fn check_issue_request(capabilities: &[String], delegate_to: Option<&AgentId>) -> Result<()> {
    for c in capabilities {
        if c.is_empty() || c.len() > 256 {
            return Err(Error::invalid_input(format!(
                "invalid capability {c:?}: use 1 to 256 printable characters"
            )));
        }
        crate::ids::check_visible("capability", c)?;
    }
    if delegate_to.is_some() && capabilities.is_empty() {
        return Err(Error::invalid_input(
            "a delegation needs at least one --capability to delegate",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_reject_control_and_invisible_characters() {
        assert!(check_issue_request(&["read:x".into(), "écrire:ü".into()], None).is_ok());
        for bad in ["read\u{202e}x", "read\u{200b}", "a\nb", ""] {
            let e = check_issue_request(&[bad.to_owned()], None).unwrap_err();
            assert_eq!(e.reason, crate::Reason::InvalidInput, "{bad:?}");
        }
    }
}
