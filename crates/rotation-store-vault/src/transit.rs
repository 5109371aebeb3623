//! [`VaultTransitCustody`]: the [`KeyCustody`] port over a Transit mount.
//! Private keys never leave the server: it creates them, signs with them,
//! and wraps and unwraps data keys.
//!
//! # Mapping
//!
//! - **Signing keys**: one transit key of type `ed25519` per key id, named
//!   `rotation-sign-<key id>` with `_` written `_u` and `:` written `_c`
//!   (transit names allow neither `:` nor every id character). Our key
//!   ids are the rotation unit, so each transit key has exactly version 1;
//!   a rotation creates a new transit key rather than a new version, and
//!   the stored [`CustodyRef`] handle is `{"key": <name>, "version": 1}`
//!   (JSON), so signing is pinned to that version. The public key comes
//!   from the key's metadata (`GET <mount>/keys/<name>`). A rolled-back
//!   key is deleted (`deletion_allowed`, then `DELETE`), and so is a key
//!   being revoked (after its grace period, or forced): from then on the
//!   server cannot sign with it. Deletion rather than
//!   `min_encryption_version`: with one version per transit key, raising
//!   the minimum would need a second, signing-capable version. The public
//!   key stays in our store, and verification never asks the server.
//! - **Signing** is `POST <mount>/sign/<name>` with `batch_input`, at most
//!   [`SIGN_BATCH`] items per request (OpenBao's default listener refuses a
//!   JSON body with more than 1,000 strings, `max_request_json_strings`),
//!   up to [`SIGN_CONCURRENCY`] requests in flight. Ed25519 is
//!   deterministic, so a retried request gives the same signatures.
//! - **Data keys** are wrapped by one `aes256-gcm96` transit key
//!   `rotation-wrap`, created with `derived: true`; the derivation context
//!   is `keyring:<name>:v<version>`, so a wrapped key moved to another
//!   keyring or version does not unwrap (`tampered`). New keys come from
//!   `datakey/plaintext` (one request returns the key and its wrapping),
//!   imported keys are `encrypt`ed, stored ones `decrypt`ed, and `rewrap`
//!   moves a handle to the newest version of the wrapping key (after an
//!   operator rotates it in Vault). Handles are the ciphertext
//!   (`vault:vN:...`).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rotation_core::authority::CustodyRef;
use rotation_core::error::{Error, Reason, Result};
use rotation_core::ids::{KeyId, KeyringName};
use rotation_core::ports::{DataKey, KeyCustody, NewSigningKey, WrapContext};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::client::{Retry, VaultClient};

/// Name stored in every [`CustodyRef`] this custody creates.
pub const TRANSIT_CUSTODY: &str = "vault-transit";
/// Items per `sign` request (2 JSON strings each, under OpenBao's default
/// limit of 1,000 strings per request).
pub const SIGN_BATCH: usize = 400;
/// `sign` requests in flight at once for one batch.
pub const SIGN_CONCURRENCY: usize = 4;
/// Name of the transit key wrapping data keys.
const WRAP_KEY: &str = "rotation-wrap";

/// [`KeyCustody`] over a Vault/OpenBao Transit mount (see the module docs).
#[derive(Debug, Clone)]
pub struct VaultTransitCustody {
    client: Arc<VaultClient>,
    mount: String,
    wrap_ready: Arc<OnceCell<()>>,
}

/// The transit key name of a key id (see the module docs).
pub fn transit_key_name(key_id: &KeyId) -> String {
    let mut name = String::from("rotation-sign-");
    for c in key_id.as_str().chars() {
        match c {
            '_' => name.push_str("_u"),
            ':' => name.push_str("_c"),
            c => name.push(c),
        }
    }
    name
}

fn wrap_context(keyring: &KeyringName, version: u32) -> String {
    STANDARD.encode(format!("keyring:{keyring}:v{version}"))
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

impl VaultTransitCustody {
    /// A custody on the transit mount `mount` (e.g. `transit`).
    pub fn new(client: Arc<VaultClient>, mount: &str) -> Result<Self> {
        let mount = mount.trim_matches('/');
        if mount.is_empty() || rotation_core::secret::check_path(mount).is_err() {
            return Err(Error::invalid_input(format!("invalid vault transit mount {mount:?}")));
        }
        Ok(VaultTransitCustody {
            client,
            mount: mount.to_owned(),
            wrap_ready: Arc::new(OnceCell::new()),
        })
    }

    fn handle_name(&self, key_id: &KeyId, key: &CustodyRef) -> Result<String> {
        if key.custody != TRANSIT_CUSTODY {
            return Err(Error::invalid_input(format!(
                "key {key_id} is held by custody {:?}, not {TRANSIT_CUSTODY:?}",
                key.custody
            )));
        }
        let handle: Value = serde_json::from_slice(&key.handle)
            .map_err(|_| Error::tampered(format!("the transit handle of {key_id} is not JSON")))?;
        let name = handle
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::tampered(format!("the transit handle of {key_id} names no key")))?;
        if name != transit_key_name(key_id) {
            return Err(Error::tampered(format!(
                "the transit handle of {key_id} names another key ({name})"
            )));
        }
        Ok(name.to_owned())
    }

    /// Deletes a signing key from the server (`deletion_allowed`, then
    /// `DELETE`); a key that is already gone is fine.
    async fn delete_key(&self, name: &str) -> Result<()> {
        let config = format!("{}/keys/{name}/config", self.mount);
        match self
            .client
            .write(&config, &json!({"deletion_allowed": true}), Retry::Safe)
            .await
        {
            Ok(_) => {}
            // "no existing key named ... could be found": already gone.
            Err(e) if e.reason == Reason::InvalidInput && e.message.contains("no existing key") => return Ok(()),
            Err(e) => return Err(e),
        }
        self.client.delete(&format!("{}/keys/{name}", self.mount)).await
    }

    async fn ensure_wrap_key(&self) -> Result<()> {
        self.wrap_ready
            .get_or_try_init(|| async {
                self.client
                    .write(
                        &format!("{}/keys/{WRAP_KEY}", self.mount),
                        &json!({"type": "aes256-gcm96", "derived": true}),
                        Retry::Safe,
                    )
                    .await?
                    .ok_or_else(|| Error::not_found(format!("vault transit mount {:?} not found", self.mount)))?;
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    fn data_key_from_b64(text: &str, what: &str) -> Result<DataKey> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .map_err(|_| Error::tampered(format!("{what}: the plaintext is not base64")))?,
        );
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::tampered(format!("{what}: the data key is not 32 bytes")))?;
        Ok(DataKey::from_bytes(bytes))
    }

    fn wrapped(ciphertext: &str) -> CustodyRef {
        CustodyRef {
            custody: TRANSIT_CUSTODY.into(),
            handle: ciphertext.as_bytes().to_vec(),
        }
    }

    async fn sign_chunk(client: Arc<VaultClient>, path: String, chunk: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        let batch: Vec<Value> = chunk.iter().map(|m| json!({"input": b64(m)})).collect();
        let answer = client
            .write(&path, &json!({"batch_input": batch, "key_version": 1}), Retry::Safe)
            .await?
            .ok_or_else(|| Error::not_found(format!("vault: {path} not found")))?;
        let results = answer
            .pointer("/data/batch_results")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::backend(format!("vault {path}: no batch_results")))?;
        if results.len() != chunk.len() {
            return Err(Error::backend(format!(
                "vault {path}: {} results for {} inputs",
                results.len(),
                chunk.len()
            )));
        }
        results
            .iter()
            .map(|r| {
                if let Some(e) = r.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                    return Err(Error::new(Reason::RotationFailed, format!("vault {path}: {e}")));
                }
                let sig = r
                    .get("signature")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::backend(format!("vault {path}: a result has no signature")))?;
                let encoded = sig.rsplit(':').next().unwrap_or(sig);
                let bytes = STANDARD
                    .decode(encoded)
                    .map_err(|_| Error::backend(format!("vault {path}: a signature is not base64")))?;
                if bytes.len() != 64 {
                    return Err(Error::backend(format!("vault {path}: a signature is not 64 bytes")));
                }
                Ok(bytes)
            })
            .collect()
    }
}

#[async_trait]
impl KeyCustody for VaultTransitCustody {
    fn name(&self) -> &str {
        TRANSIT_CUSTODY
    }

    async fn create_signing_key(&self, key_id: &KeyId) -> Result<NewSigningKey> {
        let name = transit_key_name(key_id);
        let path = format!("{}/keys/{name}", self.mount);
        // Creating an existing key changes nothing: a resumed rotation gets the same key.
        self.client
            .write(&path, &json!({"type": "ed25519"}), Retry::Safe)
            .await?
            .ok_or_else(|| Error::not_found(format!("vault transit mount {:?} not found", self.mount)))?;
        let info = self
            .client
            .read(&path)
            .await?
            .ok_or_else(|| Error::not_found(format!("vault: transit key {name} vanished after its creation")))?;
        if info.pointer("/data/type").and_then(Value::as_str) != Some("ed25519") {
            return Err(Error::new(
                Reason::AlreadyExists,
                format!("vault: transit key {name} exists and is not ed25519"),
            ));
        }
        let public = info
            .pointer("/data/keys/1/public_key")
            .and_then(Value::as_str)
            .and_then(|p| STANDARD.decode(p).ok())
            .filter(|p| p.len() == 32)
            .ok_or_else(|| Error::backend(format!("vault: transit key {name} has no 32-byte public key")))?;
        Ok(NewSigningKey {
            public_key: public,
            custody: CustodyRef {
                custody: TRANSIT_CUSTODY.into(),
                handle: serde_json::to_vec(&json!({"key": name, "version": 1})).expect("JSON"),
            },
        })
    }

    async fn sign(&self, key_id: &KeyId, key: &CustodyRef, messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let name = self.handle_name(key_id, key)?;
        let path = format!("{}/sign/{name}", self.mount);
        let mut out = Vec::with_capacity(messages.len());
        let chunks: Vec<Vec<Vec<u8>>> = messages.chunks(SIGN_BATCH).map(<[Vec<u8>]>::to_vec).collect();
        for group in chunks.chunks(SIGN_CONCURRENCY) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, chunk) in group.iter().enumerate() {
                let client = Arc::clone(&self.client);
                let (path, chunk) = (path.clone(), chunk.clone());
                tasks.spawn(async move { (i, Self::sign_chunk(client, path, chunk).await) });
            }
            let mut results: Vec<Option<Vec<Vec<u8>>>> = vec![None; group.len()];
            while let Some(joined) = tasks.join_next().await {
                let (i, result) = joined.map_err(|_| Error::new(Reason::RotationFailed, "signing task panicked"))?;
                results[i] = Some(result?);
            }
            out.extend(results.into_iter().flatten().flatten());
        }
        Ok(out)
    }

    async fn destroy_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()> {
        let name = match self.handle_name(key_id, key) {
            Ok(n) => n,
            Err(e) if e.reason == Reason::Tampered => return Err(e),
            Err(_) => return Ok(()), // another custody's key: nothing of ours to destroy
        };
        self.delete_key(&name).await
    }

    async fn retire_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()> {
        // Another custody's key is an error here: it cannot be retired from this server.
        let name = self.handle_name(key_id, key)?;
        self.delete_key(&name).await
    }

    async fn create_data_key(&self, keyring: &KeyringName, version: u32) -> Result<(DataKey, CustodyRef)> {
        self.ensure_wrap_key().await?;
        let path = format!("{}/datakey/plaintext/{WRAP_KEY}", self.mount);
        let answer = self
            .client
            .write(
                &path,
                &json!({"context": wrap_context(keyring, version), "bits": 256}),
                Retry::Safe,
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("vault: {path} not found")))?;
        let what = format!("data key of {keyring} v{version}");
        let plaintext = answer
            .pointer("/data/plaintext")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::backend(format!("vault {path}: no plaintext")))?;
        let ciphertext = answer
            .pointer("/data/ciphertext")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::backend(format!("vault {path}: no ciphertext")))?;
        Ok((Self::data_key_from_b64(plaintext, &what)?, Self::wrapped(ciphertext)))
    }

    async fn wrap_data_key(&self, keyring: &KeyringName, version: u32, key: &DataKey) -> Result<CustodyRef> {
        self.ensure_wrap_key().await?;
        let path = format!("{}/encrypt/{WRAP_KEY}", self.mount);
        let plaintext = Zeroizing::new(b64(key.expose()));
        let answer = self
            .client
            .write(
                &path,
                &json!({"plaintext": plaintext.as_str(), "context": wrap_context(keyring, version)}),
                Retry::Safe,
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("vault: {path} not found")))?;
        let ciphertext = answer
            .pointer("/data/ciphertext")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::backend(format!("vault {path}: no ciphertext")))?;
        Ok(Self::wrapped(ciphertext))
    }

    async fn unwrap_data_key(&self, keyring: &KeyringName, version: u32, wrapped: &CustodyRef) -> Result<DataKey> {
        if wrapped.custody != TRANSIT_CUSTODY {
            return Err(Error::invalid_input(format!(
                "version {version} of keyring {keyring} is held by custody {:?}, not {TRANSIT_CUSTODY:?}",
                wrapped.custody
            )));
        }
        let ciphertext = std::str::from_utf8(&wrapped.handle)
            .map_err(|_| Error::tampered(format!("data key of {keyring} v{version}: the handle is not text")))?;
        let path = format!("{}/decrypt/{WRAP_KEY}", self.mount);
        let what = format!("data key of {keyring} v{version}");
        let answer = self
            .client
            .write(
                &path,
                &json!({"ciphertext": ciphertext, "context": wrap_context(keyring, version)}),
                Retry::Safe,
            )
            .await
            .map_err(|e| {
                if e.reason == Reason::InvalidInput {
                    Error::tampered(format!("{what} does not unwrap: {}", e.message))
                } else {
                    e
                }
            })?
            .ok_or_else(|| Error::not_found(format!("vault: {path} not found")))?;
        let plaintext = answer
            .pointer("/data/plaintext")
            .and_then(Value::as_str)
            .map(|p| Zeroizing::new(p.to_owned()))
            .ok_or_else(|| Error::backend(format!("vault {path}: no plaintext")))?;
        Self::data_key_from_b64(&plaintext, &what)
    }

    async fn rewrap(&self, context: &WrapContext, handle: &CustodyRef) -> Result<Option<CustodyRef>> {
        let WrapContext::DataKey(keyring, version) = context else {
            return Ok(None); // signing keys never leave the server
        };
        if handle.custody != TRANSIT_CUSTODY {
            return Ok(None);
        }
        let Ok(ciphertext) = std::str::from_utf8(&handle.handle) else {
            return Err(Error::tampered(format!(
                "data key of {keyring} v{version}: the handle is not text"
            )));
        };
        let path = format!("{}/rewrap/{WRAP_KEY}", self.mount);
        let answer = self
            .client
            .write(
                &path,
                &json!({"ciphertext": ciphertext, "context": wrap_context(keyring, *version)}),
                Retry::Safe,
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("vault: {path} not found")))?;
        let new = answer
            .pointer("/data/ciphertext")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::backend(format!("vault {path}: no ciphertext")))?;
        let key_version = |c: &str| c.split(':').nth(1).map(str::to_owned);
        if key_version(new) == key_version(ciphertext) {
            return Ok(None);
        }
        Ok(Some(Self::wrapped(new)))
    }
}
