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
}

impl ApiError {
    /// An error answered with `status` instead of its reason's status.
    pub fn with_status(error: Error, status: StatusCode) -> Self {
        ApiError {
            error,
            status: Some(status),
        }
    }

    /// The stable reason.
    pub fn reason(&self) -> Reason {
        self.error.reason
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError { error, status: None }
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
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(status_for(Reason::Tampered), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_for(Reason::RotationFailed), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
