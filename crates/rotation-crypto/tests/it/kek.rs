//! KEK derivation: the right secret unlocks, a wrong one is refused.

use rotation_core::Reason;
use rotation_crypto::{Argon2Cost, Kek, KekParams, MasterSecret};
use secrecy::{SecretBox, SecretString};

fn password(p: &str) -> MasterSecret {
    MasterSecret::Password(SecretString::from(p.to_owned()))
}

#[test]
fn password_kek_unlocks_only_with_the_same_password() {
    let (kek, params) = Kek::create(&password("correct horse")).unwrap();
    assert_eq!(params.kind, "password");
    assert_eq!(
        params.argon2,
        Argon2Cost {
            m_kib: 256 * 1024,
            t: 3,
            p: 1
        },
        "new stores record the default costs"
    );
    let again = Kek::unlock(&password("correct horse"), &params).unwrap();
    assert_eq!(kek.data_key().expose(), again.data_key().expose());
    let err = Kek::unlock(&password("wrong horse"), &params).unwrap_err();
    assert_eq!(err.reason, Reason::Unauthorized);
    assert!(!err.message.contains("horse"));
    let serialized = serde_json::to_string(&params).unwrap();
    assert!(!serialized.contains("correct horse"));
}

#[test]
fn key_file_kek_and_kind_mismatch() {
    let file = |b: u8| MasterSecret::KeyFile(SecretBox::new(Box::new(vec![b; 32])));
    let (_, params) = Kek::create(&file(1)).unwrap();
    assert!(Kek::unlock(&file(1), &params).is_ok());
    assert_eq!(Kek::unlock(&file(2), &params).unwrap_err().reason, Reason::Unauthorized);
    assert_eq!(
        Kek::unlock(&password("x"), &params).unwrap_err().reason,
        Reason::Unauthorized
    );
}

#[test]
fn salts_differ_between_stores() {
    let (a, pa) = Kek::create(&password("same")).unwrap();
    let (b, pb) = Kek::create(&password("same")).unwrap();
    assert_ne!(pa.salt, pb.salt);
    assert_ne!(a.data_key().expose(), b.data_key().expose());
}

#[test]
fn debug_never_shows_secrets() {
    let secret = password("hunter2-password");
    let (kek, _) = Kek::create(&secret).unwrap();
    let shown = format!("{secret:?} {kek:?}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("redacted"));
}

#[test]
fn records_without_costs_open_with_the_legacy_costs() {
    // A record as stores wrote it before the costs were raised, and one
    // without the `argon2` field at all: both derive with 19 MiB, t=2.
    let (kek, params) = Kek::create_generation(&password("old store"), 1, Argon2Cost::LEGACY).unwrap();
    let mut json = serde_json::to_value(&params).unwrap();
    assert_eq!(json["argon2"], serde_json::json!({"m_kib": 19456, "t": 2, "p": 1}));
    let explicit: KekParams = serde_json::from_value(json.clone()).unwrap();
    json.as_object_mut().unwrap().remove("argon2");
    let implicit: KekParams = serde_json::from_value(json).unwrap();
    assert_eq!(implicit.argon2, Argon2Cost::LEGACY);
    for params in [explicit, implicit] {
        let again = Kek::unlock(&password("old store"), &params).unwrap();
        assert_eq!(kek.data_key().expose(), again.data_key().expose());
    }
    // The same salt with other costs is another KEK: the costs matter.
    let mut other = params.clone();
    other.argon2.t = 3;
    assert_eq!(
        Kek::unlock(&password("old store"), &other).unwrap_err().reason,
        Reason::Unauthorized
    );
}

#[test]
fn costs_parse_with_a_floor_and_a_ceiling() {
    let cost: Argon2Cost = "m=19456,t=2,p=1".parse().unwrap();
    assert_eq!(cost, Argon2Cost::LEGACY);
    let cost: Argon2Cost = " p=2, m=65536 ,t=4".parse().unwrap();
    assert_eq!(
        cost,
        Argon2Cost {
            m_kib: 65536,
            t: 4,
            p: 2
        }
    );
    assert_eq!(cost.to_string(), "m=65536,t=4,p=2");
    for bad in [
        "",
        "m=19455,t=2,p=1",
        "m=19456,t=1,p=1",
        "m=19456,t=2,p=0",
        "m=19456,t=2",
        "m=19456,t=2,p=1,p=1",
        "m=19456,t=2,x=1",
        "m=lots,t=2,p=1",
        "m=8388608,t=2,p=1",
    ] {
        let e = bad.parse::<Argon2Cost>().unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput, "{bad:?}");
    }
    let file = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![1; 32])));
    let low = Argon2Cost { m_kib: 8, t: 1, p: 1 };
    assert_eq!(
        Kek::create_generation(&file, 1, low).unwrap_err().reason,
        Reason::InvalidInput
    );
}

#[test]
fn tampered_costs_above_the_ceiling_are_refused() {
    let (_, mut params) = Kek::create_generation(&password("x"), 1, Argon2Cost::LEGACY).unwrap();
    params.argon2.m_kib = 64 * 1024 * 1024;
    assert_eq!(
        Kek::unlock(&password("x"), &params).unwrap_err().reason,
        Reason::Tampered
    );
}
