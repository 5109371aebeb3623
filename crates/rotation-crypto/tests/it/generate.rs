//! Secret generators.

use ring::rand::SystemRandom;
use rotation_crypto::generate::{self, Charset};

#[test]
fn random_respects_length_and_charset() {
    let rng = SystemRandom::new();
    for (charset, allowed) in [
        (Charset::Numeric, "0123456789".to_owned()),
        (Charset::Custom("ab".into()), "ab".to_owned()),
        (
            Charset::Alphanumeric,
            ('A'..='Z').chain('a'..='z').chain('0'..='9').collect(),
        ),
    ] {
        let s = generate::random(&rng, 200, &charset).unwrap();
        assert_eq!(s.len(), 200);
        assert!(s.chars().all(|c| allowed.contains(c)), "{charset:?}");
    }
    let a = generate::random(&rng, 32, &Charset::Alphanumeric).unwrap();
    let b = generate::random(&rng, 32, &Charset::Alphanumeric).unwrap();
    assert_ne!(*a, *b);
}

#[test]
fn random_is_roughly_uniform() {
    let rng = SystemRandom::new();
    let s = generate::random(&rng, 100_000, &Charset::Custom("abc".into()));
    assert!(s.is_err(), "100k exceeds the maximum length");
    let mut counts = [0usize; 10];
    for _ in 0..50 {
        for c in generate::random(&rng, 4000, &Charset::Numeric).unwrap().chars() {
            counts[c.to_digit(10).unwrap() as usize] += 1;
        }
    }
    // 200,000 draws, 20,000 expected per digit; 5 sigma is about 670.
    for c in counts {
        assert!((19_000..21_000).contains(&c), "{counts:?}");
    }
}

#[test]
fn uuid_v4_and_hex() {
    let rng = SystemRandom::new();
    let u = generate::uuid_v4(&rng).unwrap();
    let parsed = uuid::Uuid::parse_str(&u).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    let h = generate::hex(&rng, 40).unwrap();
    assert_eq!(h.len(), 40);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
}

#[test]
fn bad_parameters_are_errors() {
    let rng = SystemRandom::new();
    assert!(generate::random(&rng, 0, &Charset::Alpha).is_err());
    assert!(generate::random(&rng, 10, &Charset::Custom("a".into())).is_err());
    assert!(Charset::parse("klingon").is_err());
    assert_eq!(Charset::parse("custom:xyz").unwrap(), Charset::Custom("xyz".into()));
}
