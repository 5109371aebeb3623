//! Adapters of the secret-rotation ports of `rotation-core`
//! ([`CredentialTarget`](rotation_core::ports::CredentialTarget) and
//! [`Verifier`](rotation_core::ports::Verifier)):
//!
//! - [`PostgresRoleTarget`]: a PostgreSQL role whose password is changed
//!   with `ALTER ROLE ... PASSWORD` over an admin connection (sending only
//!   its SCRAM-SHA-256 verifier, computed here), and tested by logging in
//!   with a fresh connection;
//! - [`ScriptTarget`]: an operator's executable run once per step, with the
//!   step's values as JSON on stdin;
//! - [`HttpVerifier`]: the `http:<URL>` test, a `GET` with the new value as
//!   bearer token.
//!
//! No error message, log line, [`StepOutput::log`](rotation_core::ports::StepOutput)
//! or `Debug` output of this crate carries a secret value: captured text is
//! passed through [`redact`](rotation_core::secret::redact) with every value
//! of the step, and URLs are shown without their userinfo.

mod http;
mod postgres;
mod script;
mod text;

pub use http::HttpVerifier;
pub use postgres::PostgresRoleTarget;
pub use script::{BASE_ENV, ScriptTarget};
