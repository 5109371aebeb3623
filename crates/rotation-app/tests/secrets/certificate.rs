//! Certificate renewal before expiry with the real `CertificateTarget`,
//! checked with x509-parser and, when it is installed, `openssl verify`.

use chrono::TimeDelta;
use rotation_core::ids::Target;
use rotation_core::secret::{SecretConfig, SecretType, Stage, Strategy};
use rotation_core::{Engine, engine::PutSecret};
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

use crate::support::{Env, at_stage, set_policy};

const CA: &str = "pki/ca";
const LEAF: &str = "pki/leaf";

/// The DER certificates of a PEM bundle, in order.
fn certificates(bundle: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(bundle.as_bytes())
        .map(|p| p.expect("PEM"))
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

async fn put_certificate(engine: &Engine, path: &str, policy: Option<&str>, config: SecretConfig) {
    engine
        .put_secret(PutSecret {
            path: path.into(),
            secret_type: Some(SecretType::Certificate),
            value: None,
            policy: policy.map(str::to_owned),
            config: Some(config),
            ..PutSecret::default()
        })
        .await
        .unwrap();
}

/// `openssl` on PATH, if any.
fn openssl() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("openssl"))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn a_certificate_is_renewed_within_renew_before_days_of_expiry() {
    let env = Env::new().await;
    let engine = env.engine();
    let start = engine.now();
    put_certificate(
        &engine,
        CA,
        None,
        SecretConfig {
            ca: true,
            common_name: Some("Rotation Test CA".into()),
            validity_days: Some(365),
            ..SecretConfig::default()
        },
    )
    .await;
    set_policy(&engine, "certs", |p| {
        p.strategy = Some(Strategy::Staged);
        p.verification_tests = vec!["certificate".into()];
    })
    .await;
    put_certificate(
        &engine,
        LEAF,
        Some("certs"),
        SecretConfig {
            ca_secret: Some(CA.into()),
            common_name: Some("svc.rotation.test".into()),
            validity_days: Some(30),
            renew_before_days: Some(10),
            ..SecretConfig::default()
        },
    )
    .await;
    engine
        .add_policy_schedule(Target::Secret(LEAF.into()), "certs", 0)
        .await
        .unwrap();
    let (first, first_bundle) = at_stage(&engine, LEAF, Stage::Current).await;
    assert_eq!(first.version, 1);

    // Day 5: 25 days left, more than renew_before_days: nothing happens.
    env.clock.advance(TimeDelta::days(5));
    let outcomes = engine.process_scheduled_rotations().await.unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_none()), "{outcomes:?}");
    assert_eq!(at_stage(&engine, LEAF, Stage::Current).await.0.version, 1);
    assert!(engine.secret_history(LEAF, 10).await.unwrap().is_empty());

    // Day 21: 9 days left: renewed.
    let now = start + TimeDelta::days(21);
    env.clock.set(now);
    let outcomes = engine.process_scheduled_rotations().await.unwrap();
    let renewed: Vec<_> = outcomes.iter().filter(|o| o.result.is_some()).collect();
    assert_eq!(renewed.len(), 1, "{outcomes:?}");
    assert_eq!(renewed[0].target, Target::Secret(LEAF.into()));
    let (current, bundle) = at_stage(&engine, LEAF, Stage::Current).await;
    assert_eq!(current.version, 2);
    assert_ne!(bundle, first_bundle);

    let (_, ca_bundle) = at_stage(&engine, CA, Stage::Current).await;
    let ca_der = certificates(&ca_bundle).remove(0);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    let ders = certificates(&bundle);
    assert_eq!(ders.len(), 2, "leaf, then the CA");
    assert_eq!(ders[1], ca_der, "the bundle carries the issuing CA");
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    assert_eq!(
        leaf.validity().not_before.timestamp(),
        now.timestamp(),
        "valid from the clock's time"
    );
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        (now + TimeDelta::days(30)).timestamp()
    );
    let cn = leaf.subject().iter_common_name().next().unwrap().as_str().unwrap();
    assert_eq!(cn, "svc.rotation.test");
    assert_eq!(leaf.issuer(), ca_cert.subject());
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("the leaf chains to the CA");
    let old_der = certificates(&first_bundle).remove(0);
    let (_, old_leaf) = X509Certificate::from_der(&old_der).unwrap();
    assert_ne!(leaf.serial, old_leaf.serial);
    assert_eq!(
        current.attr("not_after"),
        Some(
            (now + TimeDelta::days(30))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str()
        )
    );

    match openssl() {
        Some(openssl) => {
            let dir = tempfile::tempdir().unwrap();
            let ca_file = dir.path().join("ca.pem");
            let leaf_file = dir.path().join("leaf.pem");
            std::fs::write(&ca_file, pem(&ca_der)).unwrap();
            std::fs::write(&leaf_file, pem(&ders[0])).unwrap();
            // At the clock's time: the certificate starts in the future of the real one.
            let out = std::process::Command::new(openssl)
                .args(["verify", "-attime", &now.timestamp().to_string(), "-CAfile"])
                .arg(&ca_file)
                .arg(&leaf_file)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success() && text.contains(": OK"), "openssl verify: {text}");
        }
        None => eprintln!("openssl is not on PATH: checked with x509-parser only"),
    }
}
