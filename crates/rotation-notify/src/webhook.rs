//! Webhooks: notifications POSTed as JSON, signed with HMAC-SHA256.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use rotation_core::ports::{CryptoProvider, Notification, Notifier};
use rotation_core::time::{self, Clock, SystemClock};
use rotation_core::{Error, Result};
use serde::{Deserialize, Serialize};
use url::Url;

use rotation_core::outbound::UrlAllowlist;

use crate::secret::Secret;

/// Header carrying the notification's event type.
pub const EVENT_HEADER: &str = "X-Rotation-Event";
/// Header carrying the signing time, Unix seconds in decimal.
pub const TIMESTAMP_HEADER: &str = "X-Rotation-Timestamp";
/// Header carrying `sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Rotation-Signature";

/// Retry and timeout settings of one webhook delivery.
///
/// Deserializes from `{"attempts": 3, "backoff_base_ms": 200, "timeout_ms": 10000}`;
/// every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookOptions {
    /// Attempts in all within one delivery, at least 1 (default 3).
    pub attempts: u32,
    /// Wait before the first retry in milliseconds, doubled before each
    /// further retry (default 200).
    pub backoff_base_ms: u64,
    /// Timeout of each request in milliseconds, connection included
    /// (default 10 000).
    pub timeout_ms: u64,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            attempts: 3,
            backoff_base_ms: 200,
            timeout_ms: 10_000,
        }
    }
}

impl WebhookOptions {
    /// The wait before retry number `retry` (1 for the first retry).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64 << retry.saturating_sub(1).min(16);
        Duration::from_millis(self.backoff_base_ms.saturating_mul(factor))
    }
}

/// The value of the [`SIGNATURE_HEADER`] for `body` sent at `timestamp`
/// (Unix seconds): `sha256=` followed by the lowercase hex of
/// HMAC-SHA256(`secret`, `"<timestamp>.<body>"`).
pub fn signature(crypto: &dyn CryptoProvider, secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let mac = crypto.hmac_sha256(secret, &message);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in mac {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The JSON body of a webhook request.
#[derive(Serialize)]
struct Payload<'a> {
    event: &'a str,
    target: &'a str,
    rotation_id: Option<String>,
    details: &'a serde_json::Value,
    sent_at: String,
}

/// Posts signed notifications to webhook URLs with one shared HMAC secret.
///
/// Never posts to an internal address (loopback, private, link-local such
/// as `169.254.169.254`, ...; see [`rotation_core::outbound`]) unless the
/// allowlist given with [`WebhookClient::with_allowlist`] covers it (the
/// default allowlist is empty): each delivery resolves the host once and
/// connects to the allowed addresses only; a refused destination is
/// `invalid_policy`. Proxy settings are ignored.
#[derive(Clone)]
pub struct WebhookClient {
    allowlist: Arc<UrlAllowlist>,
    secret: Secret,
    crypto: Arc<dyn CryptoProvider>,
    clock: Arc<dyn Clock>,
    options: WebhookOptions,
}

impl fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookClient")
            .field("secret", &self.secret)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client signing with `secret` (its UTF-8 bytes are the HMAC key)
    /// through `crypto`. An empty secret is an `invalid_input` error.
    pub fn new(secret: Secret, crypto: Arc<dyn CryptoProvider>, options: WebhookOptions) -> Result<Self> {
        if secret.is_empty() {
            return Err(Error::invalid_input("the webhook secret must not be empty"));
        }
        Ok(WebhookClient {
            allowlist: Arc::default(),
            secret,
            crypto,
            clock: Arc::new(SystemClock),
            options,
        })
    }

    /// The same client, also posting to the internal addresses `allowlist` covers.
    pub fn with_allowlist(mut self, allowlist: Arc<UrlAllowlist>) -> Self {
        self.allowlist = allowlist;
        self
    }

    /// Uses `clock` for `sent_at` and the signature timestamp (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The retry and timeout settings.
    pub fn options(&self) -> &WebhookOptions {
        &self.options
    }

    /// Posts `notification` to `url` (which must be `http` or `https`),
    /// retrying as [`WebhookOptions`] says. `Ok` once the receiver answered
    /// 2xx; otherwise a `backend_unavailable` error naming only
    /// `scheme://host:port/path` of the URL.
    pub async fn send(&self, url: &str, notification: &Notification) -> Result<()> {
        let url = parse_url(url)?;
        let shown = shown_url(&url);
        // One client per delivery: its resolver is bound to this URL's host and port.
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(self.options.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rotation-notify/", env!("CARGO_PKG_VERSION")));
        let http = rotation_outbound::client(builder, &url, &self.allowlist)
            .map_err(|e| Error::new(e.reason, format!("webhook {shown}: {}", e.message)))?;
        let body = serde_json::to_vec(&Payload {
            event: &notification.event,
            target: &notification.target,
            rotation_id: notification.rotation_id.map(|id| id.to_string()),
            details: &notification.details,
            sent_at: time::rfc3339(self.clock.now()),
        })
        .map_err(|e| Error::invalid_input(format!("cannot encode the notification as JSON: {e}")))?;

        let attempts = self.options.attempts.max(1);
        let mut last = String::new();
        let mut made = 0;
        for attempt in 1..=attempts {
            made = attempt;
            if attempt > 1 {
                tokio::time::sleep(self.options.backoff(attempt - 1)).await;
            }
            let timestamp = self.clock.now().timestamp();
            let signature = signature(self.crypto.as_ref(), self.secret.expose().as_bytes(), timestamp, &body);
            let sent = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, notification.event.as_str())
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(target: "rotation::notify", url = %shown, event = %notification.event, attempt, "webhook delivered");
                    return Ok(());
                }
                Ok(response) => {
                    let status = response.status();
                    last = format!("HTTP {status}");
                    is_retryable(status)
                }
                Err(e) => {
                    if let Some(refused) = rotation_outbound::refusal(&e) {
                        return Err(Error::new(
                            refused.reason,
                            format!("webhook {shown}: {}", refused.message),
                        ));
                    }
                    last = describe(e);
                    true
                }
            };
            tracing::warn!(target: "rotation::notify", url = %shown, event = %notification.event, attempt, attempts, error = %last, "webhook attempt failed");
            if !retry {
                break;
            }
        }
        let message = format!("webhook delivery to {shown} failed after {made} attempt(s): {last}");
        Err(Error::backend(self.scrub(message, &url)))
    }

    /// Removes the secret and the URL's password and query from `text`.
    fn scrub(&self, text: String, url: &Url) -> String {
        let mut text = self.secret.redact_in(text);
        for part in [url.password(), url.query()].into_iter().flatten() {
            if part.len() >= 3 {
                text = text.replace(part, "<redacted>");
            }
        }
        text
    }
}

/// A 4xx other than 408 (timeout) and 429 (too many requests) is the
/// receiver refusing the request: retrying at once will not change it.
fn is_retryable(status: StatusCode) -> bool {
    !status.is_client_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

/// A reqwest error in words, without its URL: the kind and the root cause.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_body() || e.is_decode() {
        "response error"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut cause: Option<&(dyn StdError + 'static)> = None;
    let mut next = e.source();
    while let Some(inner) = next {
        cause = Some(inner);
        next = inner.source();
    }
    match cause {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// Whether a webhook may be posted to `url` (`http` or `https`): resolves
/// the host and refuses (`invalid_policy`, naming `scheme://host:port/path`
/// only) when every address it has is internal and not covered by
/// `allowlist`. A host that does not resolve now passes (deliveries check
/// again). Used when a policy naming the recipient is stored.
pub async fn check_webhook_url(url: &str, allowlist: &UrlAllowlist) -> Result<()> {
    let url = parse_url(url)?;
    rotation_outbound::check_url(&url, allowlist)
        .await
        .map_err(|e| Error::new(e.reason, format!("webhook {}: {}", shown_url(&url), e.message)))
}

/// Parses a webhook URL; only `http` and `https` with a host are accepted.
/// The error never repeats the URL (it may carry credentials).
pub(crate) fn parse_url(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| Error::invalid_input(format!("invalid webhook URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(parsed),
        "http" | "https" => Err(Error::invalid_input("invalid webhook URL: no host")),
        other => Err(Error::invalid_input(format!(
            "invalid webhook URL: scheme {other:?} is not http or https"
        ))),
    }
}

/// `scheme://host:port/path`: what messages and logs may show of a URL.
pub(crate) fn shown_url(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(addr)) => format!("[{addr}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    let port = url.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

/// A [`WebhookClient`] bound to one URL: `notify` posts there, and
/// `deliver` posts to the recipient when it is an `http(s)` URL.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: WebhookClient,
    url: Url,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &shown_url(&self.url))
            .field("client", &self.client)
            .finish()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` with `secret` through `crypto`.
    pub fn new(url: &str, secret: Secret, crypto: Arc<dyn CryptoProvider>, options: WebhookOptions) -> Result<Self> {
        Ok(WebhookNotifier {
            url: parse_url(url)?,
            client: WebhookClient::new(secret, crypto, options)?,
        })
    }

    /// A notifier posting to `url` through an existing client.
    pub fn with_client(url: &str, client: WebhookClient) -> Result<Self> {
        Ok(WebhookNotifier {
            url: parse_url(url)?,
            client,
        })
    }

    /// The same notifier, also posting to the internal addresses `allowlist`
    /// covers (see [`WebhookClient::with_allowlist`]).
    pub fn with_allowlist(mut self, allowlist: Arc<UrlAllowlist>) -> Self {
        self.client = self.client.with_allowlist(allowlist);
        self
    }

    /// The client this notifier posts through.
    pub fn client(&self) -> &WebhookClient {
        &self.client
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        self.client.send(self.url.as_str(), notification).await
    }

    async fn deliver(&self, recipient: &str, notification: &Notification) -> Result<()> {
        self.client.send(recipient, notification).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_url_drops_userinfo_query_and_fragment() {
        let url = Url::parse("https://user:pw@hooks.example.com/a/b?token=xyz#frag").unwrap();
        assert_eq!(shown_url(&url), "https://hooks.example.com:443/a/b");
        let url = Url::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(shown_url(&url), "http://[::1]:8080/x");
    }

    #[test]
    fn backoff_doubles() {
        let o = WebhookOptions::default();
        assert_eq!(o.backoff(1), Duration::from_millis(200));
        assert_eq!(o.backoff(2), Duration::from_millis(400));
        assert_eq!(o.backoff(3), Duration::from_millis(800));
    }

    #[test]
    fn only_http_urls() {
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("mailto:a@b").is_err());
        let err = parse_url("https://user:secretpw@").unwrap_err();
        assert!(!err.to_string().contains("secretpw"));
    }
}
