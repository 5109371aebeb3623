//! [`RingCrypto`]: the `CryptoProvider` on ring.

use std::collections::HashMap;

use rayon::prelude::*;
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

    fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::sign(&key, message)
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes")
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

    fn seal_batch(&self, key: &DataKey, version: u32, items: &[(&[u8], &[u8])]) -> Result<Vec<Vec<u8>>> {
        let nonces = self.nonces(items.len())?;
        items
            .par_iter()
            .zip(nonces.par_chunks_exact(12))
            .map(|((aad, plaintext), nonce)| {
                sealed::seal_with_nonce(key, version, nonce.try_into().expect("12-byte chunk"), aad, plaintext)
            })
            .collect()
    }

    fn reseal_batch(
        &self,
        keys: &HashMap<u32, DataKey>,
        to_version: u32,
        to_key: &DataKey,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let nonces = self.nonces(items.len())?;
        Ok(items
            .par_iter()
            .zip(nonces.par_chunks_exact(12))
            .map(|((aad, old), nonce)| {
                let version = sealed::key_version(old)?;
                let key = keys.get(&version).ok_or_else(|| {
                    Error::tampered(format!("sealed under version {version}, which no longer decrypts"))
                })?;
                let plaintext = sealed::open(key, aad, old)?;
                sealed::seal_with_nonce(
                    to_key,
                    to_version,
                    nonce.try_into().expect("12-byte chunk"),
                    aad,
                    &plaintext,
                )
            })
            .collect())
    }
}

impl RingCrypto {
    /// `n` nonces from one call to the random source: most of the cost of
    /// sealing a small value is that system call, so batches share it.
    fn nonces(&self, n: usize) -> Result<Vec<u8>> {
        let mut nonces = vec![0u8; n * 12];
        self.fill_random(&mut nonces)?;
        Ok(nonces)
    }
}

#[cfg(test)]
mod hmac_tests {
    use rotation_core::ports::CryptoProvider;

    use super::RingCrypto;

    /// RFC 4231 test cases 1 and 2.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let c = RingCrypto::new();
        assert_eq!(
            hex(c.hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(c.hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
