//! Certificate secrets (seed 003): the target that issues X.509
//! certificates with rcgen (ECDSA P-256 on ring) and the `certificate`
//! verification test that checks them with x509-parser (signatures on ring).
//!
//! The value of a certificate secret is a PEM bundle (see `docs/FORMATS.md`,
//! "Certificate secrets"):
//!
//! 1. the leaf certificate (`-----BEGIN CERTIFICATE-----`),
//! 2. the certificates of the issuing CA's bundle, issuing CA first (none
//!    when self-signed),
//! 3. the leaf's PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
//!
//! The stored value *is* the deployment: services read the CURRENT version,
//! so `set`, `finish`, `rollback` and `disable` have nothing to do, and
//! there are no slots (immediate and staged strategies only).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rotation_core::ports::{CredentialTarget, Step, StepContext, StepOutput, Verifier};
use rotation_core::secret::{Secret, SecretValue, Strategy};
use rotation_core::{Error, Reason, Result};
use x509_parser::certificate::X509Certificate;
use zeroize::Zeroizing;

/// Validity of new certificates when `validity_days` is not set.
pub const DEFAULT_VALIDITY_DAYS: u32 = 90;

/// Longest validity `validity_days` may ask for (100 years).
pub const MAX_VALIDITY_DAYS: u32 = 36_500;

/// The name of the verification test this module provides.
pub const TEST_NAME: &str = "certificate";

/// The target and verifier of certificate secrets.
///
/// * `create` issues a new key pair (ECDSA P-256) and certificate from the
///   secret's settings (`common_name`, `validity_days`, `ca`, `ca_secret`),
///   valid from the step's clock (`StepContext::now`);
/// * `test` (and [`Verifier::verify`], test `certificate`) checks the
///   pending bundle: the leaf is valid at the step's clock, the private key
///   matches it, every certificate is signed by the next one (or by itself
///   when self-signed) and, when the CA named by `ca_secret` is among the
///   references, the chain ends at that CA;
/// * `set`, `finish`, `rollback` and `disable` do nothing: the stored value
///   is the deployment.
///
/// Every `create` draws a new key and serial, so a repeated `create` of a
/// resumed run issues another (equally valid) certificate.
#[derive(Debug, Default, Clone, Copy)]
pub struct CertificateTarget;

impl CertificateTarget {
    /// A certificate target.
    pub fn new() -> Self {
        CertificateTarget
    }
}

const STRATEGIES: [Strategy; 2] = [Strategy::Immediate, Strategy::Staged];

#[async_trait]
impl CredentialTarget for CertificateTarget {
    fn describe(&self, secret: &Secret) -> String {
        let kind = if secret.config.ca {
            "CA certificate"
        } else {
            "certificate"
        };
        let by = match &secret.config.ca_secret {
            Some(ca) => format!("signed by {ca}"),
            None => "self-signed".to_owned(),
        };
        format!("issue {kind} CN={} ({by})", common_name(secret))
    }

    fn strategies(&self) -> &'static [Strategy] {
        &STRATEGIES
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        match ctx.step {
            Step::Create => issue(ctx),
            Step::Test => check(ctx),
            Step::Set | Step::Finish | Step::Rollback | Step::Disable => Ok(StepOutput {
                log: format!(
                    "{}: nothing to do, the stored certificate is the deployment",
                    ctx.step.as_str()
                ),
                ..StepOutput::default()
            }),
        }
    }

    fn inspect(&self, _secret: &Secret, value: &SecretValue) -> Result<BTreeMap<String, String>> {
        let invalid = |m: String| Error::invalid_input(format!("certificate value: {m}"));
        let bundle = Bundle::parse(value.expose()).map_err(invalid)?;
        let certs = bundle.certificates().map_err(invalid)?;
        let leaf = &certs[0];
        let key = bundle.key()?;
        key_matches(&key, leaf).map_err(invalid)?;
        Ok(attributes(leaf, &bundle.certs[0]))
    }
}

#[async_trait]
impl Verifier for CertificateTarget {
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput> {
        check(ctx)
    }
}

/// The subject common name: `common_name`, else the last path segment.
fn common_name(secret: &Secret) -> String {
    match &secret.config.common_name {
        Some(cn) => cn.clone(),
        None => secret.path.rsplit('/').next().unwrap_or(&secret.path).to_owned(),
    }
}

/// RFC 3339, seconds, `Z`.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A parsed PEM bundle: certificates in order and one PKCS#8 private key.
/// Its `Debug` never shows the key.
struct Bundle {
    certs: Vec<Vec<u8>>,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("certificates", &self.certs.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Bundle {
    /// Splits a PEM bundle. Messages never quote the input.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut certs = Vec::new();
        let mut keys: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
                continue;
            };
            let label = label.to_owned();
            let end = format!("-----END {label}-----");
            let mut body = Zeroizing::new(String::new());
            let mut closed = false;
            for l in lines.by_ref() {
                if l == end {
                    closed = true;
                    break;
                }
                body.push_str(l);
            }
            if !closed {
                return Err("a PEM block is not closed".into());
            }
            let der = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .map_err(|_| "a PEM block is not valid base64".to_owned())?,
            );
            match label.as_str() {
                "CERTIFICATE" => certs.push(der.to_vec()),
                "PRIVATE KEY" => keys.push(der),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(
                        "the private key is encrypted: store it as unencrypted PKCS#8 (a PRIVATE KEY block)".into(),
                    );
                }
                "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                    return Err("the private key must be PKCS#8 (a PRIVATE KEY block)".into());
                }
                _ => return Err("unexpected PEM block: use CERTIFICATE and PRIVATE KEY blocks only".into()),
            }
        }
        if certs.is_empty() {
            return Err("expected PEM certificates followed by a private key, found no certificate".into());
        }
        if keys.len() != 1 {
            return Err(format!("expected exactly one private key, found {}", keys.len()));
        }
        let key = keys.pop().unwrap_or_default();
        Ok(Bundle { certs, key })
    }

    /// Parses every certificate (at least one).
    fn certificates(&self) -> std::result::Result<Vec<X509Certificate<'_>>, String> {
        self.certs
            .iter()
            .enumerate()
            .map(|(i, der)| match x509_parser::parse_x509_certificate(der) {
                Ok(([], cert)) => Ok(cert),
                _ => Err(format!(
                    "certificate {} of the bundle is not a valid X.509 certificate",
                    i + 1
                )),
            })
            .collect()
    }

    /// The private key.
    fn key(&self) -> Result<Zeroizing<KeyPair>> {
        KeyPair::try_from(self.key.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| Error::invalid_input("certificate value: the private key is not a supported PKCS#8 key"))
    }
}

/// Certificates only (for a CA bundle whose key is not needed).
fn certificates_of(text: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    Bundle::parse(text).map(|b| b.certs)
}

fn parse_one(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err("not a valid X.509 certificate".into()),
    }
}

fn not_before(cert: &X509Certificate<'_>) -> DateTime<Utc> {
    DateTime::from_timestamp(cert.validity().not_before.timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn not_after(cert: &X509Certificate<'_>) -> DateTime<Utc> {
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn valid_at(cert: &X509Certificate<'_>, now: DateTime<Utc>) -> std::result::Result<(), String> {
    let (nb, na) = (not_before(cert), not_after(cert));
    if now < nb {
        return Err(format!("{} is not valid before {}", cert.subject(), rfc3339(nb)));
    }
    if now > na {
        return Err(format!("{} expired at {}", cert.subject(), rfc3339(na)));
    }
    Ok(())
}

/// Whether the private key belongs to the certificate.
fn key_matches(key: &KeyPair, cert: &X509Certificate<'_>) -> std::result::Result<(), String> {
    if key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref() {
        Ok(())
    } else {
        Err("the private key does not match the certificate".into())
    }
}

/// Whether `cert` names `issuer` as its issuer and carries its signature.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// The pathLenConstraint of a certificate's basic constraints, if any.
fn path_len(cert: &X509Certificate<'_>) -> Option<u32> {
    cert.basic_constraints()
        .ok()
        .flatten()
        .and_then(|bc| bc.value.path_len_constraint)
}

fn self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == cert.subject().as_raw() && cert.verify_signature(None).is_ok()
}

/// The non-secret attributes of a leaf certificate.
fn attributes(leaf: &X509Certificate<'_>, der: &[u8]) -> BTreeMap<String, String> {
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
    BTreeMap::from([
        ("not_before".to_owned(), rfc3339(not_before(leaf))),
        ("not_after".to_owned(), rfc3339(not_after(leaf))),
        ("serial".to_owned(), hex(leaf.raw_serial())),
        ("subject".to_owned(), leaf.subject().to_string()),
        ("issuer".to_owned(), leaf.issuer().to_string()),
        ("sha256_fingerprint".to_owned(), hex(fingerprint.as_ref())),
    ])
}

/// The issuing CA of a `create`: its certificates (issuing CA first) and key.
struct Ca {
    path: String,
    bundle: Bundle,
}

/// Loads the CA named by `ca_secret`; `issuing_ca`: the certificate to
/// issue is itself a CA, which the CA's path length constraint must allow.
fn load_ca(ctx: &StepContext, path: &str, now: DateTime<Utc>, issuing_ca: bool) -> Result<Ca> {
    let value = ctx.references.get(path).ok_or_else(|| {
        Error::not_found(format!(
            "certificate: the CA secret {path} (ca_secret) has no current value"
        ))
    })?;
    let invalid = |m: String| Error::invalid_input(format!("certificate: CA secret {path}: {m}"));
    let bundle = Bundle::parse(value.expose()).map_err(invalid)?;
    {
        let certs = bundle.certificates().map_err(invalid)?;
        let ca = &certs[0];
        let key = bundle
            .key()
            .map_err(|_| invalid("the private key is not a supported PKCS#8 key".into()))?;
        key_matches(&key, ca).map_err(invalid)?;
        if !ca.is_ca() {
            return Err(invalid("not a CA certificate (basic constraints CA is not set)".into()));
        }
        if issuing_ca && path_len(ca) == Some(0) {
            return Err(invalid(
                "its path length constraint is 0: it may sign leaf certificates only, not CA certificates".into(),
            ));
        }
        if let Ok(Some(ku)) = ca.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(invalid("its key usage does not allow signing certificates".into()));
        }
        valid_at(ca, now).map_err(invalid)?;
    }
    Ok(Ca {
        path: path.to_owned(),
        bundle,
    })
}

fn issue(ctx: &StepContext) -> Result<StepOutput> {
    let config = &ctx.secret.config;
    let cn = common_name(&ctx.secret);
    let days = config.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS);
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(Error::invalid_input(format!(
            "certificate: validity_days must be 1 to {MAX_VALIDITY_DAYS}, not {days}"
        )));
    }
    if cn.is_empty() || !cn.is_ascii() || cn.chars().any(|c| c.is_ascii_control()) {
        return Err(Error::invalid_input(format!(
            "certificate: common_name {:?} must be non-empty printable ASCII",
            cn.chars().take(64).collect::<String>()
        )));
    }
    // Certificates carry whole seconds; start at the second of the clock so
    // that the step's own instant is inside the validity.
    let start = DateTime::from_timestamp(ctx.now.timestamp(), 0).unwrap_or(ctx.now);
    let mut end = start + TimeDelta::days(i64::from(days));

    let ca = config
        .ca_secret
        .as_deref()
        .map(|p| load_ca(ctx, p, ctx.now, config.ca))
        .transpose()?;
    let mut capped = false;
    if let Some(ca) = &ca {
        let certs = ca.bundle.certificates().map_err(Error::invalid_input)?;
        let ca_end = not_after(&certs[0]);
        if end > ca_end {
            end = ca_end;
            capped = true;
        }
    }

    let bad = |e: rcgen::Error| Error::invalid_input(format!("certificate: cannot issue CN={cn}: {e}"));
    let mut params = CertificateParams::new(if config.ca { Vec::new() } else { vec![cn.clone()] }).map_err(bad)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn.as_str());
    params.distinguished_name = dn;
    params.not_before = SystemTime::from(start).into();
    params.not_after = SystemTime::from(end).into();
    params.serial_number = Some(random_serial()?);
    if config.ca {
        // A CA signed by another CA may sign leaves only (pathLenConstraint
        // 0); a self-signed root may sign such CAs (1), no deeper chains.
        let depth = if ca.is_some() { 0 } else { 1 };
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(depth));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    }

    let key = Zeroizing::new(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
        Error::new(
            Reason::RotationFailed,
            format!("certificate: key generation failed: {e}"),
        )
    })?);
    let cert = match &ca {
        Some(ca) => {
            params.use_authority_key_identifier_extension = true;
            let ca_key = ca.bundle.key()?;
            let issuer = Issuer::from_ca_cert_der(&ca.bundle.certs[0].as_slice().into(), &*ca_key).map_err(|e| {
                Error::invalid_input(format!("certificate: CA secret {}: cannot sign with it: {e}", ca.path))
            })?;
            params.signed_by(&*key, &issuer).map_err(bad)?
        }
        None => params.self_signed(&*key).map_err(bad)?,
    };

    let der = cert.der().to_vec();
    let leaf = parse_one(&der).map_err(|m| Error::new(Reason::RotationFailed, format!("certificate: issued {m}")))?;
    let attributes = attributes(&leaf, &der);

    let mut pem = Zeroizing::new(pem_encode("CERTIFICATE", &der));
    if let Some(ca) = &ca {
        for c in &ca.bundle.certs {
            pem.push_str(&pem_encode("CERTIFICATE", c));
        }
    }
    pem.push_str(&Zeroizing::new(key.serialize_pem()));

    let by = match &ca {
        Some(ca) => format!("signed by {}", ca.path),
        None => "self-signed".to_owned(),
    };
    let log = format!(
        "issued {}{} serial {} valid until {} ({by}{})",
        if config.ca { "CA " } else { "" },
        attributes["subject"],
        attributes["serial"],
        attributes["not_after"],
        if capped { ", capped at the CA's not_after" } else { "" },
    );
    Ok(StepOutput {
        log,
        value: Some(SecretValue::new(std::mem::take(&mut *pem))),
        attributes,
        stdout: None,
    })
}

/// A positive 127-bit random serial whose first byte is never zero (so it
/// keeps its 16 bytes in DER).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::new(Reason::RotationFailed, "certificate: the random source failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn check(ctx: &StepContext) -> Result<StepOutput> {
    let failed = |m: String| Error::new(Reason::VerificationFailed, format!("{TEST_NAME}: {m}"));
    let pending = ctx
        .pending
        .as_ref()
        .ok_or_else(|| failed("there is no new value to test".into()))?;
    let bundle = Bundle::parse(pending.value.expose()).map_err(&failed)?;
    let certs = bundle.certificates().map_err(&failed)?;
    let leaf = &certs[0];
    valid_at(leaf, ctx.now).map_err(&failed)?;
    let key = bundle
        .key()
        .map_err(|_| failed("the private key is not a supported PKCS#8 key".into()))?;
    key_matches(&key, leaf).map_err(&failed)?;

    // Every certificate is signed by the next one; the last by itself if
    // it is self-issued. Issuing certificates must be CAs valid now.
    for (i, pair) in certs.windows(2).enumerate() {
        if !signed_by(&pair[0], &pair[1]) {
            return Err(failed(format!(
                "certificate {} of the bundle is not signed by certificate {}",
                i + 1,
                i + 2
            )));
        }
        if !pair[1].is_ca() {
            return Err(failed(format!("certificate {} of the bundle is not a CA", i + 2)));
        }
        valid_at(&pair[1], ctx.now).map_err(&failed)?;
        // RFC 5280 4.2.1.9: at most pathLenConstraint CA certificates
        // between this issuer and the leaf (certificates 2..=i+1).
        if let Some(max) = path_len(&pair[1])
            && i > max as usize
        {
            return Err(failed(format!(
                "certificate {} of the bundle allows {max} CA certificate(s) below it, the chain has {i}",
                i + 2
            )));
        }
    }
    let last = &certs[certs.len() - 1];
    let last_self_issued = last.issuer().as_raw() == last.subject().as_raw();
    if last_self_issued && !self_signed(last) {
        return Err(failed(format!(
            "certificate {} of the bundle is self-issued but its signature does not verify",
            certs.len()
        )));
    }

    let mut log = format!(
        "{TEST_NAME}: {} serial {} valid until {}, key matches, {} certificate(s) verified",
        leaf.subject(),
        hex(leaf.raw_serial()),
        rfc3339(not_after(leaf)),
        certs.len()
    );

    let mut anchored = false;
    if let Some(path) = ctx.secret.config.ca_secret.as_deref() {
        match ctx.references.get(path) {
            Some(ca_value) => {
                let ca_ders = certificates_of(ca_value.expose())
                    .map_err(|m| failed(format!("the CA secret {path} is not a certificate bundle: {m}")))?;
                let ca = parse_one(&ca_ders[0]).map_err(|m| failed(format!("the CA secret {path}: {m}")))?;
                anchored = bundle
                    .certs
                    .iter()
                    .zip(&certs)
                    .enumerate()
                    .any(|(i, (der, cert))| (i > 0 && der == &ca_ders[0]) || signed_by(cert, &ca));
                if !anchored {
                    return Err(failed(format!("the chain does not end at the CA {path}")));
                }
                valid_at(&ca, ctx.now).map_err(&failed)?;
                log.push_str(&format!(", chain ends at CA {path}"));
            }
            None => log.push_str(&format!(", CA {path} not available: chain not checked against it")),
        }
    }
    if certs.len() == 1 && !last_self_issued && !anchored {
        return Err(failed(
            "the certificate is neither self-signed nor followed by its issuer".into(),
        ));
    }
    Ok(StepOutput {
        log,
        ..StepOutput::default()
    })
}
