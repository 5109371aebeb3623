//! Email notifications over SMTP (lettre, tokio, rustls on ring).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rotation_core::ports::{Notification, Notifier};
use rotation_core::{Error, Result};
use serde::Deserialize;

use crate::secret::Secret;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text, no TLS (a local relay only). Default port 25.
    None,
    /// Plain connection upgraded with `STARTTLS`, which is required: a
    /// server that does not offer it is an error. Default port 587.
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", SMTPS). Default port 465.
    Tls,
}

impl SmtpTls {
    /// The conventional port of this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }

    /// The configuration spelling: `none`, `starttls` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SmtpTls {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::Starttls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(Error::invalid_input(format!(
                "invalid SMTP TLS mode {s:?}: expected none, starttls or tls"
            ))),
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// SMTP relay settings. `Debug` never shows the password.
///
/// Deserializes from e.g.
/// `{"host": "smtp.example.com", "tls": "starttls", "username": "u", "password": "p", "from": "rotation@example.com"}`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Relay port; defaults to the TLS mode's port (25, 587 or 465).
    #[serde(default)]
    pub port: Option<u16>,
    /// TLS mode: `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH; set together with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP AUTH; set together with `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sender mailbox, `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// Default recipients of [`Notifier::notify`]; may be empty when
    /// recipients always come with `deliver` (`mailto:` recipients).
    #[serde(default)]
    pub to: Vec<String>,
    /// Timeout of each SMTP command in milliseconds (default 10 000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl SmtpConfig {
    /// Settings for `host` sending as `from`, with STARTTLS, no
    /// authentication and no default recipients.
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        SmtpConfig {
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password: None,
            from: from.into(),
            to: Vec::new(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// The port used: `port`, or the TLS mode's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Sends notifications as plain-text email through an SMTP relay.
///
/// Subject `[rotation] <event> <target>`; the body lists the event, the
/// target, the rotation id and the details. A new connection is made per
/// message (notifications are rare).
#[derive(Clone)]
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    relay: String,
    tls: SmtpTls,
    password: Option<Secret>,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("relay", &self.relay)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("authenticated", &self.password.is_some())
            .finish()
    }
}

impl SmtpNotifier {
    /// A notifier for `config`. Malformed addresses, a user name without a
    /// password (or the reverse) are `invalid_input` errors. Nothing is
    /// connected until the first message.
    pub fn new(config: &SmtpConfig) -> Result<Self> {
        if config.host.trim().is_empty() {
            return Err(Error::invalid_input("the SMTP host must not be empty"));
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| Error::invalid_input(format!("invalid SMTP from address {:?}: {e}", config.from)))?;
        let to = config
            .to
            .iter()
            .map(|addr| parse_mailbox(addr))
            .collect::<Result<Vec<_>>>()?;
        let port = config.effective_port();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            .port(port)
            .timeout(Some(Duration::from_millis(config.timeout_ms.max(1))));
        let tls_parameters = || {
            TlsParameters::new(config.host.clone())
                .map_err(|e| Error::invalid_input(format!("invalid SMTP TLS settings for {}: {e}", config.host)))
        };
        builder = builder.tls(match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        });
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
            }
            (None, None) => {}
            _ => {
                return Err(Error::invalid_input("SMTP username and password must be set together"));
            }
        }
        Ok(SmtpNotifier {
            transport: builder.build(),
            from,
            to,
            relay: format!("{}:{port}", config.host),
            tls: config.tls,
            password: config.password.clone(),
        })
    }

    /// Sends `notification` to one address (`addr@example.com`,
    /// `Name <addr@example.com>`, or with a `mailto:` prefix).
    pub async fn send(&self, to: &str, notification: &Notification) -> Result<()> {
        let to = parse_mailbox(to.strip_prefix("mailto:").unwrap_or(to))?;
        self.send_to(vec![to], notification).await
    }

    async fn send_to(&self, to: Vec<Mailbox>, notification: &Notification) -> Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject(notification))
            .header(ContentType::TEXT_PLAIN);
        for mailbox in to {
            message = message.to(mailbox);
        }
        let message = message
            .body(body(notification))
            .map_err(|e| Error::invalid_input(format!("cannot build the notification email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => {
                tracing::debug!(target: "rotation::notify", relay = %self.relay, event = %notification.event, "email sent");
                Ok(())
            }
            Err(e) => {
                let mut message = format!("SMTP delivery via {} failed: {e}", self.relay);
                if let Some(password) = &self.password {
                    message = password.redact_in(message);
                }
                tracing::warn!(target: "rotation::notify", relay = %self.relay, event = %notification.event, error = %message, "email not sent");
                Err(Error::backend(message))
            }
        }
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    /// Sends to the configured default recipients (`to`), all in one message.
    async fn notify(&self, notification: &Notification) -> Result<()> {
        if self.to.is_empty() {
            return Err(Error::invalid_input(
                "no default email recipients are configured (SMTP `to` is empty)",
            ));
        }
        self.send_to(self.to.clone(), notification).await
    }

    async fn deliver(&self, recipient: &str, notification: &Notification) -> Result<()> {
        self.send(recipient, notification).await
    }
}

fn parse_mailbox(addr: &str) -> Result<Mailbox> {
    addr.trim()
        .parse()
        .map_err(|e| Error::invalid_input(format!("invalid email address {addr:?}: {e}")))
}

/// `[rotation] <event> <target>`, control characters replaced.
fn subject(n: &Notification) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
    };
    format!("[rotation] {} {}", clean(&n.event), clean(&n.target))
}

/// The plain-text body: event, target, rotation id, details.
fn body(n: &Notification) -> String {
    let mut out = String::new();
    out.push_str(&format!("event: {}\n", n.event));
    out.push_str(&format!("target: {}\n", n.target));
    match &n.rotation_id {
        Some(id) => out.push_str(&format!("rotation id: {id}\n")),
        None => out.push_str("rotation id: -\n"),
    }
    match &n.details {
        serde_json::Value::Null => out.push_str("details: -\n"),
        serde_json::Value::Object(map) if map.is_empty() => out.push_str("details: -\n"),
        serde_json::Value::Object(map) => {
            out.push_str("details:\n");
            for (key, value) in map {
                match value {
                    serde_json::Value::String(s) => out.push_str(&format!("  {key}: {s}\n")),
                    other => out.push_str(&format!("  {key}: {other}\n")),
                }
            }
        }
        other => out.push_str(&format!("details: {other}\n")),
    }
    out.push_str("\n-- \nsent by rotation\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_body() {
        let n = Notification {
            event: "key_rotated".into(),
            target: "keyring:pay\nments".into(),
            rotation_id: None,
            details: serde_json::json!({"new_version": 2, "note": "ok"}),
        };
        assert_eq!(subject(&n), "[rotation] key_rotated keyring:pay ments");
        let b = body(&n);
        assert!(b.contains("event: key_rotated\n"));
        assert!(b.contains("rotation id: -\n"));
        assert!(b.contains("  new_version: 2\n"));
        assert!(b.contains("  note: ok\n"));
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!("STARTTLS".parse::<SmtpTls>().unwrap(), SmtpTls::Starttls);
        assert_eq!("none".parse::<SmtpTls>().unwrap().default_port(), 25);
        assert!("ssl".parse::<SmtpTls>().is_err());
    }
}
