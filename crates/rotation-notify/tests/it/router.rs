//! The router: each recipient kind reaches its channel; unknown or unconfigured kinds are refused.

use std::sync::Arc;

use rotation_core::Reason;
use rotation_core::ports::Notifier;
use rotation_notify::{Router, RouterConfig, Secret, SmtpConfig, SmtpNotifier, SmtpTls, WebhookClient, WebhookOptions};

use crate::support::{SECRET, crypto, http_receiver, loopback, notification, smtp_server, verify_signature};

fn config(smtp_port: Option<u16>) -> RouterConfig {
    RouterConfig {
        webhook_secret: Some(Secret::new(SECRET)),
        webhook: WebhookOptions {
            attempts: 2,
            backoff_base_ms: 10,
            timeout_ms: 5_000,
        },
        smtp: smtp_port.map(|port| SmtpConfig {
            port: Some(port),
            tls: SmtpTls::None,
            ..SmtpConfig::new("127.0.0.1", "rotation@example.com")
        }),
        url_allowlist: loopback(),
    }
}

#[tokio::test]
async fn routes_each_recipient_kind_to_its_channel() {
    let (http, requests) = http_receiver(vec![200]).await;
    let (smtp, mails) = smtp_server(true).await;
    let router = Router::from_config(&config(Some(smtp.port())), crypto()).unwrap();
    assert!(router.has_webhook() && router.has_smtp());
    let n = notification();

    router.deliver(&format!("http://{http}/a"), &n).await.unwrap();
    router.deliver("mailto:ops@example.com", &n).await.unwrap();
    router.deliver("log", &n).await.unwrap();
    router.notify(&n).await.unwrap();

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/a");
    assert!(verify_signature(SECRET, &requests[0]));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].rcpt[0].contains("ops@example.com"));
}

#[tokio::test]
async fn schemes_are_case_insensitive() {
    let (http, requests) = http_receiver(vec![200]).await;
    let router = Router::new().with_webhook(
        WebhookClient::new(Secret::new(SECRET), crypto(), WebhookOptions::default())
            .unwrap()
            .with_allowlist(loopback()),
    );
    router
        .deliver(&format!("HTTP://{http}/upper"), &notification())
        .await
        .unwrap();
    router.deliver("LOG", &notification()).await.unwrap();
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_kinds_and_unconfigured_channels_are_invalid_input() {
    let router = Router::new();
    let n = notification();

    let err = router.deliver("ftp://user:pw@example.com/x", &n).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    assert!(err.to_string().contains("\"ftp\""), "{err}");
    assert!(!err.to_string().contains("pw@"), "{err}");

    let err = router.deliver("ops@example.com", &n).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);

    let err = router
        .deliver("https://hooks.example.com/x?token=t0ken", &n)
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    assert!(err.to_string().contains("webhook"), "{err}");
    assert!(!err.to_string().contains("t0ken"), "{err}");

    let err = router.deliver("mailto:ops@example.com", &n).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    assert!(err.to_string().contains("mailto"), "{err}");

    // The log channel and notify always work.
    router.deliver("log", &n).await.unwrap();
    router.notify(&n).await.unwrap();
}

#[tokio::test]
async fn a_failed_webhook_through_the_router_is_backend_unavailable() {
    let (http, requests) = http_receiver(vec![500]).await;
    let router = Router::from_config(&config(None), crypto()).unwrap();
    let err = router
        .deliver(&format!("http://{http}/fail"), &notification())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(!err.to_string().contains(SECRET));
    assert_eq!(requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_router_is_a_shareable_notifier() {
    let (smtp, mails) = smtp_server(true).await;
    let smtp_notifier = SmtpNotifier::new(&SmtpConfig {
        port: Some(smtp.port()),
        tls: SmtpTls::None,
        ..SmtpConfig::new("127.0.0.1", "rotation@example.com")
    })
    .unwrap();
    let notifier: Arc<dyn Notifier> = Arc::new(Router::new().with_smtp(smtp_notifier));
    notifier
        .deliver("mailto:sec@example.com", &notification())
        .await
        .unwrap();
    assert_eq!(mails.lock().unwrap().len(), 1);
}
