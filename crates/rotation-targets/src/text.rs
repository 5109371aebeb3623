//! Shared helpers: redaction of captured text, truncation, URLs without
//! userinfo and the step-to-reason mapping.

use rotation_core::ports::{Step, StepContext};
use rotation_core::secret::{SecretValue, redact};
use rotation_core::{Error, Reason};

/// Every secret value of a step (plus extra ones an adapter knows of, such
/// as the admin password inside a connection URL), in the forms they may
/// show up in captured text: as is and JSON-escaped.
pub(crate) struct Redactor {
    /// Longest first, so a value containing another is replaced whole.
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

    /// Adds a value (and its JSON-escaped form when that differs).
    pub(crate) fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.get(1..escaped.len().saturating_sub(1)).unwrap_or_default();
        if !escaped.is_empty() && escaped != value {
            self.values.push(SecretValue::new(escaped));
        }
        self.values.push(SecretValue::new(value));
        self.values.sort_by_key(|v| std::cmp::Reverse(v.expose().len()));
    }

    /// The length in bytes of the longest value.
    pub(crate) fn longest(&self) -> usize {
        self.values.first().map_or(0, |v| v.expose().len())
    }

    /// `text` with every value replaced by `[redacted]`.
    pub(crate) fn apply(&self, text: &str) -> String {
        let refs: Vec<&SecretValue> = self.values.iter().collect();
        redact(text, &refs)
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
    fn tails_and_urls() {
        assert_eq!(tail("abcdef\n", 3), "…def");
        assert_eq!(tail("ab", 3), "ab");
        let u = url::Url::parse("postgres://u:secretpw@h:5432/db").unwrap();
        assert_eq!(display_url(&u), "postgres://h:5432/db");
    }
}
