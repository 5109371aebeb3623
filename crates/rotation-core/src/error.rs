//! The one public error type, with stable machine-readable reasons.
//!
//! Every failure that crosses a crate boundary is an [`Error`]: a stable
//! [`Reason`] (used in CLI exit messages, API bodies and audit events), a
//! human message, and the authority and rotation it concerns when known.
//! Messages never contain secret material: adapters build them from ids and
//! server messages only.

use std::fmt;

/// Stable reason strings. Never renamed once released: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Another rotation of the same target is in progress.
    ConcurrentRotation,
    /// A rotation step failed; see the message.
    RotationFailed,
    /// A schedule time is in the past.
    InvalidScheduleTime,
    /// A key was asked to be revoked before its grace period ended.
    GracePeriodNotExpired,
    /// A key was asked to be revoked that is not in its grace period (or unknown).
    KeyNotInGracePeriod,
    /// The named object does not exist.
    NotFound,
    /// The named object exists already.
    AlreadyExists,
    /// A new credential failed its verification.
    VerificationFailed,
    /// The rotation was rolled back.
    RolledBack,
    /// A policy is malformed.
    InvalidPolicy,
    /// Input failed validation.
    InvalidInput,
    /// Missing or wrong credentials (for example a wrong master password).
    Unauthorized,
    /// Credentials valid but not allowed to do this.
    Forbidden,
    /// A store, custody or other backend could not be reached or failed.
    BackendUnavailable,
    /// Stored data failed an integrity check.
    Tampered,
    /// Too many requests from one caller; retry after the time given.
    RateLimited,
}

impl Reason {
    /// The stable snake_case string of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConcurrentRotation => "concurrent_rotation",
            Reason::RotationFailed => "rotation_failed",
            Reason::InvalidScheduleTime => "invalid_schedule_time",
            Reason::GracePeriodNotExpired => "grace_period_not_expired",
            Reason::KeyNotInGracePeriod => "key_not_in_grace_period",
            Reason::NotFound => "not_found",
            Reason::AlreadyExists => "already_exists",
            Reason::VerificationFailed => "verification_failed",
            Reason::RolledBack => "rolled_back",
            Reason::InvalidPolicy => "invalid_policy",
            Reason::InvalidInput => "invalid_input",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::BackendUnavailable => "backend_unavailable",
            Reason::Tampered => "tampered",
            Reason::RateLimited => "rate_limited",
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 16] = [
        Reason::ConcurrentRotation,
        Reason::RotationFailed,
        Reason::InvalidScheduleTime,
        Reason::GracePeriodNotExpired,
        Reason::KeyNotInGracePeriod,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::VerificationFailed,
        Reason::RolledBack,
        Reason::InvalidPolicy,
        Reason::InvalidInput,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::BackendUnavailable,
        Reason::Tampered,
        Reason::RateLimited,
    ];

    /// Parses a stable reason string.
    pub fn parse(s: &str) -> Option<Self> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Reason::BackendUnavailable | Reason::ConcurrentRotation | Reason::RateLimited
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable reason, the seed's `RotationError` in Rust form.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Stable reason.
    pub reason: Reason,
    /// Human-readable message naming what was wrong and what to do.
    pub message: String,
    /// The authority concerned, if any.
    pub authority_id: Option<String>,
    /// The rotation run concerned, if any.
    pub rotation_id: Option<String>,
    /// The underlying cause, never carrying secret material.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error with a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Error {
            reason,
            message: message.into(),
            authority_id: None,
            rotation_id: None,
            source: None,
        }
    }

    /// Attach the authority this error concerns.
    pub fn with_authority(mut self, id: impl fmt::Display) -> Self {
        self.authority_id = Some(id.to_string());
        self
    }

    /// Attach the rotation run this error concerns.
    pub fn with_rotation(mut self, id: impl fmt::Display) -> Self {
        self.rotation_id = Some(id.to_string());
        self
    }

    /// Attach an underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for [`Reason::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Reason::NotFound, message)
    }

    /// Shorthand for [`Reason::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(Reason::InvalidInput, message)
    }

    /// Shorthand for [`Reason::BackendUnavailable`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(Reason::BackendUnavailable, message)
    }

    /// Shorthand for [`Reason::Tampered`].
    pub fn tampered(message: impl Into<String>) -> Self {
        Self::new(Reason::Tampered, message)
    }
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
