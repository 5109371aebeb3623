//! Notification channels from the environment: the outbox's [`Router`].

use std::sync::Arc;

use rotation_core::ports::{CryptoProvider, Notifier};
use rotation_core::{Error, Result};
use rotation_notify::{Router, RouterConfig, Secret, SmtpConfig, SmtpTls};

/// Builds the notification router from the environment:
///
/// - `ROTATION_NOTIFY_CONFIG`: a JSON file with the whole [`RouterConfig`]
///   (`webhook_secret`, `webhook`, `smtp`); or the variables below.
/// - `ROTATION_WEBHOOK_SECRET`: HMAC secret signing webhook bodies
///   (webhook recipients are refused without it).
/// - `ROTATION_SMTP_HOST`, `ROTATION_SMTP_PORT`, `ROTATION_SMTP_TLS`
///   (`none | starttls | tls`, default `starttls`), `ROTATION_SMTP_USERNAME`,
///   `ROTATION_SMTP_PASSWORD`, `ROTATION_SMTP_FROM` (`mailto:` recipients
///   are refused without a host).
///
/// `log` recipients always work. Webhooks reach internal addresses only
/// when `ROTATION_URL_ALLOWLIST` covers them (see
/// [`url_allowlist_from_env`](crate::url_allowlist_from_env); a malformed
/// allowlist is an error here).
pub fn notifier_from_env(crypto: Arc<dyn CryptoProvider>) -> Result<Arc<dyn Notifier>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut config = match var("ROTATION_NOTIFY_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::invalid_input(format!("cannot read ROTATION_NOTIFY_CONFIG {path}: {e}")))?;
            serde_json::from_str::<RouterConfig>(&text).map_err(|e| {
                Error::invalid_input(format!(
                    "ROTATION_NOTIFY_CONFIG {path} is not a notification config: {}",
                    e.classify_message()
                ))
            })?
        }
        None => {
            let smtp = match var("ROTATION_SMTP_HOST") {
                Some(host) => {
                    let from = var("ROTATION_SMTP_FROM").unwrap_or_else(|| "rotation@localhost".to_owned());
                    let mut smtp = SmtpConfig::new(host, from);
                    if let Some(port) = var("ROTATION_SMTP_PORT") {
                        smtp.port = Some(
                            port.parse()
                                .map_err(|_| Error::invalid_input("ROTATION_SMTP_PORT must be a port number"))?,
                        );
                    }
                    if let Some(tls) = var("ROTATION_SMTP_TLS") {
                        smtp.tls = tls.parse::<SmtpTls>()?;
                    }
                    smtp.username = var("ROTATION_SMTP_USERNAME");
                    smtp.password = var("ROTATION_SMTP_PASSWORD").map(Secret::new);
                    Some(smtp)
                }
                None => None,
            };
            RouterConfig {
                webhook_secret: var("ROTATION_WEBHOOK_SECRET").map(Secret::new),
                smtp,
                ..RouterConfig::default()
            }
        }
    };
    config.url_allowlist = Arc::new(crate::url_allowlist_from_env()?);
    Ok(Arc::new(Router::from_config(&config, crypto)?))
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// The error's category and position, never the input (it may hold a secret).
    fn classify_message(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}
