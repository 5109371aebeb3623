//! The sealed-value format: round trips, every kind of damage, and an
//! independent AES-GCM implementation opening what we seal.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rotation_core::Reason;
use rotation_core::ports::{CryptoProvider, DataKey};
use rotation_crypto::{RingCrypto, sealed};

fn key(byte: u8) -> DataKey {
    DataKey::from_bytes([byte; 32])
}

#[test]
fn round_trip_binary_and_text() {
    let crypto = RingCrypto::new();
    for len in [0usize, 1, 15, 16, 17, 64, 1000] {
        let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let s = crypto.seal(&key(7), 42, b"ring:payments/value-1", &plaintext).unwrap();
        assert_eq!(s.len(), sealed::MIN_LEN + len);
        assert_eq!(s[0], 0x01);
        assert_eq!(sealed::key_version(&s).unwrap(), 42);
        assert_eq!(
            crypto.open(&key(7), b"ring:payments/value-1", &s).unwrap().as_slice(),
            plaintext.as_slice()
        );
        let text = sealed::to_text(&s).unwrap();
        assert!(text.starts_with("rot:v42:"));
        assert!(!text.contains('='));
        assert_eq!(sealed::from_text(&text).unwrap(), s);
    }
}

#[test]
fn independent_aes_gcm_opens_the_documented_layout() {
    let crypto = RingCrypto::new();
    let s = crypto.seal(&key(3), 9, b"ad", b"hello world").unwrap();
    let (header, rest) = s.split_at(5);
    let (nonce, ct) = rest.split_at(12);
    let mut aad = header.to_vec();
    aad.extend_from_slice(b"ad");
    let cipher = Aes256Gcm::new_from_slice(&[3u8; 32]).unwrap();
    let pt = cipher
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(nonce).unwrap()),
            Payload { msg: ct, aad: &aad },
        )
        .unwrap();
    assert_eq!(pt, b"hello world");
}

#[test]
fn every_flipped_bit_wrong_key_wrong_ad_and_truncation_fail_cleanly() {
    let crypto = RingCrypto::new();
    let s = crypto.seal(&key(1), 1, b"id-1", b"secret value").unwrap();
    for i in 0..s.len() * 8 {
        let mut damaged = s.clone();
        damaged[i / 8] ^= 1 << (i % 8);
        let err = crypto.open(&key(1), b"id-1", &damaged).unwrap_err();
        assert_eq!(err.reason, Reason::Tampered, "bit {i}");
    }
    assert_eq!(crypto.open(&key(2), b"id-1", &s).unwrap_err().reason, Reason::Tampered);
    assert_eq!(crypto.open(&key(1), b"id-2", &s).unwrap_err().reason, Reason::Tampered);
    for len in 0..s.len() {
        assert_eq!(
            crypto.open(&key(1), b"id-1", &s[..len]).unwrap_err().reason,
            Reason::Tampered
        );
    }
    let mut longer = s.clone();
    longer.push(0);
    assert!(crypto.open(&key(1), b"id-1", &longer).is_err());
}

#[test]
fn text_form_rejects_garbage_and_mismatched_versions() {
    let crypto = RingCrypto::new();
    let s = crypto.seal(&key(1), 5, b"", b"x").unwrap();
    let text = sealed::to_text(&s).unwrap();
    assert!(sealed::from_text(&text.replace("rot:v5:", "rot:v6:")).is_err());
    for bad in ["", "rot:", "rot:v1", "rot:vx:AAAA", "rot:v1:***", "nope:v1:AAAA"] {
        assert!(sealed::from_text(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn data_key_debug_is_redacted() {
    let k = key(0xab);
    let shown = format!("{k:?}");
    assert!(
        !shown.contains("171") && !shown.to_lowercase().contains("ab, "),
        "{shown}"
    );
    assert!(shown.contains("redacted"));
}
