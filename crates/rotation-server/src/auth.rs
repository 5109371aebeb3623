//! Bearer tokens and roles.
//!
//! A token is `rot_<id>_<secret>`: `id` is 16 hex characters, `secret` 32
//! random bytes in base64url. The store keeps, under meta `token:<id>`, the
//! token's role, times and the SHA-256 of its secret (never the secret);
//! meta `tokens` lists the ids. Checking a token hashes the presented
//! secret and compares it with the stored hash in constant time; an
//! unknown id is compared against a dummy hash, so wrong and unknown
//! tokens take the same work.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rotation_core::ports::{CryptoProvider, StateStore};
use rotation_core::time::{Clock, Timestamp, truncate};
use rotation_core::{Error, Reason, Result};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Meta key listing every token id (a JSON array).
const INDEX_META: &str = "tokens";
/// Prefix of every token.
const TOKEN_PREFIX: &str = "rot_";

/// What a token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads status, JWKS, lists, audit and reports.
    Viewer,
    /// Also rotates, schedules, revokes after grace, migrates keyrings and encrypts values.
    Operator,
    /// Also manages tokens and policies, force-revokes and decrypts values.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(Error::invalid_input(format!(
                "unknown role {other:?}: expected viewer, operator or admin"
            ))),
        }
    }
}

/// A stored token (meta `token:<id>`).
#[derive(Clone, Serialize, Deserialize)]
struct StoredToken {
    id: String,
    role: Role,
    /// Hex SHA-256 of the secret part.
    hash: String,
    description: Option<String>,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

/// A token as shown: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Id (the audit actor is `token:<id>`).
    pub id: String,
    /// Role.
    pub role: Role,
    /// Free text given at creation.
    pub description: Option<String>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Expiry, if any.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// Revocation time, if revoked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl From<&StoredToken> for TokenInfo {
    fn from(t: &StoredToken) -> Self {
        TokenInfo {
            id: t.id.clone(),
            role: t.role,
            description: t.description.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's id.
    pub token_id: String,
    /// The token's role.
    pub role: Role,
}

impl Caller {
    /// The audit actor of this caller: `token:<id>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }

    /// `forbidden` unless this caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::new(
                Reason::Forbidden,
                format!("this needs the {role} role; token {} is {}", self.token_id, self.role),
            ))
        }
    }
}

/// Token management over a store.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn StateStore>,
    crypto: Arc<dyn CryptoProvider>,
    clock: Arc<dyn Clock>,
}

fn meta_key(id: &str) -> String {
    format!("token:{id}")
}

fn corrupt(what: &str) -> Error {
    Error::tampered(format!("stored token data ({what}) is not valid JSON"))
}

impl Tokens {
    /// Tokens kept in `store`.
    pub fn new(store: Arc<dyn StateStore>, crypto: Arc<dyn CryptoProvider>, clock: Arc<dyn Clock>) -> Self {
        Tokens { store, crypto, clock }
    }

    fn now(&self) -> Timestamp {
        truncate(self.clock.now())
    }

    async fn index(&self) -> Result<Vec<String>> {
        match self.store.get_meta(INDEX_META).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| corrupt(INDEX_META)),
            None => Ok(Vec::new()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<StoredToken>> {
        match self.store.get_meta(&meta_key(id)).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| corrupt("token")),
            None => Ok(None),
        }
    }

    fn hash(&self, secret: &str) -> [u8; 32] {
        self.crypto.sha256(secret.as_bytes())
    }

    /// Creates a token; returns it and its secret form, which is shown once
    /// and never stored.
    pub async fn create(
        &self,
        role: Role,
        expires_in_days: Option<u32>,
        description: Option<String>,
    ) -> Result<(TokenInfo, SecretString)> {
        self.create_as("cli", role, expires_in_days, description).await
    }

    /// [`Tokens::create`] on behalf of `actor` (recorded in the audit log).
    pub async fn create_as(
        &self,
        actor: &str,
        role: Role,
        expires_in_days: Option<u32>,
        description: Option<String>,
    ) -> Result<(TokenInfo, SecretString)> {
        if expires_in_days == Some(0) || expires_in_days.is_some_and(|d| d > 3650) {
            return Err(Error::invalid_input("expires_in_days must be 1 to 3650"));
        }
        if let Some(d) = &description {
            // Shown in token lists and audit events: no disguised text.
            rotation_core::ids::check_visible("token description", d)?;
        }
        let mut id_bytes = [0u8; 8];
        self.crypto.fill_random(&mut id_bytes)?;
        let id = hex::encode(id_bytes);
        let mut secret_bytes = zeroize::Zeroizing::new([0u8; 32]);
        self.crypto.fill_random(secret_bytes.as_mut())?;
        let secret = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(secret_bytes.as_ref()));
        let now = self.now();
        let stored = StoredToken {
            id: id.clone(),
            role,
            hash: hex::encode(self.hash(&secret)),
            description,
            created_at: now,
            expires_at: expires_in_days.map(|d| now + chrono::TimeDelta::days(i64::from(d))),
            revoked_at: None,
        };
        self.write(&stored, true, actor).await?;
        let token = SecretString::from(format!("{TOKEN_PREFIX}{id}_{}", secret.as_str()));
        Ok((TokenInfo::from(&stored), token))
    }

    /// Writes a token (and, when new, adds it to the index) in one
    /// transaction, with its audit event (`token_created` / `token_revoked`;
    /// never the secret).
    async fn write(&self, token: &StoredToken, new: bool, actor: &str) -> Result<()> {
        let mut tx = self.store.begin().await?;
        if new {
            // Read after `begin`: on SQLite the write lock is held, so two
            // concurrent creations cannot lose an index entry.
            let mut index = self.index().await?;
            index.push(token.id.clone());
            let index = serde_json::to_vec(&index).map_err(|e| Error::invalid_input(e.to_string()))?;
            tx.put_meta(INDEX_META, &index).await?;
        }
        let bytes = serde_json::to_vec(token).map_err(|e| Error::invalid_input(e.to_string()))?;
        tx.put_meta(&meta_key(&token.id), &bytes).await?;
        let draft = rotation_core::audit::AuditDraft {
            event: if new { "token_created" } else { "token_revoked" }.into(),
            target: rotation_core::ids::Target::Store,
            rotation_id: None,
            actor: actor.to_owned(),
            details: serde_json::json!({"token_id": token.id, "role": token.role}),
        };
        rotation_core::audit::append(tx.as_mut(), self.crypto.as_ref(), self.now(), vec![draft]).await?;
        tx.commit().await
    }

    /// Every token, in order of creation.
    pub async fn list(&self) -> Result<Vec<TokenInfo>> {
        let mut out = Vec::new();
        for id in self.index().await? {
            if let Some(t) = self.get(&id).await? {
                out.push(TokenInfo::from(&t));
            }
        }
        // Stable: tokens created at the same instant keep the index order.
        out.sort_by_key(|t| t.created_at);
        Ok(out)
    }

    /// Revokes a token; it stops working at once. Revoking twice is not an error.
    pub async fn revoke(&self, id: &str) -> Result<TokenInfo> {
        self.revoke_as("cli", id).await
    }

    /// [`Tokens::revoke`] on behalf of `actor` (recorded in the audit log).
    pub async fn revoke_as(&self, actor: &str, id: &str) -> Result<TokenInfo> {
        let mut token = self
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no token {id}")))?;
        if token.revoked_at.is_none() {
            token.revoked_at = Some(self.now());
            self.write(&token, false, actor).await?;
        }
        Ok(TokenInfo::from(&token))
    }

    /// The caller a presented token (the text after `Bearer `) belongs to;
    /// `unauthorized` when it is malformed, unknown, wrong, expired or
    /// revoked (one message for all, so callers learn nothing).
    pub async fn authenticate(&self, presented: &str) -> Result<Caller> {
        let denied = || {
            Error::new(
                Reason::Unauthorized,
                "missing, invalid, expired or revoked bearer token",
            )
        };
        let (id, secret) = presented
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, _)| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or(("0000000000000000", presented));
        let stored = self.get(id).await?;
        let presented_hash = self.hash(secret);
        let expected: [u8; 32] = stored
            .as_ref()
            .and_then(|t| hex::decode(&t.hash).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .unwrap_or([0xA5; 32]);
        let matches: bool = presented_hash.ct_eq(&expected).into();
        let token = match stored {
            Some(t) if matches => t,
            _ => return Err(denied()),
        };
        let now = self.now();
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|e| e <= now) {
            return Err(denied());
        }
        Ok(Caller {
            token_id: token.id,
            role: token.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use rotation_core::ports::DataKey;
    use rotation_crypto::RingCrypto;
    use rotation_testkit::{MemoryStore, SettableClock};
    use zeroize::Zeroizing;

    use super::*;

    /// A crypto provider that records the length of every input it hashes.
    #[derive(Default)]
    struct CountingCrypto {
        inner: RingCrypto,
        hashed: Mutex<Vec<usize>>,
    }

    impl CountingCrypto {
        fn take(&self) -> Vec<usize> {
            std::mem::take(&mut *self.hashed.lock().unwrap())
        }
    }

    impl CryptoProvider for CountingCrypto {
        fn fill_random(&self, out: &mut [u8]) -> Result<()> {
            self.inner.fill_random(out)
        }
        fn sha256(&self, data: &[u8]) -> [u8; 32] {
            self.hashed.lock().unwrap().push(data.len());
            self.inner.sha256(data)
        }
        fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> [u8; 32] {
            self.inner.hmac_sha256(key, message)
        }
        fn verify_ed25519(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
            self.inner.verify_ed25519(public_key, message, signature)
        }
        fn seal(&self, key: &DataKey, version: u32, associated_data: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
            self.inner.seal(key, version, associated_data, plaintext)
        }
        fn open(&self, key: &DataKey, associated_data: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
            self.inner.open(key, associated_data, sealed)
        }
        fn seal_batch(&self, key: &DataKey, version: u32, items: &[(&[u8], &[u8])]) -> Result<Vec<Vec<u8>>> {
            self.inner.seal_batch(key, version, items)
        }
        fn reseal_batch(
            &self,
            keys: &HashMap<u32, DataKey>,
            to_version: u32,
            to_key: &DataKey,
            items: &[(&[u8], &[u8])],
        ) -> Result<Vec<Result<Vec<u8>>>> {
            self.inner.reseal_batch(keys, to_version, to_key, items)
        }
    }

    /// Wrong and unknown tokens take the same path: exactly one hash of the
    /// presented secret and one constant-time comparison (against a dummy
    /// hash for an unknown id), then the same refusal. Structural, so it
    /// cannot be flaky on a loaded machine; `tests/it/auth.rs` adds a
    /// timing check with a generous bound.
    #[tokio::test]
    async fn wrong_and_unknown_tokens_do_the_same_work() {
        use secrecy::ExposeSecret as _;
        let crypto = Arc::new(CountingCrypto::default());
        let clock = Arc::new(SettableClock::new(truncate(chrono::Utc::now())));
        let tokens = Tokens::new(MemoryStore::new_shared(), crypto.clone(), clock);
        let (info, good) = tokens.create(Role::Viewer, None, None).await.unwrap();
        let good = good.expose_secret().to_owned();
        crypto.take();

        let secret = &good[TOKEN_PREFIX.len() + 17..];
        let wrong_secret = format!("{TOKEN_PREFIX}{}_{}", info.id, "B".repeat(secret.len()));
        let unknown_id = format!("{TOKEN_PREFIX}{}_{secret}", "0123456789abcdef");
        let mut seen = Vec::new();
        for presented in [&wrong_secret, &unknown_id] {
            let e = tokens.authenticate(presented).await.unwrap_err();
            assert_eq!(e.reason, Reason::Unauthorized);
            assert_eq!(e.message, "missing, invalid, expired or revoked bearer token");
            seen.push(crypto.take());
        }
        assert_eq!(seen[0], vec![secret.len()], "a wrong secret: one hash of the secret");
        assert_eq!(seen[1], seen[0], "an unknown id: the same single hash");
        // Malformed tokens are hashed too (whole), never short-circuited.
        assert!(tokens.authenticate("hello").await.is_err());
        assert_eq!(crypto.take(), vec![5]);
        // The right token: also exactly one hash.
        assert_eq!(tokens.authenticate(&good).await.unwrap().token_id, info.id);
        assert_eq!(crypto.take(), vec![secret.len()]);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        let viewer = Caller {
            token_id: "x".into(),
            role: Role::Viewer,
        };
        assert_eq!(viewer.require(Role::Operator).unwrap_err().reason, Reason::Forbidden);
        assert!(viewer.require(Role::Viewer).is_ok());
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
