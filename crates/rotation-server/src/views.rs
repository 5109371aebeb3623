//! Response shapes that differ from the core types: key material and
//! custody handles never appear, binary fields are base64url.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rotation_core::authority::{Authority, EffectiveKeyState, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::keyring::{KeyVersion, SealedValue};
use rotation_core::time::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// A signing key as shown (never the private half).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyView {
    key_id: String,
    algorithm: String,
    #[schema(value_type = String)]
    state: EffectiveKeyState,
    public_key: String,
    custody: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    activated_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    rotated_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    grace_until: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Timestamp>,
    revocation_reason: Option<String>,
}

impl KeyView {
    pub(crate) fn new(key: &SigningKey, now: Timestamp) -> Self {
        KeyView {
            key_id: key.key_id.to_string(),
            algorithm: key.algorithm.clone(),
            state: key.effective_state(now),
            public_key: URL_SAFE_NO_PAD.encode(&key.public_key),
            custody: key.custody.custody.clone(),
            created_at: key.created_at,
            activated_at: key.activated_at,
            rotated_at: key.rotated_at,
            grace_until: key.grace_until,
            revoked_at: key.revoked_at,
            revocation_reason: key.revocation_reason.clone(),
        }
    }
}

/// An authority with its keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthorityView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub(crate) authority: Authority,
    pub(crate) keys: Vec<KeyView>,
}

/// A trust-chain record: the signed `body`, `key_id` and base64url
/// `signature`, enough to check it against the JWKS.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecordView {
    id: String,
    agent_id: String,
    authority_id: String,
    kind: &'static str,
    key_id: String,
    signature: String,
    #[schema(value_type = Object)]
    body: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    issued_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    signed_at: Timestamp,
}

impl From<&TrustRecord> for RecordView {
    fn from(r: &TrustRecord) -> Self {
        RecordView {
            id: r.id.to_string(),
            agent_id: r.agent_id.to_string(),
            authority_id: r.authority_id.to_string(),
            kind: r.kind.as_str(),
            key_id: r.key_id.to_string(),
            signature: URL_SAFE_NO_PAD.encode(&r.signature),
            body: r.body.clone(),
            issued_at: r.issued_at,
            signed_at: r.signed_at,
        }
    }
}

/// A keyring version (no wrapped key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionView {
    version: u32,
    state: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    activated_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    rotated_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    retired_at: Option<Timestamp>,
    usage_count: u64,
    custody: String,
}

impl From<&KeyVersion> for VersionView {
    fn from(v: &KeyVersion) -> Self {
        VersionView {
            version: v.version,
            state: v.state.as_str(),
            created_at: v.created_at,
            activated_at: v.activated_at,
            rotated_at: v.rotated_at,
            retired_at: v.retired_at,
            usage_count: v.usage_count,
            custody: v.wrapped.custody.clone(),
        }
    }
}

/// A keyring and its versions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyringView {
    pub(crate) keyring: String,
    pub(crate) current_version: u32,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) rotated_at: Option<Timestamp>,
    pub(crate) versions: Vec<VersionView>,
}

/// A stored value without its plaintext: the sealed text form.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValueView {
    id: String,
    keyring: String,
    key_version: u32,
    sealed: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<&SealedValue> for ValueView {
    fn from(v: &SealedValue) -> Self {
        ValueView {
            id: v.id.to_string(),
            keyring: v.keyring.to_string(),
            key_version: v.key_version,
            sealed: format!("rot:v{}:{}", v.key_version, URL_SAFE_NO_PAD.encode(&v.sealed)),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A URL as non-admins see it: only its scheme and host
/// (`https://hooks.example`), since webhook and verification URLs often
/// carry a token in their path or query. Text that is not an absolute URL
/// is kept (`log`, `mailto:` recipients, test names).
pub(crate) fn scheme_and_host(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    match text.parse::<axum::http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => format!("{scheme}://{host}"),
            _ => "[hidden URL]".to_owned(),
        },
        Err(_) => "[hidden URL]".to_owned(),
    }
}

/// Hides the path, query and credentials of every webhook recipient and
/// `http:URL` verification test of `policy` ([`scheme_and_host`]).
pub(crate) fn hide_policy_urls(policy: &mut rotation_core::policy::Policy) {
    let procedure = &mut policy.procedure;
    for recipient in &mut procedure.notify {
        *recipient = scheme_and_host(recipient);
    }
    for test in &mut procedure.verification_tests {
        if let Some(url) = rotation_core::outbound::http_test_url(test) {
            *test = format!("http:{}", scheme_and_host(url));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_their_scheme_and_host() {
        assert_eq!(
            scheme_and_host("https://hooks.slack.example/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.example"
        );
        assert_eq!(
            scheme_and_host("https://user:pw@hooks.example:8443/x?token=abc"),
            "https://hooks.example"
        );
        assert_eq!(scheme_and_host("mailto:ops@example.com"), "mailto:ops@example.com");
        assert_eq!(scheme_and_host("log"), "log");
        assert_eq!(scheme_and_host("https://[bad"), "[hidden URL]");
    }
}
