//! Organisational authorities and their Ed25519 signing keys (seed 000).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AuthorityId, KeyId, RotationId};
use crate::time::Timestamp;

/// Default rotation period of an authority, in days.
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 90;
/// Default grace period of a rotated key, in hours.
pub const DEFAULT_GRACE_PERIOD_HOURS: u32 = 24;

/// An organisational authority: it signs trust-chain records with its
/// current key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// Stable id, e.g. `org-acme`.
    pub id: AuthorityId,
    /// Display name.
    pub name: String,
    /// How often the key should rotate, in days.
    pub rotation_period_days: u32,
    /// Default grace period of the previous key after a rotation, in hours.
    pub grace_period_hours: u32,
    /// The key that signs new records.
    pub current_key_id: KeyId,
    /// When the authority was created.
    pub created_at: Timestamp,
    /// When the current key became current (creation or last rotation).
    pub last_rotated_at: Option<Timestamp>,
    /// Publish the next key in the JWKS this many hours before the
    /// rotation due at the end of the rotation period (0: off).
    #[serde(default)]
    pub prepublish_hours: u32,
}

/// Stored lifecycle state of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Created by a rotation that has not promoted it yet.
    Pending,
    /// The authority's current key.
    Active,
    /// Replaced; still accepted until its `grace_until`.
    Grace,
    /// No longer accepted.
    Revoked,
}

impl KeyState {
    /// The stable string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Grace => "grace",
            KeyState::Revoked => "revoked",
        }
    }

    /// Parses the stable string of a state.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => KeyState::Pending,
            "active" => KeyState::Active,
            "grace" => KeyState::Grace,
            "revoked" => KeyState::Revoked,
            _ => return None,
        })
    }
}

/// Where and how a private key is held, opaque to everything but the
/// custody that created it (for local custody: the PKCS#8 document sealed
/// under the KEK). `Debug` shows only the custody name and length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyRef {
    /// Name of the custody that understands `handle` (e.g. `local`).
    pub custody: String,
    /// Custody-specific handle bytes (sealed: for local custody the private
    /// key under the KEK). Serialised as base64url only for encrypted
    /// backups; operator-facing outputs use views without it.
    #[serde(with = "handle_b64")]
    pub handle: Vec<u8>,
}

mod handle_b64 {
    //! Base64url (no padding) serde for custody handles.
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        URL_SAFE_NO_PAD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for CustodyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustodyRef({}, {} bytes)", self.custody, self.handle.len())
    }
}

/// An Ed25519 signing key of an authority. The private half is only ever
/// reachable through its [`CustodyRef`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// Unique key id (the JWKS `kid`).
    pub key_id: KeyId,
    /// The owning authority.
    pub authority_id: AuthorityId,
    /// Always `Ed25519` for now.
    pub algorithm: String,
    /// The 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Stored state.
    pub state: KeyState,
    /// When the key was generated.
    pub created_at: Timestamp,
    /// When the key became current.
    pub activated_at: Option<Timestamp>,
    /// When the key stopped being current.
    pub rotated_at: Option<Timestamp>,
    /// End of the grace period (state `grace`).
    pub grace_until: Option<Timestamp>,
    /// When the key was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why the key was revoked (operator text for forced revocations).
    pub revocation_reason: Option<String>,
    /// The rotation that created this key, if any.
    pub created_by: Option<RotationId>,
    /// Custody handle of the private key.
    pub custody: CustodyRef,
}

/// The state a key presents at an instant: a grace key past its end is
/// `pending_revocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectiveKeyState {
    /// Not yet promoted.
    Pending,
    /// Current key.
    Active,
    /// Replaced, still accepted.
    Grace,
    /// Grace period over; awaiting revocation; no longer accepted.
    PendingRevocation,
    /// Revoked.
    Revoked,
}

impl EffectiveKeyState {
    /// The stable string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectiveKeyState::Pending => "pending",
            EffectiveKeyState::Active => "active",
            EffectiveKeyState::Grace => "grace",
            EffectiveKeyState::PendingRevocation => "pending_revocation",
            EffectiveKeyState::Revoked => "revoked",
        }
    }
}

impl SigningKey {
    /// The state of this key as seen at `now`.
    pub fn effective_state(&self, now: Timestamp) -> EffectiveKeyState {
        match self.state {
            KeyState::Pending => EffectiveKeyState::Pending,
            KeyState::Active => EffectiveKeyState::Active,
            KeyState::Revoked => EffectiveKeyState::Revoked,
            KeyState::Grace => match self.grace_until {
                Some(until) if now >= until => EffectiveKeyState::PendingRevocation,
                _ => EffectiveKeyState::Grace,
            },
        }
    }

    /// Whether signatures by this key are accepted at `now` (active or in grace).
    pub fn accepts_signatures(&self, now: Timestamp) -> bool {
        matches!(
            self.effective_state(now),
            EffectiveKeyState::Active | EffectiveKeyState::Grace
        )
    }
}
