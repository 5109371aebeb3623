//! [`RingCrypto`]: the `CryptoProvider` on ring.

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, UnparsedPublicKey};
use rotation_core::ports::{CryptoProvider, DataKey};
use rotation_core::{Error, Result};
use zeroize::Zeroizing;

use crate::sealed;

/// Stateless primitives on ring; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct RingCrypto {
    rng: SystemRandom,
}

impl Default for RingCrypto {
    fn default() -> Self {
        Self::new()
    }
}

impl RingCrypto {
    /// A provider drawing on the operating system's secure random source.
    pub fn new() -> Self {
        RingCrypto {
            rng: SystemRandom::new(),
        }
    }

    /// The secure random source.
    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }
}

impl CryptoProvider for RingCrypto {
    fn fill_random(&self, out: &mut [u8]) -> Result<()> {
        self.rng
            .fill(out)
            .map_err(|_| Error::backend("the operating system's random source failed"))
    }

    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, data);
        digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
    }

    fn verify_ed25519(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        public_key.len() == 32
            && UnparsedPublicKey::new(&ED25519, public_key)
                .verify(message, signature)
                .is_ok()
    }

    fn seal(&self, key: &DataKey, version: u32, associated_data: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        self.fill_random(&mut nonce)?;
        sealed::seal_with_nonce(key, version, nonce, associated_data, plaintext)
    }

    fn open(&self, key: &DataKey, associated_data: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        sealed::open(key, associated_data, sealed)
    }
}
