//! Adapters of the [`Notifier`](rotation_core::ports::Notifier) port:
//! HMAC-signed webhooks, email over SMTP, and a [`Router`] that picks one by
//! recipient.
//!
//! This crate depends on `rotation-core` only: HMAC goes through the
//! [`CryptoProvider`](rotation_core::ports::CryptoProvider) port (ring, in
//! `rotation-crypto`, supplied by the binaries), and TLS is rustls on ring
//! (reqwest's `rustls-tls`, lettre's `tokio1-rustls-tls`).
//!
//! - [`WebhookClient`] posts a notification as JSON to any `http(s)` URL,
//!   signed with one shared secret; [`WebhookNotifier`] is a client bound to
//!   one URL.
//! - [`SmtpNotifier`] sends a plain-text email through an SMTP relay.
//! - [`Router`] implements `deliver(recipient, ..)` for the recipients of a
//!   policy's notify list: `http://…` / `https://…` → webhook,
//!   `mailto:ADDRESS` → SMTP, `log` → [`LogNotifier`](rotation_core::ports::LogNotifier).
//!   It is built from a [`RouterConfig`].
//!
//! Notifications never carry secret material, and nothing here adds any:
//! errors name the reason (`backend_unavailable` for a failed delivery,
//! `invalid_input` for a bad recipient or configuration) and never contain
//! the HMAC secret, the SMTP password, or a URL's userinfo or query.
//!
//! # Webhook request
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Rotation-Event: <event>
//! X-Rotation-Timestamp: <unix seconds, decimal>
//! X-Rotation-Signature: sha256=<64 lowercase hex digits>
//!
//! {"event":"key_rotated","target":"keyring:payments","rotation_id":"0193…","details":{…},"sent_at":"2026-11-22T03:04:05.123456Z"}
//! ```
//!
//! The body is one JSON object with exactly the fields `event` (string),
//! `target` (string, `kind:name`), `rotation_id` (UUID string or `null`),
//! `details` (any JSON value) and `sent_at` (RFC 3339 UTC, microseconds).
//!
//! # Webhook signatures
//!
//! ```text
//! X-Rotation-Signature: sha256=hex(HMAC-SHA256(key = secret, message = timestamp || "." || body))
//! ```
//!
//! - `secret` is the UTF-8 bytes of the configured webhook secret;
//! - `timestamp` is the exact ASCII text of the `X-Rotation-Timestamp` header
//!   (Unix time in seconds, decimal, no sign, no padding);
//! - `body` is the exact bytes of the request body, as received (verify
//!   before parsing or re-serialising the JSON);
//! - the MAC is written as 64 lowercase hexadecimal digits after `sha256=`.
//!
//! Each attempt is signed afresh, so a retried delivery carries a newer
//! timestamp. A receiver recomputes the MAC over the received timestamp and
//! body, compares it with the header **in constant time**, and rejects a
//! timestamp more than a few minutes (we suggest 5) away from its own clock,
//! which bounds replays. [`signature`] computes the header value.
//!
//! # Delivery and retries
//!
//! A 2xx answer means delivered. Any other answer, a redirect (redirects are
//! not followed), a timeout or a connection error is retried inside the same
//! delivery up to [`WebhookOptions::attempts`] times in all, waiting
//! `backoff_base_ms × 2^(n-1)` before the n-th retry; a 4xx other than 408
//! and 429 is not retried (the receiver refused the request). These retries
//! only smooth over short blips: the outbox redelivers later what failed.
//!
//! # Destinations
//!
//! Webhooks are never posted to loopback, private, link-local (cloud
//! metadata) or other internal addresses unless the allowlist
//! (`ROTATION_URL_ALLOWLIST`, [`RouterConfig::url_allowlist`],
//! [`WebhookClient::with_allowlist`]) covers them: the host is resolved
//! once per delivery and only allowed addresses are used. A refused
//! destination is `invalid_policy`; [`check_webhook_url`] checks a URL
//! before it is stored.

mod router;
mod secret;
mod smtp;
mod webhook;

pub use router::{Recipient, Router, RouterConfig};
pub use secret::Secret;
pub use smtp::{SmtpConfig, SmtpNotifier, SmtpTls};
pub use webhook::{
    EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookClient, WebhookNotifier, WebhookOptions,
    check_webhook_url, signature,
};
