//! Published test vectors: RFC 8032 (Ed25519) and the GCM specification's
//! AES-256 test cases.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use rotation_core::ports::CryptoProvider;
use rotation_crypto::RingCrypto;

/// RFC 8032 section 7.1, TEST 1, 2, 3 and SHA(abc).
const RFC8032: &[(&str, &str, &str, &str)] = &[
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
];

#[test]
fn rfc8032_ed25519_vectors_sign_and_verify() {
    let crypto = RingCrypto::new();
    for (secret, public, message, signature) in RFC8032 {
        let secret = hex::decode(secret).unwrap();
        let public = hex::decode(public).unwrap();
        let message = hex::decode(message).unwrap();
        let signature = hex::decode(signature).unwrap();
        let pair = Ed25519KeyPair::from_seed_and_public_key(&secret, &public).unwrap();
        assert_eq!(pair.public_key().as_ref(), public.as_slice());
        assert_eq!(pair.sign(&message).as_ref(), signature.as_slice());
        assert!(crypto.verify_ed25519(&public, &message, &signature));
        let mut bad = signature.clone();
        bad[0] ^= 1;
        assert!(!crypto.verify_ed25519(&public, &message, &bad));
        assert!(!crypto.verify_ed25519(&public[..31], &message, &signature));
    }
}

/// The GCM specification (McGrew & Viega), test cases 14 and 16 (AES-256).
#[test]
fn aes256_gcm_known_answers() {
    let cases: &[(&str, &str, &str, &str, &str, &str)] = &[
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000",
            "00000000000000000000000000000000",
            "",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];
    for (key, iv, plaintext, aad, ciphertext, tag) in cases {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &hex::decode(key).unwrap()).unwrap());
        let nonce = Nonce::try_assume_unique_for_key(&hex::decode(iv).unwrap()).unwrap();
        let mut in_out = hex::decode(plaintext).unwrap();
        let t = key
            .seal_in_place_separate_tag(nonce, Aad::from(hex::decode(aad).unwrap()), &mut in_out)
            .unwrap();
        assert_eq!(hex::encode(&in_out), *ciphertext);
        assert_eq!(hex::encode(t.as_ref()), *tag);
    }
}

#[test]
fn sha256_known_answer() {
    let crypto = RingCrypto::new();
    assert_eq!(
        hex::encode(crypto.sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
