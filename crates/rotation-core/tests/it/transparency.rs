//! The audit log as a transparency log through the engine: the audit key in
//! custody, checkpoints signed and stored, verification against a
//! checkpoint kept elsewhere, proofs that verify against signed roots.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use rotation_core::engine::NewAuthority;
use rotation_core::ids::AuthorityId;
use rotation_core::ports::StateStore;
use rotation_core::tlog::{self, Hash, note::Checkpoint, note::Note};
use rotation_core::{Engine, Reason};
use rotation_crypto::RingCrypto;
use rotation_testkit::MemoryStore;

use crate::support::Harness;

async fn add_authorities(engine: &Engine, names: &[&str]) {
    for name in names {
        engine
            .create_authority(NewAuthority {
                id: AuthorityId::parse(*name).unwrap(),
                name: None,
                rotation_period_days: None,
                grace_period_hours: Some(24),
            })
            .await
            .unwrap();
    }
}

fn unb64(s: &str) -> Hash {
    STANDARD.decode(s).unwrap().try_into().unwrap()
}

#[tokio::test]
async fn checkpoints_are_signed_extend_each_other_and_prove_every_entry() {
    let h = Harness::new();
    let engine = h.engine("t");
    let c = RingCrypto::new();
    add_authorities(&engine, &["a1", "a2"]).await;
    assert!(!engine.audit_checkpoint_is_current().await.unwrap());
    let first = engine.sign_audit_checkpoint().await.unwrap();
    assert!(first.size >= 2);
    assert!(engine.audit_checkpoint_is_current().await.unwrap());
    // Signing again without new entries returns the same note.
    assert_eq!(engine.sign_audit_checkpoint().await.unwrap(), first);
    assert_eq!(engine.latest_audit_checkpoint().await.unwrap().unwrap(), first);

    // ed25519-dalek checks the stored checkpoint with the published key.
    let vkey = engine.audit_verifier_key().await.unwrap().unwrap();
    assert!(vkey.name.starts_with("rotation-audit/"));
    let note = Note::parse(&first.checkpoint).unwrap();
    let dalek = VerifyingKey::from_bytes(&vkey.public_key).unwrap();
    let sig = &note.signatures[0];
    assert_eq!(sig.key_hash, vkey.key_hash);
    dalek
        .verify_strict(
            note.text.as_bytes(),
            &Signature::from_bytes(&sig.signature.clone().try_into().unwrap()),
        )
        .unwrap();
    let body = Checkpoint::parse(&note.text).unwrap();
    assert_eq!(body.origin, vkey.name);
    assert_eq!(body.size, first.size);

    add_authorities(&engine, &["a3", "a4", "a5"]).await;
    assert!(!engine.audit_checkpoint_is_current().await.unwrap());
    let second = engine.sign_audit_checkpoint().await.unwrap();
    assert!(second.size > first.size);

    // The incremental root equals a root computed from scratch.
    let report = engine.verify_audit_against(Some(&first.checkpoint)).await.unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.tree_size, second.size);
    assert_eq!(report.root_hash, second.root_hash);
    assert_eq!(report.checkpoints.given_size, Some(first.size));
    assert_eq!(report.checkpoints.stored_size, Some(second.size));

    // Every entry's inclusion proof and the consistency proof verify
    // against the signed roots.
    let root2 = unb64(&second.root_hash);
    for index in 0..second.size {
        let p = engine.audit_inclusion_proof(index, second.size).await.unwrap();
        assert_eq!(p.root_hash, second.root_hash);
        let proof: Vec<Hash> = p.proof.iter().map(|s| unb64(s)).collect();
        assert!(tlog::verify_inclusion(
            &c,
            index,
            second.size,
            &unb64(&p.leaf_hash),
            &proof,
            &root2
        ));
    }
    let events = engine.audit_events(1000).await.unwrap();
    let oldest = events.last().unwrap();
    assert_eq!(oldest.seq, 1);
    let p = engine.audit_inclusion_proof(0, second.size).await.unwrap();
    assert_eq!(
        unb64(&p.leaf_hash),
        tlog::leaf_hash(&c, &oldest.canonical_bytes().unwrap())
    );
    let cp = engine.audit_consistency_proof(first.size, second.size).await.unwrap();
    assert_eq!(cp.from_root, first.root_hash);
    let proof: Vec<Hash> = cp.proof.iter().map(|s| unb64(s)).collect();
    assert!(tlog::verify_consistency(
        &c,
        first.size,
        second.size,
        &unb64(&first.root_hash),
        &root2,
        &proof
    ));
    for (index, size) in [(second.size, second.size), (0, second.size + 1)] {
        let e = engine.audit_inclusion_proof(index, size).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput);
    }
    for (from, to) in [(0, 1), (3, 2), (1, second.size + 1)] {
        let e = engine.audit_consistency_proof(from, to).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput);
    }
}

#[tokio::test]
async fn a_rolled_back_copy_does_not_extend_a_later_checkpoint() {
    let h = Harness::new();
    let engine = h.engine("t");
    add_authorities(&engine, &["a1"]).await;
    engine.sign_audit_checkpoint().await.unwrap();
    let copy = h.store.snapshot().await.unwrap();
    add_authorities(&engine, &["a2", "a3"]).await;
    let later = engine.sign_audit_checkpoint().await.unwrap();

    // The old copy, restored elsewhere: consistent in itself...
    let old: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let mut tx = old.begin().await.unwrap();
    copy.restore_into(tx.as_mut()).await.unwrap();
    tx.commit().await.unwrap();
    let old_engine = h.engine_with(old.clone(), h.custody.clone(), "old");
    let report = old_engine.verify_audit().await.unwrap();
    assert!(report.valid, "{report:?}");
    // ...but not an extension of the checkpoint signed later.
    let report = old_engine.verify_audit_against(Some(&later.checkpoint)).await.unwrap();
    assert!(!report.valid);
    let b = report.first_break.unwrap();
    assert_eq!(b.problem, "checkpoint_beyond_log");
    assert_eq!(b.seq as u64, report.tree_size + 1);

    // New work on the old copy forks it: same size or longer, other root.
    add_authorities(&old_engine, &["b1", "b2", "b3", "b4"]).await;
    let report = old_engine.verify_audit_against(Some(&later.checkpoint)).await.unwrap();
    let b = report.first_break.unwrap();
    assert_eq!(b.problem, "checkpoint_root_mismatch");
    assert_eq!(b.seq as u64, later.size);
    // And the signer refuses nothing here (the fork extends its own
    // checkpoint), but the witness's checkpoint shows the fork.
    old_engine.sign_audit_checkpoint().await.unwrap();
}

#[tokio::test]
async fn signing_needs_the_custody_and_bad_checkpoints_are_invalid_input() {
    let h = Harness::new();
    let engine = h.engine("t");
    add_authorities(&engine, &["a1"]).await;
    let cp = engine.sign_audit_checkpoint().await.unwrap();
    for (text, says) in [
        ("hello\n".to_owned(), "not a valid signed note"),
        (
            cp.checkpoint.replacen("rotation-audit/", "rotation-audit/x", 1),
            "another origin",
        ),
    ] {
        let e = engine.verify_audit_against(Some(&text)).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput);
        assert!(e.message.contains(says), "{}", e.message);
    }
    // Another store's checkpoint (another key and origin).
    let other = Harness::new();
    let other_engine = other.engine("o");
    add_authorities(&other_engine, &["z"]).await;
    let foreign = other_engine.sign_audit_checkpoint().await.unwrap();
    let e = engine
        .verify_audit_against(Some(&foreign.checkpoint))
        .await
        .unwrap_err();
    assert_eq!(e.reason, Reason::InvalidInput);
}

#[derive(Default)]
struct Witness {
    got: std::sync::Mutex<Vec<(String, rotation_core::ports::Notification)>>,
}

#[async_trait::async_trait]
impl rotation_core::ports::Notifier for Witness {
    async fn notify(&self, _n: &rotation_core::ports::Notification) -> rotation_core::Result<()> {
        Ok(())
    }
    async fn deliver(&self, recipient: &str, n: &rotation_core::ports::Notification) -> rotation_core::Result<()> {
        self.got.lock().unwrap().push((recipient.to_owned(), n.clone()));
        Ok(())
    }
}

#[tokio::test]
async fn each_new_checkpoint_is_pushed_to_the_witnesses_through_the_outbox() {
    let h = Harness::new();
    let witness = Arc::new(Witness::default());
    let engine = h.engine("t").with_notifier(witness.clone());
    for bad in ["ftp://x", "https://", "not a url", "https:///path"] {
        let e = engine.set_audit_witnesses(vec![bad.into()]).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput, "{bad}");
    }
    let urls = vec![
        "https://witness.example/cp".to_owned(),
        "http://w2.example/hook".to_owned(),
    ];
    assert_eq!(engine.set_audit_witnesses(urls.clone()).await.unwrap().len(), 2);
    assert_eq!(engine.audit_witnesses().await.unwrap().len(), 2);
    let newest = engine.audit_events(1).await.unwrap();
    assert_eq!(newest[0].event, "audit_witnesses_set");
    assert_eq!(newest[0].details["witnesses"], 2);

    add_authorities(&engine, &["a1"]).await;
    let first = engine.sign_audit_checkpoint().await.unwrap();
    engine.sign_audit_checkpoint().await.unwrap(); // nothing new: nothing sent
    engine.dispatch_outbox().await.unwrap();
    let got = witness.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    for (recipient, n) in &got {
        assert!(urls.contains(recipient));
        assert_eq!(n.event, "audit_checkpoint");
        assert_eq!(n.details["checkpoint"], first.checkpoint);
        assert_eq!(n.details["size"], first.size);
    }
    add_authorities(&engine, &["a2"]).await;
    let second = engine.sign_audit_checkpoint().await.unwrap();
    engine.dispatch_outbox().await.unwrap();
    let got = witness.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].1.details["checkpoint"], second.checkpoint);
}
