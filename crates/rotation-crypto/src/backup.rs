//! Encrypted, authenticated backups of a whole store (see docs/FORMATS.md).
//!
//! ```text
//! "ROTATION-BACKUP\n" (16 bytes) | format u32 BE (= 1) | header length u32 BE | header JSON
//! | sealed body (sealed-value format, key = HKDF-SHA256(KEK, "rotation-backup-v1"),
//!                associated data = everything before the body)
//! ```
//!
//! The header carries the store's KEK parameters (salt, costs, check value;
//! never the KEK), so a restore into an empty store derives the same KEK
//! from the master secret, and a backup made under another master key is
//! refused before anything is written.

use ring::hkdf;
use rotation_core::ports::{DataKey, Snapshot};
use rotation_core::{Error, Reason, Result};
use serde::{Deserialize, Serialize};

use crate::kek::{Kek, KekParams, MasterSecret};
use crate::sealed;

const MAGIC: &[u8; 16] = b"ROTATION-BACKUP\n";
/// Current backup format version.
pub const FORMAT: u32 = 1;

/// The clear-text header of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Format version.
    pub format: u32,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: String,
    /// The store's KEK parameters at that time.
    pub kek: KekParams,
    /// Row counts, for operators.
    pub counts: serde_json::Value,
}

fn backup_key(kek: &Kek) -> Result<DataKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rotation-backup-v1").extract(kek.data_key().expose());
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    prk.expand(&[b"backup-key"], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut()))
        .map_err(|_| Error::invalid_input("cannot derive the backup key"))?;
    Ok(DataKey::from_bytes(*out))
}

/// Seals a snapshot into backup bytes under `kek`.
pub fn seal(snapshot: &Snapshot, kek: &Kek, params: &KekParams, created_at: String) -> Result<Vec<u8>> {
    let header = BackupHeader {
        format: FORMAT,
        created_at,
        kek: params.clone(),
        counts: serde_json::json!({
            "authorities": snapshot.authorities.len(), "keys": snapshot.keys.len(),
            "records": snapshot.records.len(), "keyrings": snapshot.keyrings.len(),
            "values": snapshot.values.len(), "audit_events": snapshot.audit.len(),
        }),
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| Error::invalid_input(e.to_string()))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&(header_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&header_json);
    let body = zeroize::Zeroizing::new(serde_json::to_vec(snapshot).map_err(|e| Error::invalid_input(e.to_string()))?);
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| Error::backend("random source failed"))?;
    let sealed = sealed::seal_with_nonce(&backup_key(kek)?, kek.generation(), nonce, &out, &body)?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Reads the header of backup bytes without opening the body.
pub fn header(bytes: &[u8]) -> Result<(BackupHeader, usize)> {
    let bad = |what: &str| Error::tampered(format!("not a usable rotation backup: {what}"));
    if bytes.len() < 24 || &bytes[..16] != MAGIC {
        return Err(bad("missing the backup signature (wrong file or truncated)"));
    }
    let format = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(Error::invalid_input(format!(
            "backup format {format} is not supported by this version (expects {FORMAT})"
        )));
    }
    let len = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes")) as usize;
    let end = 24usize
        .checked_add(len)
        .filter(|e| *e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let header: BackupHeader = serde_json::from_slice(&bytes[24..end]).map_err(|_| bad("unreadable header"))?;
    Ok((header, end))
}

/// Opens backup bytes with the master secret. Truncated or modified bytes
/// are `tampered`; a backup of another master key is `unauthorized`.
pub fn open(bytes: &[u8], secret: &MasterSecret) -> Result<(BackupHeader, Snapshot)> {
    let (header, end) = header(bytes)?;
    let kek = Kek::unlock(secret, &header.kek).map_err(|e| {
        if e.reason == Reason::Unauthorized {
            Error::new(
                Reason::Unauthorized,
                "this backup was made under another master key (or the secret is wrong)",
            )
        } else {
            e
        }
    })?;
    let body = sealed::open(&backup_key(&kek)?, &bytes[..end], &bytes[end..])
        .map_err(|_| Error::tampered("the backup body does not open: modified or truncated"))?;
    let snapshot =
        serde_json::from_slice(&body).map_err(|e| Error::tampered(format!("backup body is unreadable: {e}")))?;
    Ok((header, snapshot))
}
