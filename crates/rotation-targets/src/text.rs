//! Shared helpers: redaction of captured text, truncation, URLs without
//! userinfo and the step-to-reason mapping.

use rotation_core::ports::{Step, StepContext};
use rotation_core::secret::{SecretValue, redaction_forms};
use rotation_core::{Error, Reason};

/// Every secret value of a step (plus extra ones an adapter knows of, such
/// as the admin password inside a connection URL), in the forms they may
/// show up in captured text ([`redaction_forms`]: as is, JSON-escaped,
/// base64, hex, percent-encoded).
pub(crate) struct Redactor {
    /// Every form of every value, longest first, so a value containing
    /// another is replaced whole.
    values: Vec<SecretValue>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// The values of `ctx` (current, pending, previous, references).
    pub(crate) fn for_step(ctx: &StepContext) -> Self {
        let mut r = Redactor { values: Vec::new() };
        for v in ctx.values() {
            r.add(v.expose());
        }
        r
    }

    /// A redactor of these values (unit tests).
    #[cfg(test)]
    pub(crate) fn for_step_values(values: &[&str]) -> Self {
        let mut r = Redactor { values: Vec::new() };
        for v in values {
            r.add(v);
        }
        r
    }

    /// Adds a value in all its [`redaction_forms`].
    pub(crate) fn add(&mut self, value: &str) {
        self.values
            .extend(redaction_forms(value).into_iter().map(SecretValue::new));
        self.values.sort_by_key(|v| std::cmp::Reverse(v.expose().len()));
        self.values.dedup();
    }

    /// The length in bytes of the longest form of a value.
    pub(crate) fn longest(&self) -> usize {
        self.values.first().map_or(0, |v| v.expose().len())
    }

    /// `text` with every form of every value replaced by `[redacted]`.
    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            if out.contains(v.expose()) {
                out = out.replace(v.expose(), "[redacted]");
            }
        }
        out
    }
}

/// The last `max` characters of `text` (whole text if shorter), marked
/// with a leading `…` when cut. Call on redacted text only.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let skip = count - max;
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

/// `url` without username and password (and so printable).
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    // Both fail only for URLs that cannot have userinfo (then there is none).
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The reason a failing step gets: `verification_failed` for `test`,
/// `rotation_failed` otherwise.
pub(crate) fn step_reason(step: Step) -> Reason {
    match step {
        Step::Test => Reason::VerificationFailed,
        _ => Reason::RotationFailed,
    }
}

/// An error of a failing step (see [`step_reason`]).
pub(crate) fn step_error(step: Step, message: impl Into<String>) -> Error {
    Error::new(step_reason(step), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_json_escaped_forms_longest_first() {
        let mut r = Redactor { values: Vec::new() };
        r.add("pa\"ss");
        r.add("pa");
        let out = r.apply(r#"{"v":"pa\"ss"} raw pa"ss and pa"#);
        assert!(!out.contains("pa"), "{out}");
        assert_eq!(r.longest(), 6);
    }

    #[test]
    fn redacts_base64_hex_and_percent_encodings() {
        let r = Redactor::for_step_values(&["new-value/42?"]);
        for shown in [
            "bmV3LXZhbHVlLzQyPw==",
            "bmV3LXZhbHVlLzQyPw",
            "6e65772d76616c75652f34323f",
            "6E65772D76616C75652F34323F",
            "new-value%2F42%3F",
            "new-value%2f42%3f",
        ] {
            assert_eq!(r.apply(&format!("out: {shown}.")), "out: [redacted].", "{shown}");
        }
        assert!(r.longest() >= "6e65772d76616c75652f34323f".len());
    }

    #[test]
    fn tails_and_urls() {
        assert_eq!(tail("abcdef\n", 3), "…def");
        assert_eq!(tail("ab", 3), "ab");
        let u = url::Url::parse("postgres://u:secretpw@h:5432/db").unwrap();
        assert_eq!(display_url(&u), "postgres://h:5432/db");
    }
}
