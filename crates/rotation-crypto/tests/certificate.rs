//! The certificate target and the `certificate` verification test: issuing
//! self-signed, CA and CA-signed certificates from the step's clock, and
//! the checks a new bundle must pass (validity, key, chain, CA).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rotation_core::ids::RotationId;
use rotation_core::ports::{CredentialTarget, Step, StepContext, StepOutput, Verifier, VersionedValue};
use rotation_core::secret::{Secret, SecretConfig, SecretType, SecretValue, SecretVersion, Stage, Strategy};
use rotation_core::{Error, Reason};
use rotation_crypto::certificate::{CertificateTarget, TEST_NAME};
use x509_parser::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + TimeDelta::microseconds(250_123)
}

fn secret(path: &str, config: SecretConfig) -> Secret {
    Secret {
        path: path.into(),
        secret_type: SecretType::Certificate,
        policy: None,
        config,
        created_at: t0(),
        updated_at: t0(),
        last_rotated_at: None,
    }
}

fn ctx(
    step: Step,
    secret: &Secret,
    pending: Option<&SecretValue>,
    refs: &[(&str, &SecretValue)],
    now: DateTime<Utc>,
) -> StepContext {
    StepContext {
        rotation_id: RotationId::generate(),
        step,
        secret: secret.clone(),
        strategy: Strategy::Staged,
        current: None,
        pending: pending.map(|v| VersionedValue {
            version: SecretVersion {
                path: secret.path.clone(),
                version: 2,
                stages: vec![Stage::Pending],
                created_at: now,
                attributes: BTreeMap::new(),
            },
            value: v.clone(),
        }),
        previous: None,
        references: refs.iter().map(|(p, v)| ((*p).to_owned(), (*v).clone())).collect(),
        slot: None,
        now,
    }
}

async fn create(secret: &Secret, refs: &[(&str, &SecretValue)], now: DateTime<Utc>) -> (SecretValue, StepOutput) {
    let mut out = CertificateTarget
        .run(&ctx(Step::Create, secret, None, refs, now))
        .await
        .expect("create");
    let value = out.value.take().expect("create returns the PEM bundle");
    assert!(!out.log.contains("PRIVATE KEY"), "{}", out.log);
    (value, out)
}

async fn test_step(
    secret: &Secret,
    value: &SecretValue,
    refs: &[(&str, &SecretValue)],
    now: DateTime<Utc>,
) -> Result<StepOutput, Error> {
    let c = ctx(Step::Test, secret, Some(value), refs, now);
    let via_run = CertificateTarget.run(&c).await;
    let via_verifier = CertificateTarget.verify(&c).await;
    assert_eq!(
        via_run.as_ref().map_err(|e| e.reason).map(|o| o.log.clone()),
        via_verifier.as_ref().map_err(|e| e.reason).map(|o| o.log.clone()),
        "Test and Verifier::verify agree"
    );
    via_run
}

fn fails(r: Result<StepOutput, Error>, needle: &str) {
    let e = r.expect_err("the test must fail");
    assert_eq!(e.reason, Reason::VerificationFailed, "{}", e.message);
    assert!(e.message.starts_with(&format!("{TEST_NAME}: ")), "{}", e.message);
    assert!(e.message.contains(needle), "{:?} should contain {needle:?}", e.message);
    assert!(!e.message.contains("BEGIN"), "{}", e.message);
}

/// PEM blocks of a bundle with their labels.
fn blocks(pem: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let label_end = rest[start + 11..].find("-----").unwrap() + start + 11;
        let label = rest[start + 11..label_end].to_owned();
        let end_marker = format!("-----END {label}-----\n");
        let end = rest.find(&end_marker).unwrap() + end_marker.len();
        out.push((label, rest[start..end].to_owned()));
        rest = &rest[end..];
    }
    out
}

fn certs_of(pem: &str) -> Vec<String> {
    blocks(pem)
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, b)| b)
        .collect()
}

fn key_of(pem: &str) -> String {
    blocks(pem).into_iter().find(|(l, _)| l == "PRIVATE KEY").unwrap().1
}

fn der(block: &str) -> Vec<u8> {
    let (_, pem) = parse_x509_pem(block.as_bytes()).unwrap();
    pem.contents
}

fn ca_config() -> SecretConfig {
    SecretConfig {
        ca: true,
        common_name: Some("Example Root CA".into()),
        validity_days: Some(3650),
        ..SecretConfig::default()
    }
}

fn leaf_config(ca: &str) -> SecretConfig {
    SecretConfig {
        ca_secret: Some(ca.into()),
        common_name: Some("web.example.com".into()),
        validity_days: Some(30),
        ..SecretConfig::default()
    }
}

#[tokio::test]
async fn a_self_signed_leaf_is_issued_from_the_clock_and_passes() {
    let s = secret("app/prod/tls", SecretConfig::default());
    let (value, out) = create(&s, &[], t0()).await;
    let b = blocks(value.expose());
    let labels: Vec<&str> = b.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["CERTIFICATE", "PRIVATE KEY"]);

    // Defaults: CN and DNS name are the last path segment, 90 days from the
    // step's clock (whole seconds), a random serial.
    let a = &out.attributes;
    assert_eq!(a["not_before"], "2026-03-01T12:00:00Z");
    assert_eq!(a["not_after"], "2026-05-30T12:00:00Z");
    assert_eq!(a["subject"], "CN=tls");
    assert_eq!(a["issuer"], "CN=tls");
    assert_eq!(a["serial"].len(), 32);
    assert_eq!(a["sha256_fingerprint"].len(), 64);
    assert!(out.log.contains("issued CN=tls serial"), "{}", out.log);
    assert!(
        out.log.contains("valid until 2026-05-30T12:00:00Z (self-signed)"),
        "{}",
        out.log
    );

    let d = der(&b[0].1);
    let (_, cert) = parse_x509_certificate(&d).unwrap();
    assert!(!cert.is_ca());
    assert_eq!(hex::encode(cert.raw_serial()), a["serial"]);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names, vec![GeneralName::DNSName("tls")]);
    assert_eq!(
        cert.public_key()
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok()),
        Some(x509_parser::oid_registry::OID_EC_P256)
    );

    let ok = test_step(&s, &value, &[], t0()).await.unwrap();
    assert!(ok.log.contains("key matches"), "{}", ok.log);
    // Still valid at the last second, not after it.
    let end = Utc.with_ymd_and_hms(2026, 5, 30, 12, 0, 0).unwrap();
    test_step(&s, &value, &[], end).await.unwrap();

    // A second issue draws a new key and serial.
    let (again, out2) = create(&s, &[], t0()).await;
    assert_ne!(key_of(again.expose()), key_of(value.expose()));
    assert_ne!(out2.attributes["serial"], a["serial"]);

    // Nothing that holds the key shows it.
    assert!(!format!("{out:?} {value:?} {:?}", ctx(Step::Test, &s, Some(&value), &[], t0())).contains("BEGIN"));
}

#[tokio::test]
async fn a_ca_and_a_leaf_it_issued_pass_and_the_chain_is_checked() {
    let ca_s = secret("ca/root", ca_config());
    let (ca, ca_out) = create(&ca_s, &[], t0()).await;
    assert_eq!(ca_out.attributes["subject"], "CN=Example Root CA");
    assert!(ca_out.log.starts_with("issued CA CN=Example Root CA"), "{}", ca_out.log);
    test_step(&ca_s, &ca, &[], t0()).await.unwrap();
    let ca_der = der(&certs_of(ca.expose())[0]);
    let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
    assert!(ca_cert.is_ca());
    let ku = ca_cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(ca_cert.subject_alternative_name().unwrap().is_none());
    // A self-signed root may sign CAs, which may sign leaves only.
    assert_eq!(path_len_of(&ca_cert), Some(Some(1)));

    let leaf_s = secret("app/web", leaf_config("ca/root"));
    let refs = [("ca/root", &ca)];
    let (leaf, out) = create(&leaf_s, &refs, t0()).await;
    let labels: Vec<String> = blocks(leaf.expose()).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]);
    assert_eq!(certs_of(leaf.expose())[1], certs_of(ca.expose())[0]);
    assert_eq!(out.attributes["subject"], "CN=web.example.com");
    assert_eq!(out.attributes["issuer"], "CN=Example Root CA");
    assert_eq!(out.attributes["not_after"], "2026-03-31T12:00:00Z");
    assert!(out.log.ends_with("(signed by ca/root)"), "{}", out.log);

    let ok = test_step(&leaf_s, &leaf, &refs, t0()).await.unwrap();
    assert!(ok.log.contains("2 certificate(s) verified"), "{}", ok.log);
    assert!(ok.log.contains("chain ends at CA ca/root"), "{}", ok.log);
    // Without the reference the bundle still checks on its own.
    let ok = test_step(&leaf_s, &leaf, &[], t0()).await.unwrap();
    assert!(ok.log.contains("CA ca/root not available"), "{}", ok.log);

    // An intermediate CA under the root, and a leaf under it: the bundle
    // carries the whole chain and ends at the named CA.
    let inter_s = secret(
        "ca/issuing",
        SecretConfig {
            ca_secret: Some("ca/root".into()),
            ..ca_config()
        },
    );
    let (inter, inter_out) = create(&inter_s, &refs, t0()).await;
    // Capped at the root's not_after.
    assert_eq!(inter_out.attributes["not_after"], ca_out.attributes["not_after"]);
    let inter_der = der(&certs_of(inter.expose())[0]);
    let (_, inter_cert) = parse_x509_certificate(&inter_der).unwrap();
    assert!(inter_cert.is_ca());
    assert_eq!(
        path_len_of(&inter_cert),
        Some(Some(0)),
        "issued CAs carry pathLenConstraint 0"
    );
    test_step(&inter_s, &inter, &refs, t0()).await.unwrap();
    let leaf2_s = secret("app/api", leaf_config("ca/issuing"));
    let (leaf2, _) = create(&leaf2_s, &[("ca/issuing", &inter)], t0()).await;
    assert_eq!(certs_of(leaf2.expose()).len(), 3);
    let ok = test_step(&leaf2_s, &leaf2, &[("ca/issuing", &inter)], t0())
        .await
        .unwrap();
    assert!(ok.log.contains("3 certificate(s) verified"), "{}", ok.log);
    // Leaves are CA:FALSE (an explicit basic constraints extension) and
    // carry their name as a subject alternative name.
    for bundle in [&leaf, &leaf2] {
        let d = der(&certs_of(bundle.expose())[0]);
        let (_, c) = parse_x509_certificate(&d).unwrap();
        assert_eq!(path_len_of(&c), None);
        let bc = c.basic_constraints().unwrap().expect("leaves carry basic constraints");
        assert!(!bc.value.ca);
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName("web.example.com")]);
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(!ku.key_cert_sign());
    }
}

/// `Some(path_len)` for a CA certificate, `None` for a non-CA.
fn path_len_of(cert: &X509Certificate<'_>) -> Option<Option<u32>> {
    let bc = cert.basic_constraints().unwrap()?;
    bc.value.ca.then_some(bc.value.path_len_constraint)
}

#[tokio::test]
async fn nothing_is_issued_below_a_leaf_or_a_ca_of_path_length_0() {
    let ca_s = secret("ca/root", ca_config());
    let (ca, _) = create(&ca_s, &[], t0()).await;
    let inter_s = secret(
        "ca/issuing",
        SecretConfig {
            ca_secret: Some("ca/root".into()),
            ..ca_config()
        },
    );
    let (inter, _) = create(&inter_s, &[("ca/root", &ca)], t0()).await;
    let leaf_s = secret("app/web", leaf_config("ca/issuing"));
    let (leaf, _) = create(&leaf_s, &[("ca/issuing", &inter)], t0()).await;

    // A CA under the issued CA (pathLenConstraint 0) is refused.
    let sub_s = secret(
        "ca/sub",
        SecretConfig {
            ca_secret: Some("ca/issuing".into()),
            ..ca_config()
        },
    );
    let e = CertificateTarget
        .run(&ctx(Step::Create, &sub_s, None, &[("ca/issuing", &inter)], t0()))
        .await
        .expect_err("a CA below a CA of path length 0");
    assert_eq!(e.reason, Reason::InvalidInput, "{}", e.message);
    assert!(e.message.contains("path length constraint is 0"), "{}", e.message);
    assert!(!e.message.contains("BEGIN"), "{}", e.message);

    // Nothing, CA or leaf, is issued by a leaf.
    for config in [ca_config(), SecretConfig::default()] {
        let s = secret(
            "app/below-leaf",
            SecretConfig {
                ca_secret: Some("app/web".into()),
                ..config
            },
        );
        let e = CertificateTarget
            .run(&ctx(Step::Create, &s, None, &[("app/web", &leaf)], t0()))
            .await
            .expect_err("a leaf is not a CA");
        assert_eq!(e.reason, Reason::InvalidInput, "{}", e.message);
        assert!(e.message.contains("not a CA certificate"), "{}", e.message);
    }
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_fails() {
    let s = secret(
        "app/short",
        SecretConfig {
            validity_days: Some(1),
            ..SecretConfig::default()
        },
    );
    let (value, _) = create(&s, &[], t0()).await;
    fails(
        test_step(&s, &value, &[], t0() + TimeDelta::days(2)).await,
        "expired at 2026-03-02T12:00:00Z",
    );
    fails(
        test_step(&s, &value, &[], t0() - TimeDelta::hours(1)).await,
        "not valid before",
    );

    // An expired issuing CA fails the chain too.
    let ca_s = secret(
        "ca/short",
        SecretConfig {
            validity_days: Some(2),
            ..ca_config()
        },
    );
    let (ca, _) = create(&ca_s, &[], t0()).await;
    let leaf_s = secret("app/l", leaf_config("ca/short"));
    let (leaf, out) = create(&leaf_s, &[("ca/short", &ca)], t0()).await;
    assert_eq!(
        out.attributes["not_after"], "2026-03-03T12:00:00Z",
        "capped at the CA's end"
    );
    test_step(&leaf_s, &leaf, &[("ca/short", &ca)], t0() + TimeDelta::days(1))
        .await
        .unwrap();
    fails(
        test_step(&leaf_s, &leaf, &[("ca/short", &ca)], t0() + TimeDelta::days(3)).await,
        "expired",
    );
}

#[tokio::test]
async fn a_bundle_whose_key_does_not_match_fails() {
    let s = secret("app/a", SecretConfig::default());
    let (a, _) = create(&s, &[], t0()).await;
    let (b, _) = create(&s, &[], t0()).await;
    let mixed = SecretValue::new(format!("{}{}", certs_of(a.expose())[0], key_of(b.expose())));
    fails(test_step(&s, &mixed, &[], t0()).await, "private key does not match");
    let e = CertificateTarget.inspect(&s, &mixed).unwrap_err();
    assert_eq!(e.reason, Reason::InvalidInput);
    assert!(e.message.contains("does not match"), "{}", e.message);

    // No key, two keys, no certificate.
    let cert_only = SecretValue::new(certs_of(a.expose())[0].clone());
    fails(
        test_step(&s, &cert_only, &[], t0()).await,
        "exactly one private key, found 0",
    );
    let two = SecretValue::new(format!("{}{}", a.expose(), key_of(b.expose())));
    fails(test_step(&s, &two, &[], t0()).await, "found 2");
    fails(
        test_step(&s, &SecretValue::new(key_of(a.expose())), &[], t0()).await,
        "no certificate",
    );
    fails(
        CertificateTarget.run(&ctx(Step::Test, &s, None, &[], t0())).await,
        "no new value",
    );
}

#[tokio::test]
async fn a_leaf_claimed_under_a_different_ca_fails() {
    let (ca1, _) = create(&secret("ca/one", ca_config()), &[], t0()).await;
    let (ca2, _) = create(&secret("ca/two", ca_config()), &[], t0()).await;
    let leaf_s = secret("app/web", leaf_config("ca/root"));
    let (leaf, _) = create(&leaf_s, &[("ca/root", &ca1)], t0()).await;
    test_step(&leaf_s, &leaf, &[("ca/root", &ca1)], t0()).await.unwrap();

    // The secret's CA is now another one (same name, other key).
    fails(
        test_step(&leaf_s, &leaf, &[("ca/root", &ca2)], t0()).await,
        "does not end at the CA ca/root",
    );

    // The bundle claims the other CA as its issuer.
    let certs = certs_of(leaf.expose());
    let forged = SecretValue::new(format!(
        "{}{}{}",
        certs[0],
        certs_of(ca2.expose())[0],
        key_of(leaf.expose())
    ));
    fails(
        test_step(&leaf_s, &forged, &[], t0()).await,
        "certificate 1 of the bundle is not signed by certificate 2",
    );

    // A leaf alone that is not self-signed has nothing to verify against.
    let alone = SecretValue::new(format!("{}{}", certs[0], key_of(leaf.expose())));
    fails(
        test_step(&leaf_s, &alone, &[], t0()).await,
        "neither self-signed nor followed by its issuer",
    );
    // ... unless the named CA is at hand.
    test_step(&leaf_s, &alone, &[("ca/root", &ca1)], t0()).await.unwrap();

    // A leaf is not a CA: a certificate issued "by" it is refused.
    let under_leaf = secret("app/x", leaf_config("app/web"));
    let e = CertificateTarget
        .run(&ctx(Step::Create, &under_leaf, None, &[("app/web", &leaf)], t0()))
        .await
        .unwrap_err();
    assert_eq!(e.reason, Reason::InvalidInput);
    assert!(e.message.contains("not a CA certificate"), "{}", e.message);
    // A CA that is not there.
    let e = CertificateTarget
        .run(&ctx(Step::Create, &leaf_s, None, &[], t0()))
        .await
        .unwrap_err();
    assert_eq!(e.reason, Reason::NotFound);
    assert!(e.message.contains("ca/root"), "{}", e.message);
}

#[tokio::test]
async fn inspect_reads_a_caller_written_bundle_and_rejects_garbage_without_echoing_it() {
    let s = secret("app/imported", SecretConfig::default());
    let (value, out) = create(&s, &[], t0()).await;
    let attrs = CertificateTarget.inspect(&s, &value).unwrap();
    assert_eq!(attrs, out.attributes);
    assert_eq!(attrs["not_after"], "2026-05-30T12:00:00Z");

    let key_body = key_of(value.expose());
    let key_b64 = key_body.lines().nth(1).unwrap().to_owned();
    let garbage = [
        "hunter2-not-a-certificate".to_owned(),
        format!("-----BEGIN CERTIFICATE-----\naHVudGVyMi1zZWNyZXQ=\n-----END CERTIFICATE-----\n{key_body}"),
        format!("-----BEGIN CERTIFICATE-----\nhunter2!!\n-----END CERTIFICATE-----\n{key_body}"),
        format!(
            "{}-----BEGIN PRIVATE KEY-----\naHVudGVyMi1zZWNyZXQ=\n-----END PRIVATE KEY-----\n",
            certs_of(value.expose())[0]
        ),
        format!(
            "{}{}",
            certs_of(value.expose())[0],
            key_body.replace("PRIVATE KEY", "EC PRIVATE KEY")
        ),
        format!(
            "{}-----BEGIN PRIVATE KEY-----\n{key_b64}\n",
            certs_of(value.expose())[0]
        ),
    ];
    for g in &garbage {
        let e = CertificateTarget.inspect(&s, &SecretValue::new(g.clone())).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput, "{}", e.message);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(!e.message.contains("aHVudGVy"), "{}", e.message);
        assert!(!e.message.contains(&key_b64), "{}", e.message);
        assert!(!e.message.contains("BEGIN"), "{}", e.message);
        fails(test_step(&s, &SecretValue::new(g.clone()), &[], t0()).await, "");
    }
}

#[tokio::test]
async fn steps_other_than_create_and_test_do_nothing_and_describe_says_what_is_issued() {
    let t = CertificateTarget;
    assert_eq!(t.strategies(), [Strategy::Immediate, Strategy::Staged]);
    assert_eq!(
        t.describe(&secret("app/prod/tls", SecretConfig::default())),
        "issue certificate CN=tls (self-signed)"
    );
    assert_eq!(
        t.describe(&secret("app/web", leaf_config("ca/root"))),
        "issue certificate CN=web.example.com (signed by ca/root)"
    );
    assert_eq!(
        t.describe(&secret("ca/root", ca_config())),
        "issue CA certificate CN=Example Root CA (self-signed)"
    );
    let s = secret("app/tls", SecretConfig::default());
    for step in [Step::Set, Step::Finish, Step::Rollback, Step::Disable] {
        let out = t.run(&ctx(step, &s, None, &[], t0())).await.unwrap();
        assert!(out.value.is_none() && out.attributes.is_empty());
        assert!(out.log.contains("nothing to do"), "{}", out.log);
    }
    for days in [0, 36_501] {
        let bad = secret(
            "app/tls",
            SecretConfig {
                validity_days: Some(days),
                ..SecretConfig::default()
            },
        );
        let e = t.run(&ctx(Step::Create, &bad, None, &[], t0())).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput);
        assert!(e.message.contains("validity_days"), "{}", e.message);
    }
    assert_eq!(format!("{t:?}"), "CertificateTarget");
}

/// Interoperability: certificates issued here verify with OpenSSL.
///
/// When an `openssl` binary is on PATH, the CA, an intermediate and two
/// leaves are written to a temporary directory and `openssl verify` must
/// accept them (and `openssl pkey` must read the keys). When openssl is
/// absent, the same certificates are still checked here with x509-parser
/// (signatures, chain, key usage), so the test never passes vacuously.
#[tokio::test]
async fn issued_certificates_verify_with_openssl() {
    let ca_s = secret("ca/root", ca_config());
    let (ca, _) = create(&ca_s, &[], t0()).await;
    let inter_s = secret(
        "ca/issuing",
        SecretConfig {
            ca_secret: Some("ca/root".into()),
            common_name: Some("Example Issuing CA".into()),
            ..ca_config()
        },
    );
    let (inter, _) = create(&inter_s, &[("ca/root", &ca)], t0()).await;
    let leaf_s = secret("app/web", leaf_config("ca/root"));
    let (leaf, _) = create(&leaf_s, &[("ca/root", &ca)], t0()).await;
    let leaf2_s = secret("app/api", leaf_config("ca/issuing"));
    let (leaf2, _) = create(&leaf2_s, &[("ca/issuing", &inter)], t0()).await;

    // x509-parser: every link verifies, issuer names match, AKI = SKI.
    let ca_der = der(&certs_of(ca.expose())[0]);
    let inter_der = der(&certs_of(inter.expose())[0]);
    let leaf_der = der(&certs_of(leaf.expose())[0]);
    let leaf2_der = der(&certs_of(leaf2.expose())[0]);
    let (_, ca_c) = parse_x509_certificate(&ca_der).unwrap();
    let (_, inter_c) = parse_x509_certificate(&inter_der).unwrap();
    let (_, leaf_c) = parse_x509_certificate(&leaf_der).unwrap();
    let (_, leaf2_c) = parse_x509_certificate(&leaf2_der).unwrap();
    ca_c.verify_signature(None).unwrap();
    for (child, parent) in [(&inter_c, &ca_c), (&leaf_c, &ca_c), (&leaf2_c, &inter_c)] {
        child.verify_signature(Some(parent.public_key())).unwrap();
        assert_eq!(child.issuer().as_raw(), parent.subject().as_raw());
        let ski = parent
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("issuers carry a subject key identifier");
        let aki = child
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
                _ => None,
            })
            .expect("issued certificates carry an authority key identifier");
        assert_eq!(aki, ski);
    }
    assert!(inter_c.is_ca() && !leaf_c.is_ca());
    // Issued certificates are not self-signed.
    leaf_c.verify_signature(Some(leaf_c.public_key())).unwrap_err();

    let openssl_present = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !openssl_present {
        eprintln!("openssl not on PATH: checked with x509-parser only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = write("ca.pem", &certs_of(ca.expose())[0]);
    let inter_pem = write("inter.pem", &certs_of(inter.expose())[0]);
    let leaf_pem = write("leaf.pem", &certs_of(leaf.expose())[0]);
    let leaf2_pem = write("leaf2.pem", &certs_of(leaf2.expose())[0]);
    let key_pem = write("key.pem", &key_of(leaf.expose()));
    let attime = (t0() + TimeDelta::days(1)).timestamp().to_string();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new("openssl").args(args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let (ok, out) = run(&[
        &os("verify"),
        &os("-attime"),
        &os(&attime),
        &os("-CAfile"),
        ca_pem.as_os_str(),
        leaf_pem.as_os_str(),
    ]);
    assert!(ok && out.contains(": OK"), "openssl verify: {out}");
    let (ok, out) = run(&[
        &os("verify"),
        &os("-attime"),
        &os(&attime),
        &os("-CAfile"),
        ca_pem.as_os_str(),
        &os("-untrusted"),
        inter_pem.as_os_str(),
        &os("-purpose"),
        &os("sslserver"),
        leaf2_pem.as_os_str(),
    ]);
    assert!(ok && out.contains(": OK"), "openssl verify (intermediate): {out}");
    // Under the wrong CA, openssl refuses too.
    let (ok, _) = run(&[
        &os("verify"),
        &os("-attime"),
        &os(&attime),
        &os("-CAfile"),
        inter_pem.as_os_str(),
        leaf_pem.as_os_str(),
    ]);
    assert!(!ok, "openssl must refuse a leaf under another CA");

    // Below an issued leaf or below an issued CA (pathLenConstraint 0),
    // nothing verifies: certificates forged with openssl under them are
    // refused by `openssl verify` and by the `certificate` test. A chain
    // issued now, so that only the constraints can fail.
    let now = Utc::now();
    let (ca_now, _) = create(&ca_s, &[], now).await;
    let (inter_now, _) = create(&inter_s, &[("ca/root", &ca_now)], now).await;
    let (leaf_now, _) = create(&leaf_s, &[("ca/root", &ca_now)], now).await;
    let ca_now_pem = write("ca-now.pem", &certs_of(ca_now.expose())[0]);
    let inter_now_pem = write("inter-now.pem", &certs_of(inter_now.expose())[0]);
    let inter_now_key = write("inter-now.key", &key_of(inter_now.expose()));
    let leaf_now_pem = write("leaf-now.pem", &certs_of(leaf_now.expose())[0]);
    let leaf_now_key = write("leaf-now.key", &key_of(leaf_now.expose()));
    let ext = write(
        "ca.ext",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    let forge = |name: &str, issuer: &std::path::Path, issuer_key: &std::path::Path, ca: bool| {
        let key = dir.path().join(format!("{name}.key"));
        let csr = dir.path().join(format!("{name}.csr"));
        let cert = dir.path().join(format!("{name}.pem"));
        let (ok, out) = run(&[
            &os("req"),
            &os("-new"),
            &os("-newkey"),
            &os("ec"),
            &os("-pkeyopt"),
            &os("ec_paramgen_curve:P-256"),
            &os("-nodes"),
            &os("-subj"),
            &os(&format!("/CN={name}.example")),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            csr.as_os_str(),
        ]);
        assert!(ok, "openssl req: {out}");
        let mut args = vec![
            os("x509"),
            os("-req"),
            os("-in"),
            csr.clone().into_os_string(),
            os("-CA"),
            issuer.as_os_str().to_owned(),
            os("-CAkey"),
            issuer_key.as_os_str().to_owned(),
            os("-set_serial"),
            os("7"),
            os("-days"),
            os("10"),
            os("-out"),
            cert.clone().into_os_string(),
        ];
        if ca {
            args.extend([os("-extfile"), ext.clone().into_os_string()]);
        }
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (ok, out) = run(&refs);
        assert!(ok, "openssl x509 -req: {out}");
        (cert, key)
    };
    // Signed with the leaf's key: the leaf is not a CA.
    let (below_leaf, _) = forge("below-leaf", &leaf_now_pem, &leaf_now_key, false);
    let (ok, out) = run(&[
        &os("verify"),
        &os("-CAfile"),
        ca_now_pem.as_os_str(),
        &os("-untrusted"),
        leaf_now_pem.as_os_str(),
        below_leaf.as_os_str(),
    ]);
    // (OpenSSL says "invalid CA certificate" or, as the leaf's key usage
    // lacks keyCertSign, does not take it for an issuer at all.)
    assert!(!ok, "openssl verify below a leaf must fail: {out}");
    assert!(!out.contains("expired") && !out.contains("not yet valid"), "{out}");
    // A CA under the issued CA, and a leaf under that: path length exceeded.
    let (sub_ca, sub_key) = forge("sub-ca", &inter_now_pem, &inter_now_key, true);
    let (below_sub, below_sub_key) = forge("below-sub", &sub_ca, &sub_key, false);
    let chain = std::fs::read_to_string(&inter_now_pem).unwrap() + &std::fs::read_to_string(&sub_ca).unwrap();
    let untrusted = write("untrusted.pem", &chain);
    let (ok, out) = run(&[
        &os("verify"),
        &os("-CAfile"),
        ca_now_pem.as_os_str(),
        &os("-untrusted"),
        untrusted.as_os_str(),
        below_sub.as_os_str(),
    ]);
    assert!(
        !ok && out.contains("path length constraint exceeded"),
        "openssl verify below a pathlen 0 CA: {out}"
    );
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let bundle = SecretValue::new(
        read(&below_sub) + &read(&sub_ca) + &read(&inter_now_pem) + &read(&ca_now_pem) + &read(&below_sub_key),
    );
    let s = secret("app/forged", SecretConfig::default());
    fails(
        test_step(&s, &bundle, &[], now).await,
        "allows 0 CA certificate(s) below it",
    );
    // The PKCS#8 key is readable and matches the certificate.
    let (ok, cert_pub) = run(&[
        &os("x509"),
        &os("-noout"),
        &os("-pubkey"),
        &os("-in"),
        leaf_pem.as_os_str(),
    ]);
    assert!(ok, "{cert_pub}");
    let (ok, key_pub) = run(&[&os("pkey"), &os("-pubout"), &os("-in"), key_pem.as_os_str()]);
    assert!(ok, "{key_pub}");
    assert_eq!(cert_pub, key_pub);

    // Bundles written by OpenSSL (EC P-256 and RSA, PKCS#8 keys) are read
    // by `inspect` and pass the test.
    for (name, newkey, opt) in [
        ("ec", "ec", "ec_paramgen_curve:P-256"),
        ("rsa", "rsa", "rsa_keygen_bits:2048"),
    ] {
        let cert = dir.path().join(format!("{name}.crt"));
        let key = dir.path().join(format!("{name}.key"));
        let (ok, out) = run(&[
            &os("req"),
            &os("-x509"),
            &os("-newkey"),
            &os(newkey),
            &os("-pkeyopt"),
            &os(opt),
            &os("-nodes"),
            &os("-subj"),
            &os("/CN=openssl.example"),
            &os("-days"),
            &os("30"),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            cert.as_os_str(),
        ]);
        assert!(ok, "openssl req: {out}");
        let bundle =
            SecretValue::new(std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap());
        let s = secret("app/imported", SecretConfig::default());
        let attrs = CertificateTarget.inspect(&s, &bundle).unwrap();
        assert_eq!(attrs["subject"], "CN=openssl.example", "{name}");
        let now = Utc::now();
        let ok = test_step(&s, &bundle, &[], now).await.unwrap();
        assert!(ok.log.contains("key matches"), "{name}: {}", ok.log);
    }
}
