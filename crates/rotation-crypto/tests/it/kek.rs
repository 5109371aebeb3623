//! KEK derivation: the right secret unlocks, a wrong one is refused.

use rotation_core::Reason;
use rotation_crypto::{Kek, MasterSecret};
use secrecy::{SecretBox, SecretString};

fn password(p: &str) -> MasterSecret {
    MasterSecret::Password(SecretString::from(p.to_owned()))
}

#[test]
fn password_kek_unlocks_only_with_the_same_password() {
    let (kek, params) = Kek::create(&password("correct horse")).unwrap();
    assert_eq!(params.kind, "password");
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
