//! The key-encryption key (KEK): derived from the master secret and a
//! random per-store salt; the master secret itself is never stored.
//!
//! - A master **password** goes through Argon2id (memory-hard; new stores
//!   use [`Argon2Cost::DEFAULT`], 256 MiB and 3 passes, as the KEK is
//!   derived once per process; older stores keep the costs they recorded).
//! - A random **key file** is already high-entropy, so it goes through
//!   HKDF-SHA256 instead (a slow KDF adds nothing there).
//!
//! The store keeps [`KekParams`] (kind, salt, cost parameters and a check
//! value sealed under the KEK), so a wrong master secret is detected before
//! anything is changed.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rotation_core::ports::DataKey;
use rotation_core::{Error, Reason, Result};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

use crate::sealed;

/// The master secret the KEK is derived from. `Debug` never shows it.
pub enum MasterSecret {
    /// A password (Argon2id).
    Password(SecretString),
    /// The contents of a random key file (HKDF-SHA256).
    KeyFile(SecretBox<Vec<u8>>),
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterSecret::Password(_) => f.write_str("MasterSecret::Password(<redacted>)"),
            MasterSecret::KeyFile(_) => f.write_str("MasterSecret::KeyFile(<redacted>)"),
        }
    }
}

impl MasterSecret {
    /// The kind stored in [`KekParams`]: `password` or `key_file`.
    pub fn kind(&self) -> &'static str {
        match self {
            MasterSecret::Password(_) => "password",
            MasterSecret::KeyFile(_) => "key_file",
        }
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Cost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
}

impl Argon2Cost {
    /// The costs of new stores and of `master-key rotate`: 256 MiB, 3
    /// passes, 1 lane. The KEK is derived once per process, so the cost is
    /// paid once per command (about a second on a small machine), and an offline guess at
    /// a stolen store's password costs as much.
    pub const DEFAULT: Argon2Cost = Argon2Cost {
        m_kib: 256 * 1024,
        t: 3,
        p: 1,
    };

    /// The costs every store used before they were raised (OWASP's minimum
    /// for Argon2id: 19 MiB, 2 passes, 1 lane). A stored record without
    /// costs means these, and no store is created with less.
    pub const LEGACY: Argon2Cost = Argon2Cost {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };

    /// The most a stored record may ask for (4 GiB, 64 passes, 64 lanes): a
    /// tampered record must not make derivation take the machine down.
    pub const MAX: Argon2Cost = Argon2Cost {
        m_kib: 4 * 1024 * 1024,
        t: 64,
        p: 64,
    };

    fn legacy() -> Self {
        Self::LEGACY
    }

    fn within(self, low: Argon2Cost, high: Argon2Cost) -> bool {
        (low.m_kib..=high.m_kib).contains(&self.m_kib)
            && (low.t..=high.t).contains(&self.t)
            && (low.p..=high.p).contains(&self.p)
    }
}

impl Default for Argon2Cost {
    /// [`Argon2Cost::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Argon2Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={},t={},p={}", self.m_kib, self.t, self.p)
    }
}

impl std::str::FromStr for Argon2Cost {
    type Err = Error;

    /// Parses `m=<KiB>,t=<passes>,p=<lanes>` (any order, all three), e.g.
    /// `m=19456,t=2,p=1`. Costs below [`Argon2Cost::LEGACY`] or above
    /// [`Argon2Cost::MAX`] are `invalid_input`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "invalid Argon2 costs {s:?}: {why}; expected m=<KiB>,t=<passes>,p=<lanes>, e.g. {}",
                Argon2Cost::LEGACY
            ))
        };
        let (mut m, mut t, mut p) = (None, None, None);
        for part in s.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or_else(|| bad("missing '='"))?;
            let value: u32 = value.trim().parse().map_err(|_| bad("a cost is not a number"))?;
            let slot = match key.trim() {
                "m" => &mut m,
                "t" => &mut t,
                "p" => &mut p,
                _ => return Err(bad("unknown key")),
            };
            if slot.replace(value).is_some() {
                return Err(bad("a key is repeated"));
            }
        }
        let (Some(m_kib), Some(t), Some(p)) = (m, t, p) else {
            return Err(bad("m, t and p are all required"));
        };
        let cost = Argon2Cost { m_kib, t, p };
        if !cost.within(Argon2Cost::LEGACY, Argon2Cost::MAX) {
            return Err(bad(&format!(
                "costs must be at least {} and at most {}",
                Argon2Cost::LEGACY,
                Argon2Cost::MAX
            )));
        }
        Ok(cost)
    }
}

/// What the store keeps about its KEK (never the KEK or the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekParams {
    /// Layout version of this record.
    pub version: u32,
    /// `password` or `key_file`.
    pub kind: String,
    /// Random 16-byte salt, base64url.
    pub salt: String,
    /// Argon2id costs (for `password`). A record without them (written
    /// before they were stored) means [`Argon2Cost::LEGACY`].
    #[serde(default = "Argon2Cost::legacy")]
    pub argon2: Argon2Cost,
    /// KEK generation (the key version in every value sealed under it).
    pub generation: u32,
    /// A constant sealed under the KEK, base64url: proves a derived KEK is the right one.
    pub check: String,
}

const CHECK_AAD: &[u8] = b"rotation-kek-check-v1";
const CHECK_PLAINTEXT: &[u8] = b"rotation-kek-check";
const HKDF_INFO: &[u8] = b"rotation-kek-v1";

/// The key-encryption key. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct Kek {
    key: DataKey,
    generation: u32,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(generation {}, <redacted>)", self.generation)
    }
}

impl Kek {
    /// Creates parameters for a new store and the KEK they describe, with
    /// the default Argon2id costs ([`Argon2Cost::DEFAULT`]).
    pub fn create(secret: &MasterSecret) -> Result<(Kek, KekParams)> {
        Self::create_generation(secret, 1, Argon2Cost::DEFAULT)
    }

    /// Creates parameters (fresh salt, the given Argon2id costs, used for a
    /// password) for KEK generation `generation`. Costs below
    /// [`Argon2Cost::LEGACY`] or above [`Argon2Cost::MAX`] are `invalid_input`.
    pub fn create_generation(secret: &MasterSecret, generation: u32, cost: Argon2Cost) -> Result<(Kek, KekParams)> {
        if !cost.within(Argon2Cost::LEGACY, Argon2Cost::MAX) {
            return Err(Error::invalid_input(format!(
                "Argon2 costs {cost} are out of range: at least {} and at most {}",
                Argon2Cost::LEGACY,
                Argon2Cost::MAX
            )));
        }
        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        rng.fill(&mut salt)
            .map_err(|_| Error::backend("random source failed"))?;
        let mut params = KekParams {
            version: 1,
            kind: secret.kind().to_owned(),
            salt: URL_SAFE_NO_PAD.encode(salt),
            argon2: cost,
            generation,
            check: String::new(),
        };
        let kek = derive(secret, &params)?;
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce)
            .map_err(|_| Error::backend("random source failed"))?;
        let check = sealed::seal_with_nonce(&kek.key, params.generation, nonce, CHECK_AAD, CHECK_PLAINTEXT)?;
        params.check = URL_SAFE_NO_PAD.encode(check);
        Ok((kek, params))
    }

    /// Derives the KEK from `secret` and checks it against the stored check
    /// value. A wrong secret is `unauthorized`; nothing is changed.
    pub fn unlock(secret: &MasterSecret, params: &KekParams) -> Result<Kek> {
        if params.kind != secret.kind() {
            let want = if params.kind == "password" {
                "a master password (ROTATION_MASTER_PASSWORD)"
            } else {
                "the master key file (ROTATION_MASTER_KEY_FILE)"
            };
            return Err(Error::new(
                Reason::Unauthorized,
                format!("this store is protected by {want}"),
            ));
        }
        let kek = derive(secret, params)?;
        let check = URL_SAFE_NO_PAD
            .decode(&params.check)
            .map_err(|_| Error::tampered("stored KEK check value is not base64url"))?;
        sealed::open(&kek.key, CHECK_AAD, &check).map_err(|_| {
            Error::new(
                Reason::Unauthorized,
                "the master secret does not open this store (wrong password or key file); nothing was changed",
            )
        })?;
        Ok(kek)
    }

    /// The KEK generation (the key version of values sealed under it).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The key, for sealing and opening.
    pub fn data_key(&self) -> &DataKey {
        &self.key
    }
}

fn derive(secret: &MasterSecret, params: &KekParams) -> Result<Kek> {
    let salt = URL_SAFE_NO_PAD
        .decode(&params.salt)
        .map_err(|_| Error::tampered("stored KEK salt is not base64url"))?;
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    match secret {
        MasterSecret::Password(password) => {
            let cost = params.argon2;
            // A tampered record must not make derivation take the machine down.
            if !cost.within(Argon2Cost { m_kib: 0, t: 0, p: 0 }, Argon2Cost::MAX) {
                return Err(Error::tampered("stored Argon2 parameters exceed the allowed maximum"));
            }
            let argon_params = Params::new(cost.m_kib, cost.t, cost.p, Some(32))
                .map_err(|e| Error::tampered(format!("stored Argon2 parameters are invalid: {e}")))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
                .hash_password_into(password.expose_secret().as_bytes(), &salt, out.as_mut())
                .map_err(|e| Error::invalid_input(format!("cannot derive the KEK: {e}")))?;
        }
        MasterSecret::KeyFile(bytes) => {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(bytes.expose_secret());
            prk.expand(&[HKDF_INFO], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(out.as_mut()))
                .map_err(|_| Error::invalid_input("cannot derive the KEK from the key file"))?;
        }
    }
    Ok(Kek {
        key: DataKey::from_bytes(*out),
        generation: params.generation,
    })
}
