//! Secrets (seeds 001, 003): a path, a type, versions with stage labels,
//! how new values are generated and how a rotation replaces them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Checks a secret path: 1 to 256 bytes of `[A-Za-z0-9._/-]`, segments
/// separated by single `/`, no leading or trailing `/`, no `.` or `..`
/// segment. Paths double as Vault KV paths and value ids, so they stay plain.
pub fn check_path(path: &str) -> Result<()> {
    let ok_chars = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    let ok_segments = path.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if path.is_empty() || path.len() > 256 || !ok_chars || !ok_segments {
        return Err(Error::invalid_input(format!(
            "invalid secret path {:?}: use 1 to 256 bytes of [A-Za-z0-9._-] segments separated by '/'",
            path.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Kind of secret (seed 003); decides the default strategy and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretType {
    /// Any value; store only.
    Generic,
    /// A password; store only unless a script or target is attached.
    Password,
    /// An API key: dual-write by default, the old key disabled after the grace period.
    ApiKey,
    /// A PostgreSQL role's password, changed with `ALTER ROLE`.
    Database,
    /// An X.509 certificate and its private key (PEM), renewed before expiry.
    Certificate,
}

impl SecretType {
    /// All types.
    pub const ALL: [SecretType; 5] = [
        SecretType::Generic,
        SecretType::Password,
        SecretType::ApiKey,
        SecretType::Database,
        SecretType::Certificate,
    ];

    /// The stable string of this type.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Generic => "generic",
            SecretType::Password => "password",
            SecretType::ApiKey => "api_key",
            SecretType::Database => "database",
            SecretType::Certificate => "certificate",
        }
    }

    /// The strategy used when the policy names none.
    pub fn default_strategy(self) -> Strategy {
        match self {
            SecretType::ApiKey => Strategy::DualWrite,
            SecretType::Generic | SecretType::Password | SecretType::Database | SecretType::Certificate => {
                Strategy::Staged
            }
        }
    }
}

impl FromStr for SecretType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SecretType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            Error::invalid_input(format!(
                "unknown secret type {s:?}: use generic, password, api_key, database or certificate"
            ))
        })
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stage label of a secret version. Each label is on at most one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    /// The value in use.
    Current,
    /// A new value being rotated in.
    Pending,
    /// The value replaced by the last rotation.
    Previous,
}

impl Stage {
    /// The stable string of this stage (`CURRENT`, `PENDING`, `PREVIOUS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "CURRENT",
            Stage::Pending => "PENDING",
            Stage::Previous => "PREVIOUS",
        }
    }
}

impl FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "current" => Ok(Stage::Current),
            "pending" => Ok(Stage::Pending),
            "previous" => Ok(Stage::Previous),
            _ => Err(Error::invalid_input(format!(
                "unknown stage {s:?}: use current, pending or previous"
            ))),
        }
    }
}

/// Which version of a secret to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    /// The version carrying this label.
    Stage(Stage),
    /// This version number.
    Version(u32),
}

/// A secret value in memory: zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(Zeroizing::new(value.into()))
    }

    /// The value. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// Non-secret facts about one version, kept by the backend with its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// The secret's path.
    pub path: String,
    /// Version number, from 1, never reused.
    pub version: u32,
    /// Labels on this version.
    pub stages: Vec<Stage>,
    /// When the version was written.
    pub created_at: Timestamp,
    /// Non-secret attributes, e.g. `username` (blue-green slot role),
    /// `not_after` (certificates), `rotation_id`, `grace_until`, `disabled_at`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl SecretVersion {
    /// Whether the version carries `stage`.
    pub fn has(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }

    /// An attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Applies label moves and attribute merges to `versions` with the
/// [`SecretBackend`](crate::ports::SecretBackend) port's semantics, for
/// every backend that keeps labels itself: each `(stage, Some(v))` moves the
/// label to version `v` (off whichever version had it), `(stage, None)`
/// removes it; an attribute with an empty value is removed. A version that
/// does not exist is `not_found`, and then nothing is changed. Returns the
/// versions that changed.
pub fn apply_update(
    versions: &mut [SecretVersion],
    moves: &[(Stage, Option<u32>)],
    attributes: &[(u32, BTreeMap<String, String>)],
) -> Result<Vec<SecretVersion>> {
    let targets = moves
        .iter()
        .filter_map(|(_, v)| *v)
        .chain(attributes.iter().map(|(v, _)| *v));
    for v in targets {
        if !versions.iter().any(|x| x.version == v) {
            return Err(Error::not_found(format!("version {v} not found")));
        }
    }
    let before: Vec<SecretVersion> = versions.to_vec();
    for (stage, target) in moves {
        for x in versions.iter_mut() {
            x.stages.retain(|s| s != stage);
            if Some(x.version) == *target {
                x.stages.push(*stage);
                x.stages.sort();
            }
        }
    }
    for (v, attrs) in attributes {
        if let Some(x) = versions.iter_mut().find(|x| x.version == *v) {
            for (k, val) in attrs {
                if val.is_empty() {
                    x.attributes.remove(k);
                } else {
                    x.attributes.insert(k.clone(), val.clone());
                }
            }
        }
    }
    Ok(versions
        .iter()
        .zip(before)
        .filter(|(now, was)| **now != *was)
        .map(|(now, _)| now.clone())
        .collect())
}

/// Rotation strategy (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Write CURRENT, then verify; restore the previous value on failure.
    Immediate,
    /// Write PENDING, verify, then move the labels atomically.
    Staged,
    /// Old and new both valid at the target until the grace period ends; then the old is disabled.
    DualWrite,
    /// Two credential slots; rotate the idle one, then flip.
    BlueGreen,
}

impl Strategy {
    /// All strategies.
    pub const ALL: [Strategy; 4] = [
        Strategy::Immediate,
        Strategy::Staged,
        Strategy::DualWrite,
        Strategy::BlueGreen,
    ];

    /// The stable string (`immediate`, `staged`, `dual-write`, `blue-green`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::Staged => "staged",
            Strategy::DualWrite => "dual-write",
            Strategy::BlueGreen => "blue-green",
        }
    }

    /// Parses a strategy; `_` and `-` are interchangeable.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.replace('_', "-").to_ascii_lowercase();
        Strategy::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How new values are generated (seed 001).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Generator {
    /// Random characters from a charset.
    Random {
        /// Length in characters (1 to 4096).
        length: u32,
        /// The charset.
        charset: Charset,
    },
    /// A UUID v4.
    Uuid,
    /// Hexadecimal characters (length in characters, 1 to 4096).
    Hex {
        /// Length in characters.
        length: u32,
    },
}

impl Default for Generator {
    fn default() -> Self {
        Generator::Random {
            length: 32,
            charset: Charset::Alphanumeric,
        }
    }
}

/// Characters a random generator draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// `A-Z a-z 0-9`.
    Alphanumeric,
    /// Alphanumeric plus `!#$%&*+-.=?@^_~`.
    Symbols,
    /// `0-9`.
    Digits,
    /// `a-z`.
    Lower,
    /// `a-f0-9`.
    Hex,
}

impl Charset {
    fn alphabet(self) -> &'static [u8] {
        match self {
            Charset::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            Charset::Symbols => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&*+-.=?@^_~",
            Charset::Digits => b"0123456789",
            Charset::Lower => b"abcdefghijklmnopqrstuvwxyz",
            Charset::Hex => b"0123456789abcdef",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alphanumeric" | "alnum" => Charset::Alphanumeric,
            "symbols" | "ascii" => Charset::Symbols,
            "digits" => Charset::Digits,
            "lower" => Charset::Lower,
            "hex" => Charset::Hex,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Charset::Alphanumeric => "alphanumeric",
            Charset::Symbols => "symbols",
            Charset::Digits => "digits",
            Charset::Lower => "lower",
            Charset::Hex => "hex",
        }
    }
}

const MAX_GENERATED: u32 = 4096;

impl Generator {
    /// Parses `random:LEN[:CHARSET]`, `uuid` or `hex:LEN`; errors are
    /// `invalid_policy` naming the `generator` field.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |m: String| crate::policy::invalid_field("generator", m);
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or_default();
        let length = |p: Option<&str>| -> Result<u32> {
            let n: u32 = p
                .ok_or_else(|| bad(format!("{spec:?} needs a length")))?
                .parse()
                .map_err(|_| bad(format!("{spec:?}: length must be a positive number")))?;
            if n == 0 || n > MAX_GENERATED {
                return Err(bad(format!("{spec:?}: length must be 1 to {MAX_GENERATED}")));
            }
            Ok(n)
        };
        let generator = match kind {
            "random" => {
                let length = length(parts.next())?;
                let charset = match parts.next() {
                    None => Charset::Alphanumeric,
                    Some(c) => Charset::parse(c).ok_or_else(|| {
                        bad(format!(
                            "unknown charset {c:?}: use alphanumeric, symbols, digits, lower or hex"
                        ))
                    })?,
                };
                Generator::Random { length, charset }
            }
            "uuid" => Generator::Uuid,
            "hex" => Generator::Hex {
                length: length(parts.next())?,
            },
            _ => {
                return Err(bad(format!(
                    "unknown generator {spec:?}: use random:LEN[:CHARSET], uuid or hex:LEN"
                )));
            }
        };
        if parts.next().is_some() {
            return Err(bad(format!("{spec:?} has too many parts")));
        }
        Ok(generator)
    }

    /// The spec string this generator parses from.
    pub fn spec(&self) -> String {
        match self {
            Generator::Random { length, charset } => format!("random:{length}:{}", charset.as_str()),
            Generator::Uuid => "uuid".into(),
            Generator::Hex { length } => format!("hex:{length}"),
        }
    }

    /// Generates a value from `random` (a cryptographically secure source
    /// filling the buffer). Characters are drawn without modulo bias
    /// (rejection sampling).
    pub fn generate(&self, random: &dyn Fn(&mut [u8]) -> Result<()>) -> Result<SecretValue> {
        match self {
            Generator::Uuid => {
                let mut b = [0u8; 16];
                random(&mut b)?;
                Ok(SecretValue::new(
                    uuid::Builder::from_random_bytes(b).into_uuid().to_string(),
                ))
            }
            Generator::Hex { length } => draw(Charset::Hex.alphabet(), *length, random),
            Generator::Random { length, charset } => draw(charset.alphabet(), *length, random),
        }
    }
}

fn draw(alphabet: &[u8], length: u32, random: &dyn Fn(&mut [u8]) -> Result<()>) -> Result<SecretValue> {
    // Largest multiple of the alphabet size below 256: bytes at or above it
    // are rejected so every character is equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = Zeroizing::new(String::with_capacity(length as usize));
    let mut buf = Zeroizing::new(vec![0u8; (length as usize).max(16) * 2]);
    while out.len() < length as usize {
        random(&mut buf)?;
        for &b in buf.iter() {
            if (b as usize) < limit && out.len() < length as usize {
                out.push(char::from(alphabet[b as usize % alphabet.len()]));
            }
        }
    }
    Ok(SecretValue(out))
}

/// Per-secret settings: what the secret is for and how it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretConfig {
    /// Database: path of the secret holding the admin connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret: Option<String>,
    /// Database: the role whose password rotates (blue-green: `<role>_blue` / `<role>_green`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Executable run for each rotation step (`create`, `set`, `test`, `finish`, `rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Script: keep the script's stdout (redacted) in the rotation history,
    /// in its own `stdout` field that only admins are shown. Off by default:
    /// a script's stdout may carry a value in a form redaction misses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub script_log: bool,
    /// Verification tests run before promotion, in addition to the policy's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<String>,
    /// Generator used when the policy names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// Certificate: path of the secret holding the issuing CA (PEM certificate and key); self-signed without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    /// Certificate: issue a CA certificate (basic constraints CA, may sign certificates).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ca: bool,
    /// Certificate: subject common name and DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Certificate: validity of new certificates in days (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
    /// Certificate: renew when the current certificate expires within this many days (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_days: Option<u32>,
}

/// A secret's metadata (its values live in the [`crate::ports::SecretBackend`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Path, e.g. `db/prod/app`.
    pub path: String,
    /// Type.
    #[serde(rename = "type")]
    pub secret_type: SecretType,
    /// Policy used by `secret rotate` and schedules when none is given.
    #[serde(default)]
    pub policy: Option<String>,
    /// Settings.
    #[serde(default)]
    pub config: SecretConfig,
    /// When the secret was first written.
    pub created_at: Timestamp,
    /// When its metadata last changed.
    pub updated_at: Timestamp,
    /// When a rotation last completed.
    #[serde(default)]
    pub last_rotated_at: Option<Timestamp>,
}

/// Status of a rotation as shown in history and status (seed 001's `RotationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStatus {
    /// Recorded, not started.
    Pending,
    /// Creating, promoting, finishing or rolling back.
    InProgress,
    /// Testing the new value.
    Verifying,
    /// Completed.
    Success,
    /// Failed without rollback.
    Failed,
    /// Rolled back; the previous value is current.
    RolledBack,
}

impl RotationStatus {
    /// The status of a run in `state`.
    pub fn of(state: crate::run::RunState) -> Self {
        use crate::run::RunState as S;
        match state {
            S::Pending => RotationStatus::Pending,
            S::Creating | S::Promoting | S::Finishing | S::RollingBack => RotationStatus::InProgress,
            S::Verifying => RotationStatus::Verifying,
            S::Completed => RotationStatus::Success,
            S::Failed => RotationStatus::Failed,
            S::RolledBack => RotationStatus::RolledBack,
        }
    }

    /// The stable string.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStatus::Pending => "pending",
            RotationStatus::InProgress => "in_progress",
            RotationStatus::Verifying => "verifying",
            RotationStatus::Success => "success",
            RotationStatus::Failed => "failed",
            RotationStatus::RolledBack => "rolled_back",
        }
    }
}

/// Values shorter than this (in bytes) are redacted as they are only, not
/// in their encodings: the hex or base64 of a 3-byte value is common text.
const MIN_ENCODED_LEN: usize = 6;

/// Shortest alignment-independent base64 fragment worth redacting.
const MIN_BASE64_CORE: usize = 8;

/// Every form in which `value` may show up in captured text, longest
/// first, without duplicates: as is; JSON-escaped; and, for values of at
/// least 6 bytes, base64 (standard and URL-safe alphabets, padded and
/// unpadded, and the part of its base64 that is the same wherever it sits
/// inside a longer base64 text), hex (lower and upper case) and
/// percent-encoded (RFC 3986 component encoding, every non-alphanumeric
/// byte encoded, `+` for space; upper- and lower-case escapes).
///
/// Only what a script or a server is likely to print is covered:
/// redaction is a last line of defence, not a guarantee against output
/// that transforms a value in any other way.
pub fn redaction_forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    let mut forms = Vec::new();
    if value.is_empty() {
        return forms;
    }
    forms.push(value.to_owned());
    let escaped = serde_json::to_string(value).unwrap_or_default();
    if let Some(inner) = escaped.get(1..escaped.len().saturating_sub(1)) {
        forms.push(inner.to_owned());
    }
    let bytes = value.as_bytes();
    if bytes.len() >= MIN_ENCODED_LEN {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(bytes));
        }
        // Inside a longer base64 text the value starts at byte offset 0, 1
        // or 2 of a 3-byte group; the characters that depend on its bytes
        // only are the same whatever surrounds it.
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(&shifted);
                let skip = [0, 2, 3][offset];
                let drop_last = usize::from(shifted.len() % 3 != 0);
                if let Some(core) = encoded.get(skip..encoded.len().saturating_sub(drop_last))
                    && core.len() >= MIN_BASE64_CORE
                {
                    forms.push(core.to_owned());
                }
            }
        }
        let hex_lower = hex::encode(bytes);
        forms.push(hex_lower.to_ascii_uppercase());
        forms.push(hex_lower);
        for set in [RFC3986_COMPONENT, percent_encoding::NON_ALPHANUMERIC] {
            let upper = percent_encoding::utf8_percent_encode(value, set).to_string();
            forms.push(upper.replace("%20", "+"));
            forms.push(lower_escapes(&upper));
            forms.push(upper);
        }
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// What RFC 3986 lets a URL component keep unencoded: letters, digits and
/// `-._~` (as JavaScript's `encodeURIComponent` does, plus `!'()*` encoded).
const RFC3986_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `%XX` escapes in lower case (`%2f`), the rest unchanged.
fn lower_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut after_percent = 0;
    for c in encoded.chars() {
        if c == '%' {
            after_percent = 2;
            out.push(c);
        } else if after_percent > 0 {
            after_percent -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces every occurrence of each value in `text`, in each of its
/// [`redaction_forms`] (as is, JSON-escaped, base64, hex,
/// percent-encoded), with `[redacted]`: script output and target messages
/// never carry a secret. Longer forms go first, so a value containing
/// another is replaced whole.
pub fn redact(text: &str, values: &[&SecretValue]) -> String {
    let mut forms: Vec<String> = values.iter().flat_map(|v| redaction_forms(v.expose())).collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    let mut out = text.to_owned();
    for form in &forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32, stages: &[Stage]) -> SecretVersion {
        SecretVersion {
            path: "p".into(),
            version: n,
            stages: stages.to_vec(),
            created_at: Timestamp::default(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn moving_a_label_takes_it_off_its_old_version() {
        let mut versions = vec![
            v(1, &[Stage::Previous]),
            v(2, &[Stage::Current]),
            v(3, &[Stage::Pending]),
        ];
        let changed = apply_update(
            &mut versions,
            &[
                (Stage::Current, Some(3)),
                (Stage::Previous, Some(2)),
                (Stage::Pending, None),
            ],
            &[(2, BTreeMap::from([("grace_until".to_owned(), "x".to_owned())]))],
        )
        .unwrap();
        assert_eq!(changed.len(), 3);
        assert!(versions[0].stages.is_empty());
        assert_eq!(versions[1].stages, vec![Stage::Previous]);
        assert_eq!(versions[1].attr("grace_until"), Some("x"));
        assert_eq!(versions[2].stages, vec![Stage::Current]);
    }

    #[test]
    fn an_update_naming_a_missing_version_changes_nothing() {
        let mut versions = vec![v(1, &[Stage::Current]), v(2, &[Stage::Pending])];
        let before = versions.clone();
        let moves = [(Stage::Current, Some(2)), (Stage::Previous, Some(9))];
        assert!(apply_update(&mut versions, &moves, &[]).is_err());
        let attrs = [(7, BTreeMap::from([("k".to_owned(), "v".to_owned())]))];
        assert!(apply_update(&mut versions, &[(Stage::Current, Some(2))], &attrs).is_err());
        assert_eq!(versions, before);
    }
    use crate::error::Reason;

    fn counter_random() -> impl Fn(&mut [u8]) -> Result<()> {
        let state = std::sync::Mutex::new(0u8);
        move |buf: &mut [u8]| {
            let mut s = state.lock().unwrap();
            for b in buf {
                *s = s.wrapping_add(97);
                *b = *s;
            }
            Ok(())
        }
    }

    #[test]
    fn generators_have_the_asked_shape() {
        let r = counter_random();
        let v = Generator::parse("random:40:digits").unwrap().generate(&r).unwrap();
        assert_eq!(v.expose().len(), 40);
        assert!(v.expose().bytes().all(|b| b.is_ascii_digit()));
        let v = Generator::parse("hex:64").unwrap().generate(&r).unwrap();
        assert_eq!(v.expose().len(), 64);
        assert!(v.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        let v = Generator::parse("uuid").unwrap().generate(&r).unwrap();
        let u = uuid::Uuid::parse_str(v.expose()).unwrap();
        assert_eq!(u.get_version_num(), 4);
        let v = Generator::parse("random:12").unwrap().generate(&r).unwrap();
        assert!(v.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn bad_generators_name_the_field() {
        for spec in [
            "random",
            "random:0",
            "random:x",
            "hex:99999",
            "guid",
            "random:8:emoji",
            "uuid:4",
        ] {
            let e = Generator::parse(spec).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidPolicy, "{spec}");
            assert!(e.message.contains("`generator`"), "{spec}: {}", e.message);
        }
    }

    #[test]
    fn paths_are_checked() {
        for ok in ["db/prod/app", "api-key", "a.b_c/d"] {
            check_path(ok).unwrap();
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "trailing/",
            "sp ace",
            "x\n",
            "a\u{202e}b",
            "db/\u{200b}prod",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encodings_of_values_are_redacted() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let secret = "n3w/Secret+value?&= ~ok";
        let v = SecretValue::new(secret);
        let exact = [
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            hex::encode(secret),
            hex::encode_upper(secret),
            "n3w%2FSecret%2Bvalue%3F%26%3D%20~ok".to_owned(),
            "n3w%2fSecret%2bvalue%3f%26%3d%20~ok".to_owned(),
            "n3w%2FSecret%2Bvalue%3F%26%3D+~ok".to_owned(),
            "n3w%2FSecret%2Bvalue%3F%26%3D%20%7Eok".to_owned(),
        ];
        for form in exact {
            assert_eq!(
                redact(&format!("before {form} after"), &[&v]),
                "before [redacted] after",
                "{form}"
            );
        }
        // Base64 of a document holding the value, at each alignment: at
        // most the few characters mixing the value with its neighbours stay.
        for prefix in ["", "x", "xy", "{\"password\":\""] {
            let doc = format!("{prefix}{secret}\"}}");
            for form in [STANDARD.encode(&doc), URL_SAFE_NO_PAD.encode(&doc)] {
                let out = redact(&format!("before {form} after"), &[&v]);
                let rest = out.replace("[redacted]", "");
                assert!(out.contains("[redacted]"), "{form}: {out}");
                assert!(
                    rest.len() <= "before  after".len() + 4 + prefix.len() * 4 / 3 + 4,
                    "{form}: {out}"
                );
            }
        }
        // Short values are redacted as they are only.
        let short = SecretValue::new("abc");
        assert_eq!(redact("616263 YWJj abc", &[&short]), "616263 YWJj [redacted]");
        assert!(redaction_forms("").is_empty());
    }

    #[test]
    fn values_never_show_in_debug_and_are_redacted() {
        let v = SecretValue::new("hunter2-secret");
        assert!(!format!("{v:?}").contains("hunter2"));
        assert_eq!(redact("pw=hunter2-secret ok", &[&v]), "pw=[redacted] ok");
    }
}
