//! Notification configuration: defaults, unknown keys, Debug without secrets.

use rotation_notify::{
    Router, RouterConfig, Secret, SmtpConfig, SmtpNotifier, SmtpTls, WebhookClient, WebhookNotifier, WebhookOptions,
};

use crate::support::crypto;

const HMAC_SECRET: &str = "hmac-secret-value-42";
const PASSWORD: &str = "smtp-password-value-43";

fn full_config() -> RouterConfig {
    serde_json::from_value(serde_json::json!({
        "webhook_secret": HMAC_SECRET,
        "webhook": {"attempts": 5, "timeout_ms": 2500},
        "smtp": {
            "host": "smtp.example.com",
            "port": 2525,
            "tls": "tls",
            "username": "rotation",
            "password": PASSWORD,
            "from": "rotation@example.com",
            "to": ["ops@example.com"]
        }
    }))
    .unwrap()
}

#[test]
fn router_config_deserializes_with_defaults() {
    let config = full_config();
    assert_eq!(config.webhook_secret.as_ref().unwrap().expose(), HMAC_SECRET);
    assert_eq!(
        config.webhook,
        WebhookOptions {
            attempts: 5,
            backoff_base_ms: 200,
            timeout_ms: 2500
        }
    );
    let smtp = config.smtp.as_ref().unwrap();
    assert_eq!(smtp.tls, SmtpTls::Tls);
    assert_eq!(smtp.effective_port(), 2525);
    assert_eq!(smtp.timeout_ms, 10_000);
    assert_eq!(smtp.password.as_ref().unwrap().expose(), PASSWORD);

    let empty: RouterConfig = serde_json::from_str("{}").unwrap();
    assert!(empty.webhook_secret.is_none() && empty.smtp.is_none());
    assert_eq!(empty.webhook, WebhookOptions::default());
    assert_eq!(WebhookOptions::default().attempts, 3);
    assert_eq!(WebhookOptions::default().backoff_base_ms, 200);
    assert_eq!(WebhookOptions::default().timeout_ms, 10_000);

    assert!(serde_json::from_str::<RouterConfig>(r#"{"webhook_secrets": "x"}"#).is_err());
    assert!(serde_json::from_str::<SmtpConfig>(r#"{"host": "h", "from": "f", "tls": "ssl"}"#).is_err());
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let config = full_config();
    let smtp = SmtpNotifier::new(config.smtp.as_ref().unwrap()).unwrap();
    let client = WebhookClient::new(Secret::new(HMAC_SECRET), crypto(), WebhookOptions::default()).unwrap();
    let notifier = WebhookNotifier::new(
        "https://user:urlpass@hooks.example.com/h?token=urltoken",
        Secret::new(HMAC_SECRET),
        crypto(),
        WebhookOptions::default(),
    )
    .unwrap();
    let router = Router::from_config(&config, crypto()).unwrap();
    let outputs = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.smtp.as_ref().unwrap()),
        format!("{:?}", Secret::new(HMAC_SECRET)),
        format!("{smtp:?}"),
        format!("{client:?}"),
        format!("{notifier:?}"),
        format!("{router:?}"),
    ];
    for output in &outputs {
        for secret in [HMAC_SECRET, PASSWORD, "urlpass", "urltoken"] {
            assert!(!output.contains(secret), "{output} shows {secret}");
        }
    }
    assert!(outputs[0].contains("<redacted>"));
    assert!(outputs[2].contains("smtp.example.com"), "{}", outputs[2]);
}
