//! The key custody port: where private keys live and how they sign.

use async_trait::async_trait;

use crate::authority::CustodyRef;
use crate::error::Result;
use crate::ids::{KeyId, KeyringName};
use crate::ports::DataKey;

/// A freshly created signing key: its public half and the custody handle
/// of its private half.
#[derive(Debug, Clone)]
pub struct NewSigningKey {
    /// 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Handle through which the custody signs with the private key.
    pub custody: CustodyRef,
}

/// What a wrapped key belongs to (it is bound into the wrapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrapContext {
    /// An authority's signing key.
    SigningKey(KeyId),
    /// A keyring's data key of one version.
    DataKey(KeyringName, u32),
}

/// Holds private keys and signs with them. Private key material never
/// leaves a custody in the clear: the local custody keeps it sealed under
/// the KEK, a Vault Transit custody keeps it in the server.
#[async_trait]
pub trait KeyCustody: Send + Sync {
    /// Name stored in every [`CustodyRef`] this custody creates (e.g. `local`).
    fn name(&self) -> &str;

    /// Creates a new Ed25519 signing key for `key_id`. Creating the same
    /// `key_id` twice is allowed (a resumed rotation does it); only the
    /// handle that gets stored is used.
    async fn create_signing_key(&self, key_id: &KeyId) -> Result<NewSigningKey>;

    /// Signs every message with the key behind `key`, in order. Batches are
    /// how trust chains are re-signed: implementations parallelise them.
    async fn sign(&self, key_id: &KeyId, key: &CustodyRef, messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;

    /// Forgets a key created by a rotation that was rolled back. Must
    /// succeed for keys that were never created or already destroyed.
    async fn destroy_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()>;

    /// Makes a key that is being revoked (its grace period over, or a
    /// forced revocation) unusable for signing; the engine calls it before
    /// the revocation commits, so a failure leaves the key in grace and the
    /// revocation can be retried. Must succeed for a key already retired.
    /// Verification is unaffected: it uses the public key kept in the store.
    /// A key held by another custody is `invalid_input`: a custody never
    /// claims to have retired a key it cannot reach.
    async fn retire_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()>;

    /// Creates a random 256-bit data key for `keyring` version `version`;
    /// returns it and its wrapped form (the only form that is stored).
    async fn create_data_key(&self, keyring: &KeyringName, version: u32) -> Result<(DataKey, CustodyRef)>;

    /// Wraps a data key supplied from outside (imported key material).
    async fn wrap_data_key(&self, keyring: &KeyringName, version: u32, key: &DataKey) -> Result<CustodyRef>;

    /// Unwraps a stored data key; a handle wrapped for another keyring or
    /// version, or under another KEK, is `tampered`.
    async fn unwrap_data_key(&self, keyring: &KeyringName, version: u32, wrapped: &CustodyRef) -> Result<DataKey>;

    /// Re-wraps a stored handle under the custody's current wrapping key
    /// (master-key rotation); `None` if it already is. Custodies whose keys
    /// never leave a server (Vault Transit) return `None`.
    async fn rewrap(&self, context: &WrapContext, handle: &CustodyRef) -> Result<Option<CustodyRef>>;
}
