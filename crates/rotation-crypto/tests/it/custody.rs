//! Local custody: keys sealed under the KEK; signatures checked with an
//! independent Ed25519 implementation (ed25519-dalek).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rotation_core::Reason;
use rotation_core::ids::KeyId;
use rotation_core::ports::KeyCustody;
use rotation_crypto::{Kek, LocalCustody, MasterSecret};
use secrecy::SecretString;

fn custody(password: &str) -> (LocalCustody, rotation_crypto::KekParams) {
    let secret = MasterSecret::Password(SecretString::from(password.to_owned()));
    // The lowest allowed Argon2id costs: these tests are about custody, not the KDF.
    let (kek, params) = Kek::create_generation(&secret, 1, rotation_crypto::Argon2Cost::LEGACY).unwrap();
    (LocalCustody::new(kek), params)
}

#[tokio::test]
async fn signatures_verify_with_dalek_in_batches_large_and_small() {
    let (custody, _) = custody("pw");
    let id = KeyId::parse("org.k-1").unwrap();
    let key = custody.create_signing_key(&id).await.unwrap();
    assert_eq!(key.custody.custody, "local");
    let vk = VerifyingKey::from_bytes(&key.public_key.clone().try_into().unwrap()).unwrap();
    for n in [1usize, 500] {
        let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("message {i}").into_bytes()).collect();
        let signatures = custody.sign(&id, &key.custody, &messages).await.unwrap();
        assert_eq!(signatures.len(), n);
        for (m, s) in messages.iter().zip(&signatures) {
            vk.verify(m, &Signature::from_slice(s).unwrap()).unwrap();
        }
    }
}

#[tokio::test]
async fn sealed_key_is_bound_to_its_id_and_kek() {
    let (custody_a, _) = custody("a");
    let (custody_b, _) = custody("b");
    let id = KeyId::parse("org.k-1").unwrap();
    let key = custody_a.create_signing_key(&id).await.unwrap();
    let msg = vec![b"m".to_vec()];
    let other = KeyId::parse("org.k-2").unwrap();
    assert_eq!(
        custody_a.sign(&other, &key.custody, &msg).await.unwrap_err().reason,
        Reason::Tampered
    );
    assert_eq!(
        custody_b.sign(&id, &key.custody, &msg).await.unwrap_err().reason,
        Reason::Tampered
    );
    // The handle is sealed: the PKCS#8 document is not in it in the clear.
    assert!(!key.custody.handle.windows(3).any(|w| w == [0x30, 0x53, 0x02]));
    assert!(format!("{:?}", key.custody).contains("bytes"));
}
