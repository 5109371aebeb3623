//! Encryption keyrings (seeds 002, 004): named, versioned AES-256-GCM data
//! keys, and the values sealed under them.

use serde::{Deserialize, Serialize};

use crate::authority::CustodyRef;
use crate::error::{Error, Result};
use crate::ids::{KeyringName, RotationId, ValueId};
use crate::time::Timestamp;

/// Prefix of keyring names reserved for the store itself: the secret
/// backend keeps secret versions in `rotation.secrets`
/// ([`crate::engine::SECRETS_KEYRING`]).
pub const RESERVED_KEYRING_PREFIX: &str = "rotation.";

/// Whether `name` is reserved for the store itself (starts with
/// [`RESERVED_KEYRING_PREFIX`]).
pub fn is_reserved_keyring(name: &KeyringName) -> bool {
    name.as_str().starts_with(RESERVED_KEYRING_PREFIX)
}

/// Checks that a keyring named by a user (CLI argument, API path or body)
/// is not one of the reserved `rotation.*` keyrings: only the secret
/// backend reads and writes those, so every user-facing keyring and value
/// operation calls this first (`invalid_input`). The engine itself does
/// not, so the secret backend keeps working.
pub fn check_user_keyring(name: &KeyringName) -> Result<()> {
    if is_reserved_keyring(name) {
        return Err(Error::invalid_input(format!(
            "the keyring name {name} is reserved for the secret backend (names starting with {RESERVED_KEYRING_PREFIX:?}); use `rotation secret` commands for secrets"
        )));
    }
    Ok(())
}

/// Encryptions under one data key before it must rotate: with random
/// 96-bit nonces, NIST SP 800-38D bounds a key to 2^32 invocations.
pub const NONCE_LIMIT: u64 = 1 << 32;

/// State of a key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Created by a rotation that has not promoted it yet.
    Pending,
    /// Used for new encryptions.
    Current,
    /// Superseded; still decrypts.
    Active,
    /// No longer decrypts; no value uses it.
    Retired,
    /// Key material deleted.
    Destroyed,
}

impl VersionState {
    /// The stable string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Current => "current",
            VersionState::Active => "active",
            VersionState::Retired => "retired",
            VersionState::Destroyed => "destroyed",
        }
    }

    /// Parses the stable string of a state.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => VersionState::Pending,
            "current" => VersionState::Current,
            "active" => VersionState::Active,
            "retired" => VersionState::Retired,
            "destroyed" => VersionState::Destroyed,
            _ => return None,
        })
    }

    /// Whether values sealed under a version in this state can be opened.
    pub fn decrypts(self) -> bool {
        matches!(self, VersionState::Current | VersionState::Active)
    }
}

/// A keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    /// Name.
    pub name: KeyringName,
    /// Version used for new encryptions.
    pub current_version: u32,
    /// When the keyring was created.
    pub created_at: Timestamp,
    /// When it last rotated.
    pub rotated_at: Option<Timestamp>,
}

/// One version of a keyring's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The keyring.
    pub keyring: KeyringName,
    /// Version number (1, 2, ...).
    pub version: u32,
    /// State.
    pub state: VersionState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it became current.
    pub activated_at: Option<Timestamp>,
    /// When a newer version replaced it.
    pub rotated_at: Option<Timestamp>,
    /// When it was retired.
    pub retired_at: Option<Timestamp>,
    /// Values sealed under it so far (encryptions, imports and migrations).
    pub usage_count: u64,
    /// The rotation that created it.
    pub created_by: Option<RotationId>,
    /// The data key, wrapped by the key custody (never stored in the clear).
    pub wrapped: CustodyRef,
}

/// A value sealed under a keyring (seed 002's `SecureValue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValue {
    /// The keyring.
    pub keyring: KeyringName,
    /// The value's id.
    pub id: ValueId,
    /// Version of the key it is sealed under (also in the sealed header).
    pub key_version: u32,
    /// Sealed bytes (docs/FORMATS.md).
    pub sealed: Vec<u8>,
    /// When first stored.
    pub created_at: Timestamp,
    /// When last written.
    pub updated_at: Timestamp,
}

/// Associated data of a stored value: binds the keyring and the value id,
/// so a sealed value copied to another record does not open.
pub fn value_aad(keyring: &KeyringName, id: &ValueId) -> Vec<u8> {
    let mut aad = b"rotation-value-v1\n".to_vec();
    aad.extend_from_slice(keyring.as_str().as_bytes());
    aad.push(b'\n');
    aad.extend_from_slice(id.as_str().as_bytes());
    aad
}

/// A value to re-seal: its id, the version it is under, and its bytes.
#[derive(Debug, Clone)]
pub struct Reseal {
    /// The value.
    pub id: ValueId,
    /// Version its stored bytes are sealed under (the update is conditional on it).
    pub from_version: u32,
    /// New sealed bytes.
    pub sealed: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn reserved_keyrings_are_refused() {
        let secrets = KeyringName::parse(crate::engine::SECRETS_KEYRING).unwrap();
        let e = check_user_keyring(&secrets).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput);
        assert!(e.message.contains("reserved for the secret backend"), "{}", e.message);
        assert!(check_user_keyring(&KeyringName::parse("rotation.other").unwrap()).is_err());
        for ok in ["payments", "rotation", "rotation-x", "rotations.x", "Rotation.secrets"] {
            assert!(
                check_user_keyring(&KeyringName::parse(ok).unwrap()).is_ok(),
                "{ok} refused"
            );
        }
    }
}
