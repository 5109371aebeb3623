//! Printing results: tables for people, JSON for scripts.

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use rotation_core::authority::{EffectiveKeyState, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::time::{Timestamp, rfc3339};
use rotation_core::{Error, Result};
use serde::Serialize;

use crate::cli::Output;

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::invalid_input(format!("cannot print JSON: {e}")))?;
    line(&text)
}

/// Prints one line on stdout; a closed pipe is not an error worth a panic.
pub(crate) fn line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::backend(format!("cannot write to stdout: {e}")))
}

/// Prints `text` on stdout exactly as given (no newline added).
pub(crate) fn raw(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::backend(format!("cannot write to stdout: {e}")))
}

/// A table with the house style.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// Prints a table.
pub(crate) fn print_table(t: &Table) -> Result<()> {
    line(&t.to_string())
}

/// Key/value pairs as a two-column table, or `value` as JSON.
pub(crate) fn record<T: Serialize>(output: Output, value: &T, rows: &[(&str, String)]) -> Result<()> {
    match output {
        Output::Json => json(value),
        Output::Table => {
            let mut t = table(&["field", "value"]);
            for (k, v) in rows {
                t.add_row(vec![k.to_string(), v.clone()]);
            }
            print_table(&t)
        }
    }
}

/// `-` for a missing time, RFC 3339 otherwise.
pub(crate) fn time(t: Option<Timestamp>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".into())
}

/// A signing key as shown to operators (never the private half).
#[derive(Debug, Serialize)]
pub(crate) struct KeyView {
    pub(crate) key_id: String,
    pub(crate) algorithm: String,
    pub(crate) state: EffectiveKeyState,
    pub(crate) public_key: String,
    pub(crate) custody: String,
    pub(crate) created_at: Timestamp,
    pub(crate) activated_at: Option<Timestamp>,
    pub(crate) rotated_at: Option<Timestamp>,
    pub(crate) grace_until: Option<Timestamp>,
    pub(crate) revoked_at: Option<Timestamp>,
    pub(crate) revocation_reason: Option<String>,
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

/// A trust-chain record as printed: the signed `body`, `key_id` and the
/// base64url `signature`, enough to check it independently.
#[derive(Debug, Serialize)]
pub(crate) struct RecordView {
    pub(crate) id: String,
    pub(crate) agent_id: String,
    pub(crate) authority_id: String,
    pub(crate) kind: &'static str,
    pub(crate) key_id: String,
    pub(crate) signature: String,
    pub(crate) body: serde_json::Value,
    pub(crate) issued_at: Timestamp,
    pub(crate) signed_at: Timestamp,
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

/// Prints records.
pub(crate) fn records(output: Output, records: &[TrustRecord]) -> Result<()> {
    match output {
        Output::Json => json(&records.iter().map(RecordView::from).collect::<Vec<_>>()),
        Output::Table => {
            let mut t = table(&["agent", "kind", "record", "authority", "key", "signed at"]);
            for r in records {
                t.add_row(vec![
                    r.agent_id.to_string(),
                    r.kind.as_str().to_string(),
                    r.id.to_string(),
                    r.authority_id.to_string(),
                    r.key_id.to_string(),
                    rfc3339(r.signed_at),
                ]);
            }
            print_table(&t)
        }
    }
}
