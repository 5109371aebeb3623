//! SMTP delivery to a real local SMTP listener.

use rotation_core::Reason;
use rotation_core::ports::Notifier;
use rotation_notify::{Secret, SmtpConfig, SmtpNotifier, SmtpTls};

use crate::support::{closed_port, notification, smtp_server};

fn plain_config(port: u16) -> SmtpConfig {
    SmtpConfig {
        port: Some(port),
        tls: SmtpTls::None,
        timeout_ms: 5_000,
        ..SmtpConfig::new("127.0.0.1", "Rotation <rotation@example.com>")
    }
}

#[tokio::test]
async fn sends_a_plain_text_email_to_a_mailto_recipient() {
    let (addr, mails) = smtp_server(true).await;
    let notifier = SmtpNotifier::new(&plain_config(addr.port())).unwrap();
    let n = notification();
    notifier.deliver("mailto:ops@example.com", &n).await.unwrap();

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(!mail.ehlo.is_empty());
    assert_eq!(mail.auth, None, "no credentials configured");
    assert!(mail.from.contains("<rotation@example.com>"), "{}", mail.from);
    assert_eq!(mail.rcpt.len(), 1);
    assert!(mail.rcpt[0].contains("<ops@example.com>"), "{:?}", mail.rcpt);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[rotation] key_rotated keyring:payments")
    );
    assert!(mail.header("To").unwrap().contains("ops@example.com"));
    assert!(mail.header("From").unwrap().contains("rotation@example.com"));
    assert!(mail.header("Content-Type").unwrap().starts_with("text/plain"));
    let body = mail.body();
    assert!(body.contains("event: key_rotated"), "{body}");
    assert!(body.contains("target: keyring:payments"), "{body}");
    assert!(
        body.contains(&format!("rotation id: {}", n.rotation_id.unwrap())),
        "{body}"
    );
    assert!(body.contains("previous_version: 1"), "{body}");
    assert!(body.contains("new_version: 2"), "{body}");
}

#[tokio::test]
async fn notify_goes_to_the_default_recipients() {
    let (addr, mails) = smtp_server(true).await;
    let config = SmtpConfig {
        to: vec!["a@example.com".into(), "b@example.com".into()],
        username: Some("rotation".into()),
        password: Some(Secret::new("smtp-pa55word")),
        ..plain_config(addr.port())
    };
    let notifier = SmtpNotifier::new(&config).unwrap();
    notifier.notify(&notification()).await.unwrap();
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt.len(), 2);
    assert!(mails[0].auth.is_some(), "credentials are used");

    // Without default recipients, notify is refused.
    let notifier = SmtpNotifier::new(&plain_config(addr.port())).unwrap();
    let err = notifier.notify(&notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
}

#[tokio::test]
async fn refused_credentials_are_backend_unavailable_without_the_password() {
    let (addr, mails) = smtp_server(false).await;
    let config = SmtpConfig {
        username: Some("rotation".into()),
        password: Some(Secret::new("smtp-pa55word")),
        ..plain_config(addr.port())
    };
    let notifier = SmtpNotifier::new(&config).unwrap();
    let err = notifier.send("ops@example.com", &notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    eprintln!("auth refused: {err}");
    assert!(!err.to_string().contains("smtp-pa55word"), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{}", addr.port())), "{err}");
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_relay_that_is_down_is_backend_unavailable() {
    let addr = closed_port().await;
    let config = SmtpConfig {
        username: Some("rotation".into()),
        password: Some(Secret::new("smtp-pa55word")),
        ..plain_config(addr.port())
    };
    let notifier = SmtpNotifier::new(&config).unwrap();
    let err = notifier.send("ops@example.com", &notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(!err.to_string().contains("smtp-pa55word"), "{err}");
}

#[tokio::test]
async fn bad_addresses_and_half_credentials_are_invalid_input() {
    let (addr, _) = smtp_server(true).await;
    let notifier = SmtpNotifier::new(&plain_config(addr.port())).unwrap();
    let err = notifier.send("not an address", &notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);

    let err = SmtpNotifier::new(&SmtpConfig {
        from: "nope".into(),
        ..plain_config(addr.port())
    })
    .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);

    let err = SmtpNotifier::new(&SmtpConfig {
        password: Some(Secret::new("smtp-pa55word")),
        ..plain_config(addr.port())
    })
    .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    assert!(!err.to_string().contains("smtp-pa55word"));
}

#[test]
fn tls_modes_choose_their_default_ports() {
    let mut config = SmtpConfig::new("smtp.example.com", "r@example.com");
    assert_eq!(config.tls, SmtpTls::Starttls);
    assert_eq!(config.effective_port(), 587);
    config.tls = SmtpTls::Tls;
    assert_eq!(config.effective_port(), 465);
    config.port = Some(2525);
    assert_eq!(config.effective_port(), 2525);
    // Building TLS transports works with rustls on ring (nothing connects yet).
    SmtpNotifier::new(&config).unwrap();
    config.tls = SmtpTls::Starttls;
    SmtpNotifier::new(&config).unwrap();
}
