//! API errors: a core [`Error`] as JSON `{reason, message, authority_id?,
//! rotation_id?}` with the HTTP status of its reason. The reason-to-status
//! mapping lives here and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rotation_core::{Error, Reason};
use serde::Serialize;

/// The HTTP status of a reason: the one place reasons meet status codes.
pub fn status_for(reason: Reason) -> StatusCode {
    match reason {
        Reason::NotFound => StatusCode::NOT_FOUND,
        // A new credential its verification refused (and the rotation
        // rolled back) is the target's state answering, not a server fault.
        Reason::ConcurrentRotation | Reason::AlreadyExists | Reason::VerificationFailed | Reason::RolledBack => {
            StatusCode::CONFLICT
        }
        Reason::InvalidInput
        | Reason::InvalidPolicy
        | Reason::InvalidScheduleTime
        | Reason::GracePeriodNotExpired
        | Reason::KeyNotInGracePeriod => StatusCode::UNPROCESSABLE_ENTITY,
        Reason::Unauthorized => StatusCode::UNAUTHORIZED,
        Reason::Forbidden => StatusCode::FORBIDDEN,
        Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Reason::BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    /// A status other than the reason's (e.g. 413 for an oversized body).
    status: Option<StatusCode>,
    /// Seconds a rate-limited client should wait (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error answered with `status` instead of its reason's status.
    pub fn with_status(error: Error, status: StatusCode) -> Self {
        ApiError {
            error,
            status: Some(status),
            retry_after: None,
        }
    }

    /// 429 `rate_limited` with `Retry-After: retry_after_seconds` (at least 1).
    pub fn rate_limited(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        ApiError {
            error: Error::new(Reason::RateLimited, message),
            status: None,
            retry_after: Some(retry_after_seconds.max(1)),
        }
    }

    /// The stable reason.
    pub fn reason(&self) -> Reason {
        self.error.reason
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            error,
            status: None,
            retry_after: None,
        }
    }
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
struct Body<'a> {
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_id: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| status_for(self.error.reason));
        if status.is_server_error() {
            // Core messages never carry secret material (see rotation_core::error).
            tracing::error!(reason = %self.error.reason, message = %self.error.message, "request failed");
        }
        let body = Body {
            reason: self.error.reason.as_str(),
            message: &self.error.message,
            authority_id: self.error.authority_id.as_deref(),
            rotation_id: self.error.rotation_id.as_deref(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// Longest field name quoted in a JSON error.
const MAX_QUOTED_FIELD: usize = 64;

/// Reads `bytes` as `T` in one pass; an error is `invalid_input` described
/// by [`describe_json_error`] (never quoting the input).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut reader).map_err(|e| invalid_body(e.inner(), Some(e.path())))?;
    // Trailing characters after the value.
    reader.end().map_err(|e| invalid_body(&e, None))?;
    Ok(value)
}

/// [`from_json`] of a JSON value already read.
pub(crate) fn from_json_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| invalid_body(e.inner(), Some(e.path())))
}

fn invalid_body(error: &serde_json::Error, path: Option<&serde_path_to_error::Path>) -> Error {
    let path = path.map(ToString::to_string);
    let path = path.as_deref().filter(|p| !p.is_empty() && *p != ".");
    Error::invalid_input(format!("invalid JSON body: {}", describe_json_error(error, path)))
}

/// A serde_json error described without any part of the input: the path
/// of the refused field (when known) and what was expected; for a syntax
/// error, only where it is. serde's "invalid type: string \"...\", expected
/// a u32" quotes the submitted value, which may be a secret.
pub(crate) fn describe_json_error(error: &serde_json::Error, path: Option<&str>) -> String {
    use serde_json::error::Category;
    let at = |what: &str| match (error.line(), error.column()) {
        (0, _) => what.to_owned(),
        (line, column) => format!("{what} at line {line} column {column}"),
    };
    match error.classify() {
        Category::Syntax | Category::Io => return at("not valid JSON"),
        Category::Eof => return at("the JSON ends early"),
        Category::Data => {}
    }
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    let expected = || message.rsplit_once(", expected ").map(|(_, e)| e);
    let what = if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        // Names of the target type's fields, not input.
        message.to_owned()
    } else if let Some(rest) = message.strip_prefix("unknown field `") {
        // The name sent is part of the path; quoted when short.
        let name = rest.split_once('`').map(|(n, _)| n).unwrap_or_default();
        let name = if name.chars().count() <= MAX_QUOTED_FIELD && !name.chars().any(char::is_control) {
            format!(" `{name}`")
        } else {
            String::new()
        };
        match expected() {
            Some(e) => format!("unknown field{name}, expected {e}"),
            None => format!("unknown field{name}"),
        }
    } else {
        let kind = if message.starts_with("invalid type") {
            "invalid type"
        } else if message.starts_with("invalid length") {
            "invalid length"
        } else if message.starts_with("unknown variant") {
            "unknown variant"
        } else {
            // invalid value, or a type's own message (which may quote the input).
            "invalid value"
        };
        match expected() {
            Some(e) if kind != "invalid value" || message.starts_with("invalid value") => {
                format!("{kind}, expected {e}")
            }
            _ => kind.to_owned(),
        }
    };
    match path {
        Some(path) => format!("{path}: {what}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        value: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        list: Option<Vec<u32>>,
        role: Option<crate::Role>,
    }

    fn message(input: &str) -> String {
        from_json::<Body>(input.as_bytes()).unwrap_err().message
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        let m = message(r#"{"value": 123456}"#);
        assert_eq!(m, "invalid JSON body: value: invalid type, expected a string");
        let m = message(r#"{"value": "s3cr3t-XYZ", "type": 12345}"#);
        assert_eq!(m, "invalid JSON body: type: invalid type, expected a string");
        let m = message(r#"{"list": [1, "s3cr3t"]}"#);
        assert_eq!(m, "invalid JSON body: list[1]: invalid type, expected u32");
        let m = message(r#"{"list": [1, 99999999999]}"#);
        assert!(m.starts_with("invalid JSON body: list[1]: invalid value"), "{m}");
        assert!(!m.contains("99999999999"), "{m}");
        let m = message(r#"{"role": "s3cr3t"}"#);
        assert!(m.starts_with("invalid JSON body: role: "), "{m}");
        assert!(!m.contains("s3cr3t"), "{m}");
        let m = message(r#"{"value": "s3cr3t", "nope": 1}"#);
        assert!(m.contains("unknown field `nope`, expected one of"), "{m}");
        let m = message("{\"value\": \"s3cr3t\" oops}");
        assert_eq!(m, "invalid JSON body: not valid JSON at line 1 column 20");
        let m = message(r#"{"value": "s3cr3t"#);
        assert!(m.starts_with("invalid JSON body: the JSON ends early at line 1"), "{m}");
        assert!(!m.contains("s3cr3t"), "{m}");
        let m = from_json_value::<Body>(serde_json::json!({"value": 123456}))
            .unwrap_err()
            .message;
        assert_eq!(m, "invalid JSON body: value: invalid type, expected a string");
        let m = from_json::<u32>(b"\"s3cr3t\"").unwrap_err().message;
        assert_eq!(m, "invalid JSON body: invalid type, expected u32");
    }

    #[test]
    fn statuses() {
        assert_eq!(status_for(Reason::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_for(Reason::ConcurrentRotation), StatusCode::CONFLICT);
        assert_eq!(status_for(Reason::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(status_for(Reason::VerificationFailed), StatusCode::CONFLICT);
        assert_eq!(status_for(Reason::RolledBack), StatusCode::CONFLICT);
        assert_eq!(status_for(Reason::InvalidPolicy), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status_for(Reason::GracePeriodNotExpired),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status_for(Reason::KeyNotInGracePeriod),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status_for(Reason::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status_for(Reason::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(status_for(Reason::BackendUnavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_for(Reason::RateLimited), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_for(Reason::Tampered), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_for(Reason::RotationFailed), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
