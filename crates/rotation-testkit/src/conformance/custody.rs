//! The `KeyCustody` conformance suite: the behaviour every key custody
//! must have (local keys sealed under a KEK, Vault Transit, ...).
//!
//! The testkit knows no crypto library, so the caller passes an Ed25519
//! verification function (an implementation independent of the custody's):
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     custody_suite(Arc::new(MyCustody::new()), |public, message, signature| {
//!         /* ed25519-dalek verify_strict */
//!     })
//!     .await;
//! }
//! ```
//!
//! Key ids and keyring names are fresh on every run, so custodies on a
//! shared server can run the suite repeatedly and in parallel.

use std::fmt::Debug;
use std::sync::Arc;

use rotation_core::error::{Reason, Result};
use rotation_core::ids::{AuthorityId, KeyId, KeyringName};
use rotation_core::ports::{DataKey, KeyCustody, WrapContext};

/// An Ed25519 verification: `(public_key, message, signature) -> valid`.
pub type Verify = fn(&[u8], &[u8], &[u8]) -> bool;

/// Messages signed in one batch: more than any single request of a
/// server-side custody carries, so batching is exercised.
const BATCH: usize = 1_000;

/// Runs every case against `custody`, panicking with the case and the
/// operation on the first failure.
pub async fn custody_suite(custody: Arc<dyn KeyCustody>, verify: Verify) {
    let c = &*custody;
    signing_keys(c, verify).await;
    handles_are_bound_to_their_key_id(c).await;
    destroy_is_idempotent(c).await;
    data_keys(c).await;
}

#[track_caller]
fn must<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!(
            "KeyCustody conformance: {what}: unexpected error ({}): {}",
            e.reason, e.message
        ),
    }
}

#[track_caller]
fn expect_err<T: Debug>(result: Result<T>, reasons: &[Reason], what: &str) {
    match result {
        Ok(v) => panic!("KeyCustody conformance: {what}: expected an error ({reasons:?}), got Ok({v:?})"),
        Err(e) if reasons.contains(&e.reason) => {}
        Err(e) => panic!(
            "KeyCustody conformance: {what}: expected one of {reasons:?}, got {}: {}",
            e.reason, e.message
        ),
    }
}

fn fresh_key_id() -> KeyId {
    KeyId::generate(&AuthorityId::parse("conformance").expect("valid authority id"))
}

fn fresh_keyring() -> KeyringName {
    KeyringName::parse(format!("conformance-{}", uuid::Uuid::new_v4().simple())).expect("valid keyring name")
}

async fn signing_keys(c: &dyn KeyCustody, verify: Verify) {
    let id = fresh_key_id();
    let key = must(c.create_signing_key(&id).await, "create a signing key");
    assert_eq!(
        key.public_key.len(),
        32,
        "KeyCustody conformance: an Ed25519 public key has 32 bytes"
    );
    assert_eq!(
        key.custody.custody,
        c.name(),
        "KeyCustody conformance: handles carry the custody's name"
    );
    let messages: Vec<Vec<u8>> = (0..BATCH).map(|i| format!("message {i}").into_bytes()).collect();
    let signatures = must(c.sign(&id, &key.custody, &messages).await, "sign a batch");
    assert_eq!(
        signatures.len(),
        BATCH,
        "KeyCustody conformance: one signature per message"
    );
    for (i, (m, s)) in messages.iter().zip(&signatures).enumerate() {
        assert_eq!(s.len(), 64, "KeyCustody conformance: signature {i} has 64 bytes");
        assert!(
            verify(&key.public_key, m, s),
            "KeyCustody conformance: signature {i} verifies, in order"
        );
    }
    assert!(!verify(&key.public_key, b"another message", &signatures[0]));
    let one = must(
        c.sign(&id, &key.custody, &[b"single".to_vec()]).await,
        "sign one message",
    );
    assert!(verify(&key.public_key, b"single", &one[0]));
    assert!(must(c.sign(&id, &key.custody, &[]).await, "sign nothing").is_empty());
    // Creating the same key id again is allowed (a resumed rotation does it);
    // the handle it returns signs for the public key it returns.
    let again = must(c.create_signing_key(&id).await, "create the same key id again");
    let s = must(
        c.sign(&id, &again.custody, &[b"again".to_vec()]).await,
        "sign with the second handle",
    );
    assert!(verify(&again.public_key, b"again", &s[0]));
    // Two key ids are two keys.
    let other = must(c.create_signing_key(&fresh_key_id()).await, "create another key");
    assert_ne!(
        other.public_key, key.public_key,
        "KeyCustody conformance: distinct key ids get distinct keys"
    );
}

async fn handles_are_bound_to_their_key_id(c: &dyn KeyCustody) {
    let (a, b) = (fresh_key_id(), fresh_key_id());
    let key_a = must(c.create_signing_key(&a).await, "create a");
    must(c.create_signing_key(&b).await, "create b");
    expect_err(
        c.sign(&b, &key_a.custody, &[b"x".to_vec()]).await,
        &[Reason::Tampered, Reason::InvalidInput],
        "a's handle used under b's key id",
    );
    let mut foreign = key_a.custody.clone();
    foreign.custody = "some-other-custody".into();
    expect_err(
        c.sign(&a, &foreign, &[b"x".to_vec()]).await,
        &[Reason::Tampered, Reason::InvalidInput],
        "a handle of another custody",
    );
}

async fn destroy_is_idempotent(c: &dyn KeyCustody) {
    let id = fresh_key_id();
    let key = must(c.create_signing_key(&id).await, "create");
    must(c.destroy_signing_key(&id, &key.custody).await, "destroy");
    must(c.destroy_signing_key(&id, &key.custody).await, "destroy again");
}

async fn data_keys(c: &dyn KeyCustody) {
    let ring = fresh_keyring();
    let (key, wrapped) = must(c.create_data_key(&ring, 1).await, "create a data key");
    assert_eq!(wrapped.custody, c.name());
    assert_ne!(
        wrapped.handle.as_slice(),
        key.expose().as_slice(),
        "KeyCustody conformance: the handle is not the key"
    );
    let opened = must(c.unwrap_data_key(&ring, 1, &wrapped).await, "unwrap");
    assert_eq!(
        opened.expose(),
        key.expose(),
        "KeyCustody conformance: unwrap gives the created key"
    );
    let (key2, _) = must(c.create_data_key(&ring, 2).await, "create version 2");
    assert_ne!(
        key2.expose(),
        key.expose(),
        "KeyCustody conformance: data keys are random"
    );
    expect_err(
        c.unwrap_data_key(&ring, 2, &wrapped).await,
        &[Reason::Tampered],
        "v1's handle as v2",
    );
    expect_err(
        c.unwrap_data_key(&fresh_keyring(), 1, &wrapped).await,
        &[Reason::Tampered],
        "the handle under another keyring",
    );
    let imported = DataKey::from_bytes([42u8; 32]);
    let wrapped_imported = must(c.wrap_data_key(&ring, 3, &imported).await, "wrap an imported key");
    let opened = must(
        c.unwrap_data_key(&ring, 3, &wrapped_imported).await,
        "unwrap the imported key",
    );
    assert_eq!(opened.expose(), &[42u8; 32]);
    let rewrapped = must(
        c.rewrap(&WrapContext::DataKey(ring.clone(), 1), &wrapped).await,
        "rewrap a handle already under the current wrapping key",
    );
    assert!(
        rewrapped.is_none(),
        "KeyCustody conformance: nothing to rewrap under an unchanged wrapping key"
    );
}
