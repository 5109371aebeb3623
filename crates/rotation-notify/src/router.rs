//! Routing a notification to the channel its recipient names.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use rotation_core::outbound::UrlAllowlist;
use rotation_core::ports::{CryptoProvider, LogNotifier, Notification, Notifier};
use rotation_core::{Error, Result};
use serde::Deserialize;

use crate::secret::Secret;
use crate::smtp::{SmtpConfig, SmtpNotifier};
use crate::webhook::{WebhookClient, WebhookOptions};

/// What a [`Router`] needs: the webhook secret and options, and the SMTP
/// relay. A channel left out is not configured: recipients of that kind are
/// refused. `Debug` never shows the secret or the SMTP password.
///
/// Deserializes (every field optional) from e.g.
/// `{"webhook_secret": "…", "webhook": {"attempts": 3, "backoff_base_ms": 200, "timeout_ms": 10000},
///   "smtp": {"host": "smtp.example.com", "from": "rotation@example.com"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// The HMAC secret every webhook request is signed with; webhooks are
    /// refused without it.
    pub webhook_secret: Option<Secret>,
    /// Retries and timeout of webhook deliveries.
    pub webhook: WebhookOptions,
    /// The SMTP relay; `mailto:` recipients are refused without it.
    pub smtp: Option<SmtpConfig>,
    /// Internal addresses webhooks may still be posted to
    /// (`ROTATION_URL_ALLOWLIST`, read by the binaries; not part of the
    /// file). Empty by default: public addresses only.
    #[serde(skip)]
    pub url_allowlist: Arc<UrlAllowlist>,
}

/// A parsed notification recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// An `http://` or `https://` URL (the whole recipient).
    Webhook(&'a str),
    /// The address of a `mailto:` recipient.
    Email(&'a str),
    /// `log`: the process log.
    Log,
}

impl<'a> Recipient<'a> {
    /// Parses `http://…`, `https://…`, `mailto:ADDRESS` or `log` (schemes
    /// and `log` case-insensitive). Anything else is an `invalid_input`
    /// error naming the recipient's kind (its scheme), never the whole
    /// recipient, which may carry credentials.
    pub fn parse(recipient: &'a str) -> Result<Self> {
        let trimmed = recipient.trim();
        if trimmed.eq_ignore_ascii_case("log") {
            return Ok(Recipient::Log);
        }
        let Some((scheme, rest)) = trimmed.split_once(':') else {
            return Err(Error::invalid_input(
                "notification recipient has no kind: expected http://URL, https://URL, mailto:ADDRESS or log",
            ));
        };
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            Ok(Recipient::Webhook(trimmed))
        } else if scheme.eq_ignore_ascii_case("mailto") {
            let address = rest.split('?').next().unwrap_or_default().trim();
            if address.is_empty() {
                return Err(Error::invalid_input("mailto: notification recipient has no address"));
            }
            Ok(Recipient::Email(address))
        } else {
            let valid_scheme = !scheme.is_empty()
                && scheme.len() <= 32
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let kind = if valid_scheme {
                format!("{:?}", scheme.to_ascii_lowercase())
            } else {
                "(unrecognised)".to_owned()
            };
            Err(Error::invalid_input(format!(
                "unsupported notification recipient kind {kind}: expected http://URL, https://URL, mailto:ADDRESS or log"
            )))
        }
    }

    /// The kind: `webhook`, `email` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Recipient::Webhook(_) => "webhook",
            Recipient::Email(_) => "email",
            Recipient::Log => "log",
        }
    }
}

/// A [`Notifier`] that delivers by recipient: `http(s)://` → webhook,
/// `mailto:` → SMTP, `log` → [`LogNotifier`]. `notify` (no recipient) goes
/// to the log. A recipient whose channel is not configured is an
/// `invalid_input` error naming its kind.
#[derive(Clone, Default)]
pub struct Router {
    webhook: Option<WebhookClient>,
    smtp: Option<SmtpNotifier>,
    log: LogNotifier,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("webhook", &self.webhook)
            .field("smtp", &self.smtp)
            .finish()
    }
}

impl Router {
    /// A router with only the log channel.
    pub fn new() -> Self {
        Router::default()
    }

    /// A router for `config`, signing webhooks through `crypto`.
    pub fn from_config(config: &RouterConfig, crypto: Arc<dyn CryptoProvider>) -> Result<Self> {
        let mut router = Router::new();
        if let Some(secret) = &config.webhook_secret {
            router.webhook = Some(
                WebhookClient::new(secret.clone(), crypto, config.webhook)?
                    .with_allowlist(config.url_allowlist.clone()),
            );
        }
        if let Some(smtp) = &config.smtp {
            router.smtp = Some(SmtpNotifier::new(smtp)?);
        }
        Ok(router)
    }

    /// Routes `http(s)://` recipients through `client`.
    pub fn with_webhook(mut self, client: WebhookClient) -> Self {
        self.webhook = Some(client);
        self
    }

    /// Routes `mailto:` recipients through `smtp`.
    pub fn with_smtp(mut self, smtp: SmtpNotifier) -> Self {
        self.smtp = Some(smtp);
        self
    }

    /// Whether `http(s)://` recipients are accepted.
    pub fn has_webhook(&self) -> bool {
        self.webhook.is_some()
    }

    /// Whether `mailto:` recipients are accepted.
    pub fn has_smtp(&self) -> bool {
        self.smtp.is_some()
    }
}

#[async_trait]
impl Notifier for Router {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        self.log.notify(notification).await
    }

    async fn deliver(&self, recipient: &str, notification: &Notification) -> Result<()> {
        match Recipient::parse(recipient)? {
            Recipient::Log => self.log.notify(notification).await,
            Recipient::Webhook(url) => match &self.webhook {
                Some(client) => client.send(url, notification).await,
                None => Err(Error::invalid_input(
                    "webhook recipients (http/https) are not configured: no webhook secret is set",
                )),
            },
            Recipient::Email(address) => match &self.smtp {
                Some(smtp) => smtp.send(address, notification).await,
                None => Err(Error::invalid_input(
                    "email recipients (mailto) are not configured: no SMTP relay is set",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_recipients() {
        assert_eq!(Recipient::parse("log").unwrap(), Recipient::Log);
        assert_eq!(Recipient::parse(" LOG ").unwrap(), Recipient::Log);
        assert_eq!(
            Recipient::parse("https://h/x").unwrap(),
            Recipient::Webhook("https://h/x")
        );
        assert_eq!(
            Recipient::parse("mailto:ops@example.com?subject=x").unwrap(),
            Recipient::Email("ops@example.com")
        );
        let err = Recipient::parse("ftp://user:pw@host/").unwrap_err();
        assert!(err.to_string().contains("\"ftp\""), "{err}");
        assert!(!err.to_string().contains("pw@host"));
        assert!(Recipient::parse("ops@example.com").is_err());
        assert!(Recipient::parse("mailto:").is_err());
    }
}
