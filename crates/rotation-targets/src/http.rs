//! The `http:<URL>` verification test: a `GET` with the new value as bearer token.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use rotation_core::outbound::UrlAllowlist;
use rotation_core::ports::{StepContext, StepOutput, Verifier};
use rotation_core::{Error, Reason, Result};

use crate::text::{Redactor, display_url};

/// Default time allowed for the whole request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect (within [`TIMEOUT`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The verification test `http:<URL>`: `GET <URL>` with
/// `Authorization: Bearer <new value>`; any 2xx status passes.
///
/// Any other status (redirects are not followed, so the token never
/// reaches another address) is `verification_failed`, naming the status
/// and the URL without userinfo. When the URL cannot be reached at all
/// (connection refused, DNS failure, TLS failure, no answer within the
/// timeout of 10 s) the error is `backend_unavailable`: the value was not
/// shown to be wrong, the service was not there to ask. Userinfo in the
/// URL is dropped from the request: the bearer token is the only credential
/// sent. TLS is rustls (ring) with the webpki roots.
///
/// The token is never sent to an internal address (loopback, private,
/// link-local such as `169.254.169.254`, ...; see
/// [`rotation_core::outbound`]) unless the allowlist given with
/// [`HttpVerifier::with_allowlist`] covers it (the default allowlist is
/// empty): the host is resolved once, the request goes to the allowed
/// addresses only, and a refused destination is `invalid_policy`.
/// [`HttpVerifier::check_destination`] checks the same before a policy or
/// secret naming the test is stored. Proxy settings are ignored.
#[derive(Debug, Clone)]
pub struct HttpVerifier {
    url: url::Url,
    timeout: Duration,
    allowlist: Arc<UrlAllowlist>,
}

impl HttpVerifier {
    /// A verifier of `url` (an `http://` or `https://` URL) with the default
    /// timeout of 10 s; `invalid_input` for another URL.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_timeout(url, TIMEOUT)
    }

    /// A verifier of `url` with another timeout for the whole request.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid_input(format!("http test: {} is not a URL ({e})", strip_userinfo_text(url))))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::invalid_input(format!(
                "http test: {} is not an http:// or https:// URL",
                display_url(&parsed)
            )));
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Ok(HttpVerifier {
            url: parsed,
            timeout,
            allowlist: Arc::default(),
        })
    }

    /// The same verifier, also sending to the internal addresses `allowlist` covers.
    pub fn with_allowlist(mut self, allowlist: Arc<UrlAllowlist>) -> Self {
        self.allowlist = allowlist;
        self
    }

    /// A verifier for a test named `http:<URL>` (e.g.
    /// `http:https://example.com/health`), or named by the URL itself
    /// (`https://example.com/health`); `invalid_input` for another name.
    pub fn from_test_name(name: &str) -> Result<Self> {
        let url = rotation_core::outbound::http_test_url(name)
            .ok_or_else(|| Error::invalid_input("an http test is named http:<URL>"))?;
        Self::new(url)
    }

    /// The URL checked (without userinfo).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Whether the test may be sent to its URL: resolves the host and
    /// refuses (`invalid_policy`) when every address it has is internal
    /// and not allowed. A host that does not resolve now passes (it is
    /// checked again when the test runs).
    pub async fn check_destination(&self) -> Result<()> {
        rotation_outbound::check_url(&self.url, &self.allowlist)
            .await
            .map_err(|e| Error::new(e.reason, format!("http test {}: {}", display_url(&self.url), e.message)))
    }
}

#[async_trait]
impl Verifier for HttpVerifier {
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput> {
        let url = display_url(&self.url);
        let pending = ctx
            .pending
            .as_ref()
            .ok_or_else(|| Error::invalid_input(format!("http test {url}: no new value to test")))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", pending.value.expose())).map_err(|_| {
            Error::new(
                Reason::VerificationFailed,
                format!("http test {url}: the new value cannot be sent as a bearer token (it has characters an HTTP header cannot carry)"),
            )
        })?;
        header.set_sensitive(true);
        let redactor = Redactor::for_step(ctx);
        let builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(self.timeout))
            .redirect(reqwest::redirect::Policy::none());
        let client = rotation_outbound::client(builder, &self.url, &self.allowlist)
            .map_err(|e| Error::new(e.reason, format!("http test {url}: {}", e.message)))?;
        let response = client
            .get(self.url.clone())
            .header(AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| {
                if let Some(refused) = rotation_outbound::refusal(&e) {
                    return Error::new(refused.reason, format!("http test {url}: {}", refused.message));
                }
                let what = if e.is_timeout() {
                    "no answer in time"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                Error::backend(format!("http test {url}: {what}: {}", redactor.apply(&error_chain(&e))))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(StepOutput {
                log: format!("http test {url}: {status}"),
                ..StepOutput::default()
            })
        } else {
            Err(Error::new(
                Reason::VerificationFailed,
                format!("http test {url}: the new value was answered with {status}"),
            ))
        }
    }
}

/// An error and its causes, without the URL reqwest puts in its message.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() {
        text = "unknown error".to_owned();
    }
    text
}

/// `text` (a URL that did not parse) without anything before an `@`
/// in its authority, for messages.
fn strip_userinfo_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://{}", &text[..scheme_end], &text[at + 1..])
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_userinfo() {
        let v = HttpVerifier::from_test_name("http:https://user:pw@example.com/health").unwrap();
        assert_eq!(v.url().as_str(), "https://example.com/health");
        assert_eq!(HttpVerifier::new("ftp://x/").unwrap_err().reason, Reason::InvalidInput);
        assert_eq!(
            HttpVerifier::from_test_name("login").unwrap_err().reason,
            Reason::InvalidInput
        );
        let e = HttpVerifier::new("http://user:pw@[bad/").unwrap_err();
        assert!(!e.message.contains("pw"), "{}", e.message);
    }
}
