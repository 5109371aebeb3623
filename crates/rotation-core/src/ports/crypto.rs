//! The crypto port: stateless primitives and the data-key type.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::error::Result;

/// A 256-bit data key. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// The raw key bytes, for the crypto adapter only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Stateless cryptographic primitives (implemented on ring by `rotation-crypto`).
///
/// Operations are synchronous: they are CPU bound and short.
pub trait CryptoProvider: Send + Sync {
    /// Fills `out` from the operating system's secure random source.
    fn fill_random(&self, out: &mut [u8]) -> Result<()>;

    /// SHA-256 of `data`.
    fn sha256(&self, data: &[u8]) -> [u8; 32];

    /// HMAC-SHA256 of `message` under `key` (RFC 2104), e.g. to sign webhook bodies.
    fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> [u8; 32];

    /// Whether `signature` is a valid Ed25519 signature of `message` by the
    /// 32-byte `public_key`. Malformed inputs are simply invalid.
    fn verify_ed25519(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool;

    /// Seals `plaintext` under `key` in the sealed-value format
    /// (`[0x01][version u32 BE][nonce 12][ciphertext || tag 16]`), binding
    /// `associated_data`.
    fn seal(&self, key: &DataKey, version: u32, associated_data: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>;

    /// Opens a sealed value; any modification, wrong key or wrong associated
    /// data is a [`crate::Reason::Tampered`] error, never a panic.
    fn open(&self, key: &DataKey, associated_data: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>>;

    /// Seals many `(associated_data, plaintext)` pairs under one key, in
    /// order, drawing all nonces with one call to the random source and
    /// spreading the work over every core.
    fn seal_batch(&self, key: &DataKey, version: u32, items: &[(&[u8], &[u8])]) -> Result<Vec<Vec<u8>>>;

    /// Re-seals many `(associated_data, sealed)` pairs: each is opened with
    /// the key of the version in its header (from `keys`) and sealed under
    /// `to_key` as `to_version`. One result per item, in order, so a value
    /// that fails to open does not stop the others. Parallel on every core.
    fn reseal_batch(
        &self,
        keys: &HashMap<u32, DataKey>,
        to_version: u32,
        to_key: &DataKey,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>>>>;
}
