//! Identifier newtypes, parsed once at the edge so invalid ids cannot exist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::{Error, Result};

/// Whether `c` is a control character or a Unicode format character
/// (general category Cf: bidi overrides such as U+202E, zero-width
/// characters such as U+200B, the BOM, ...). Such characters are invisible
/// or reorder the text around them, so two different ids could look the
/// same; no id, path or name accepts them.
pub fn is_invisible(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// Checks that free text used as an id or a name (`what`, e.g. `value id`)
/// holds no control or format character (see [`is_invisible`]). Lengths
/// and other rules are the caller's. The error names the offending code
/// point, never the text.
pub fn check_visible(what: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| is_invisible(*c)) {
        None => Ok(()),
        Some(c) => Err(Error::invalid_input(format!(
            "invalid {what}: it contains the invisible or control character U+{:04X}; use visible characters only",
            u32::from(c)
        ))),
    }
}

/// Checks the shared id syntax: 1..=128 chars of `[A-Za-z0-9._:-]`, starting
/// with an alphanumeric character.
fn check_name(kind: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid {kind} {value:?}: use 1 to 128 letters, digits, '.', '_', '-' or ':', starting with a letter or digit"
        )))
    }
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parse and validate an id.
            pub fn parse(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                check_name($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

name_id!(
    /// An organisational authority, e.g. `org-acme`.
    AuthorityId,
    "authority id"
);
name_id!(
    /// An agent whose trust chain the authority signs.
    AgentId,
    "agent id"
);
name_id!(
    /// A signing key, e.g. `org-acme/k-0192...`; unique across the store.
    KeyId,
    "key id"
);

name_id!(
    /// An encryption keyring, e.g. `payments`.
    KeyringName,
    "keyring name"
);

impl KeyId {
    /// A fresh key id for `authority`, unique and time ordered.
    pub fn generate(authority: &AuthorityId) -> Self {
        KeyId(format!("{}.k-{}", authority, uuid::Uuid::now_v7().simple()))
    }
}

/// The id of a stored value within its keyring: 1 to 512 bytes of UTF-8
/// without control or format characters (see [`is_invisible`]; paths like
/// `db/prod/password` are fine).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ValueId(String);

impl ValueId {
    /// Parse and validate a value id.
    pub fn parse(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        if value.is_empty() || value.len() > 512 {
            return Err(Error::invalid_input(format!(
                "invalid value id {:?}: use 1 to 512 bytes without control or invisible characters",
                value.chars().take(64).collect::<String>()
            )));
        }
        check_visible("value id", &value)?;
        Ok(ValueId(value))
    }

    /// Accepts a value id read back from a store or a backup under the
    /// rules it was written with: 1 to 512 bytes without control
    /// characters. Format characters were allowed before [`ValueId::parse`]
    /// refused them, so values stored under such ids stay readable,
    /// exportable and migratable. Input from users goes through
    /// [`ValueId::parse`]; this is also what deserialisation uses.
    pub fn from_stored(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        if value.is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
            return Err(Error::invalid_input(format!(
                "invalid stored value id {:?}: 1 to 512 bytes without control characters expected",
                value.chars().take(64).collect::<String>()
            )));
        }
        Ok(ValueId(value))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ValueId {
    type Error = Error;
    /// [`ValueId::from_stored`]: deserialisation reads stores and backups.
    fn try_from(s: String) -> Result<Self> {
        Self::from_stored(s)
    }
}

impl From<ValueId> for String {
    fn from(id: ValueId) -> String {
        id.0
    }
}

/// A rotation run id (UUID v7: unique and time ordered). Also the
/// idempotency token of a run: every step is keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RotationId(pub uuid::Uuid);

impl RotationId {
    /// A fresh, time-ordered rotation id.
    pub fn generate() -> Self {
        RotationId(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RotationId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(RotationId)
            .map_err(|_| Error::invalid_input(format!("invalid rotation id {s:?}: expected a UUID")))
    }
}

/// What a rotation acts on: `authority:<id>`, `keyring:<name>` or `secret:<path>`.
///
/// Policies, schedules, runs and audit events are keyed by target so the
/// three kinds share one engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// An organisational authority's signing key.
    Authority(AuthorityId),
    /// An encryption keyring.
    Keyring(KeyringName),
    /// A stored secret.
    Secret(String),
    /// The store itself (events not about one credential, e.g. initialisation).
    Store,
}

impl Target {
    /// The kind prefix: `authority`, `keyring`, `secret` or `store`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Authority(_) => "authority",
            Target::Keyring(_) => "keyring",
            Target::Secret(_) => "secret",
            Target::Store => "store",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Authority(id) => write!(f, "authority:{id}"),
            Target::Keyring(name) => write!(f, "keyring:{name}"),
            Target::Secret(path) => write!(f, "secret:{path}"),
            Target::Store => f.write_str("store"),
        }
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "store" {
            return Ok(Target::Store);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            Error::invalid_input(format!(
                "invalid target {s:?}: expected authority:<id>, keyring:<name> or secret:<path>"
            ))
        })?;
        match kind {
            "authority" => Ok(Target::Authority(AuthorityId::parse(rest)?)),
            "keyring" => Ok(Target::Keyring(KeyringName::parse(rest)?)),
            "secret" => {
                crate::secret::check_path(rest)?;
                Ok(Target::Secret(rest.to_owned()))
            }
            _ => Err(Error::invalid_input(format!(
                "invalid target {s:?}: expected authority:<id>, keyring:<name> or secret:<path>"
            ))),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_bad_syntax() {
        assert!(AuthorityId::parse("org-acme").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(129)] {
            assert!(AuthorityId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_reject_invisible_characters() {
        for bad in ["a\u{202e}b", "a\u{200b}b", "\u{feff}a", "a\u{2066}"] {
            assert!(AuthorityId::parse(bad).is_err(), "{bad:?} accepted");
            assert!(AgentId::parse(bad).is_err(), "{bad:?} accepted");
            assert!(KeyId::parse(bad).is_err(), "{bad:?} accepted");
            assert!(KeyringName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn value_ids_reject_format_and_control_characters() {
        assert!(ValueId::parse("db/prod/pässwort").is_ok());
        for bad in [
            "a\u{202e}b",
            "a\u{200b}b",
            "\u{feff}a",
            "a\u{2066}b",
            "a\u{ad}b",
            "a\nb",
            "a\u{7f}",
        ] {
            let e = ValueId::parse(bad).unwrap_err();
            assert_eq!(e.reason, crate::Reason::InvalidInput, "{bad:?}");
        }
        let e = ValueId::parse("a\u{202e}b").unwrap_err();
        assert!(e.message.contains("U+202E"), "{}", e.message);
    }

    #[test]
    fn value_ids_stored_before_the_check_stay_readable() {
        let old = "a\u{200b}b";
        assert!(ValueId::parse(old).is_err());
        assert_eq!(ValueId::from_stored(old).unwrap().as_str(), old);
        let read: ValueId = serde_json::from_str("\"a\\u200bb\"").unwrap();
        assert_eq!(read.as_str(), old);
        for bad in ["", "a\nb"] {
            assert!(ValueId::from_stored(bad).is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<ValueId>(serde_json::json!(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn check_visible_accepts_plain_unicode() {
        assert!(check_visible("name", "Zürich 東京 — ops").is_ok());
        assert!(check_visible("name", "a\u{200d}b").is_err());
    }

    #[test]
    fn secret_targets_are_checked_paths() {
        assert!("secret:db/prod".parse::<Target>().is_ok());
        for bad in ["secret:", "secret:a\u{202e}b", "secret:a//b", "secret:../x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn targets_round_trip() {
        for t in ["authority:org-acme", "keyring:payments", "secret:db/prod", "store"] {
            assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
        }
        assert!("nope:x".parse::<Target>().is_err());
        assert!("authority:".parse::<Target>().is_err());
    }
}
