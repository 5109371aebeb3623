//! Signed notes and checkpoints: the published Go `sumdb/note` example
//! (golang.org/x/mod), a checkpoint signed by the local custody and checked
//! by ed25519-dalek, and each kind of bad input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rotation_core::ids::KeyId;
use rotation_core::ports::KeyCustody;
use rotation_core::tlog::note::{Checkpoint, Note, VerifierKey, open_checkpoint, signed_checkpoint};
use rotation_crypto::RingCrypto;

use crate::support::Harness;

const GO_VERIFIER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SIGNER_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNATURE_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn the_published_go_note_example() {
    let c = RingCrypto::new();
    let key = VerifierKey::parse(&c, GO_VERIFIER_KEY).unwrap();
    assert_eq!(key.name, "PeterNeumann");
    assert_eq!(key.to_string(), GO_VERIFIER_KEY);
    let note_text = format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}");
    let note = Note::parse(&note_text).unwrap();
    assert_eq!(note.text, GO_TEXT);
    assert!(note.is_signed_by(&c, &key));
    let changed = Note::parse(&note_text.replace("cryptography", "cryptographY")).unwrap();
    assert!(!changed.is_signed_by(&c, &key));

    // Ed25519 is deterministic: signing the text with the published private
    // key (an independent implementation) gives the published line.
    let seed = STANDARD.decode(GO_SIGNER_SEED).unwrap();
    assert_eq!(seed[0], 0x01);
    let signing = SigningKey::from_bytes(&seed[1..].try_into().unwrap());
    assert_eq!(signing.verifying_key().to_bytes(), key.public_key);
    let sig = signing.sign(GO_TEXT.as_bytes());
    assert_eq!(key.signature_line(&sig.to_bytes()), GO_SIGNATURE_LINE);

    // A key hash that does not match, or a mangled key, is refused.
    assert!(VerifierKey::parse(&c, &GO_VERIFIER_KEY.replace("c74f20a3", "c74f20a4")).is_err());
    assert!(VerifierKey::parse(&c, "PeterNeumann+c74f20a3").is_err());
}

#[test]
fn checkpoint_bodies_round_trip() {
    let cp = Checkpoint {
        origin: "rotation-audit/0123".into(),
        size: 42,
        root: [7; 32],
        extensions: vec![],
    };
    let body = cp.body();
    assert_eq!(
        body,
        format!("rotation-audit/0123\n42\n{}\n", STANDARD.encode([7u8; 32]))
    );
    assert_eq!(Checkpoint::parse(&body).unwrap(), cp);
    for bad in [
        "",
        "origin\n",
        "origin\n012\nAAAA\n",
        "origin\n1\nAAAA\n",
        "origin\n-1\n",
        "o\n1\nroot",
    ] {
        assert_eq!(
            Checkpoint::parse(bad).unwrap_err().reason.as_str(),
            "invalid_input",
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_signed_by_the_custody_verifies_with_ed25519_dalek() {
    let h = Harness::new();
    let c = RingCrypto::new();
    let key_id = KeyId::parse("rotation.audit.test").unwrap();
    let new = h.custody.create_signing_key(&key_id).await.unwrap();
    let origin = "rotation-audit/test";
    let vkey = VerifierKey::new(&c, origin, &new.public_key).unwrap();
    let cp = Checkpoint {
        origin: origin.into(),
        size: 3,
        root: [1; 32],
        extensions: vec![],
    };
    let sig = h
        .custody
        .sign(&key_id, &new.custody, &[cp.body().into_bytes()])
        .await
        .unwrap()
        .remove(0);
    let text = signed_checkpoint(&vkey, &cp, &sig);
    assert_eq!(open_checkpoint(&c, &vkey, &text).unwrap(), cp);

    // Independently: split the note by hand and verify with ed25519-dalek.
    let (body, sigline) = text.rsplit_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let blob = sigline
        .strip_prefix("\u{2014} rotation-audit/test ")
        .unwrap()
        .trim_end();
    let blob = STANDARD.decode(blob).unwrap();
    assert_eq!(blob.len(), 68);
    let dalek = VerifyingKey::from_bytes(&new.public_key.clone().try_into().unwrap()).unwrap();
    let signature = Signature::from_bytes(&blob[4..].try_into().unwrap());
    dalek.verify(body.as_bytes(), &signature).unwrap();
    dalek.verify_strict(body.as_bytes(), &signature).unwrap();

    // Bad input, each named.
    let err = |input: &str, key: &VerifierKey| open_checkpoint(&c, key, input).unwrap_err();
    let e = err("just some text\n", &vkey);
    assert_eq!(e.reason.as_str(), "invalid_input");
    assert!(e.message.contains("not a valid signed note"), "{}", e.message);
    let e = err(&text.replace(origin, "rotation-audit/other"), &vkey);
    assert!(
        e.message.contains("not a valid signed note") || e.message.contains("another origin"),
        "{}",
        e.message
    );
    let other_origin = Checkpoint {
        origin: "rotation-audit/other".into(),
        ..cp.clone()
    };
    let e = err(&signed_checkpoint(&vkey, &other_origin, &sig), &vkey);
    assert!(e.message.contains("another origin"), "{}", e.message);
    let other = SigningKey::from_bytes(&[5; 32]);
    let other_key = VerifierKey::new(&c, origin, &other.verifying_key().to_bytes()).unwrap();
    let forged = signed_checkpoint(&other_key, &cp, &other.sign(cp.body().as_bytes()).to_bytes());
    let e = err(&forged, &vkey);
    assert_eq!(e.reason.as_str(), "invalid_input");
    assert!(e.message.contains("signed by another key"), "{}", e.message);
    // The same key name and hash with a bad signature is refused too.
    let mut bad_sig = sig.clone();
    bad_sig[0] ^= 1;
    let e = err(&signed_checkpoint(&vkey, &cp, &bad_sig), &vkey);
    assert!(e.message.contains("signed by another key"), "{}", e.message);
}
