//! Notifications through the outbox with the real `Router`: a signed
//! webhook redelivered after its listener was down, and an email to a
//! local SMTP listener.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::Reason;
use rotation_core::secret::{SecretConfig, SecretType, Stage, Strategy};
use rotation_notify::{Router, RouterConfig, Secret, SmtpConfig, SmtpTls, WebhookOptions};
use tokio::net::TcpListener;

use crate::support::{Env, at_stage, http_receiver, put, random, rotate, serve_http, set_policy, smtp_server, version};

const HMAC_SECRET: &str = "whsec-rotation-app-it-5f1c2d";

#[tokio::test]
async fn a_webhook_is_redelivered_after_the_listener_was_down_and_is_signed() {
    // A port nothing listens on yet.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = format!("http://127.0.0.1:{port}/hook");
    let config = RouterConfig {
        webhook_secret: Some(Secret::new(HMAC_SECRET)),
        webhook: WebhookOptions {
            attempts: 1,
            backoff_base_ms: 10,
            timeout_ms: 5_000,
        },
        smtp: None,
        url_allowlist: crate::support::loopback(),
    };
    let router = Router::from_config(&config, Arc::new(rotation_crypto::RingCrypto::new())).unwrap();
    let env = Env::new().await.with_notifier(Arc::new(router));
    let engine = env.engine();
    set_policy(&engine, "hooked", |p| {
        p.strategy = Some(Strategy::Staged);
        p.notify = vec![hook.clone()];
    })
    .await;
    let old = random("hookold");
    put(
        &engine,
        "svc/hooked",
        SecretType::Generic,
        &old,
        Some("hooked"),
        SecretConfig::default(),
    )
    .await;
    engine.rotate_secret(rotate("svc/hooked")).await.unwrap();
    let (_, new) = at_stage(&engine, "svc/hooked", Stage::Current).await;

    let report = engine.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (0, 1), "nothing listens yet");
    let pending = engine.list_outbox(true, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert!(pending[0].last_error.is_some());

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let requests = serve_http(listener, 200);
    let report = engine.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (0, 0), "backoff not over");
    env.clock.advance(TimeDelta::seconds(31));
    let report = engine.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 0));
    env.clock.advance(TimeDelta::hours(2));
    assert_eq!(engine.dispatch_outbox().await.unwrap().delivered, 0, "delivered once");
    assert!(engine.list_outbox(true, 10).await.unwrap().is_empty());

    let seen = requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "exactly one delivery");
    let request = &seen[0];
    assert_eq!(request.path, "/hook");
    assert!(request.header("x-rotation-signature").starts_with("sha256="));
    assert!(crate::support::verify_signature(HMAC_SECRET, request), "valid HMAC");
    assert!(!crate::support::verify_signature("another-secret", request));
    let mut tampered = request.clone();
    tampered.body.push(b' ');
    assert!(!crate::support::verify_signature(HMAC_SECRET, &tampered));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "rotated", "{body}");
    assert_eq!(body["target"], "secret:svc/hooked", "{body}");
    let text = String::from_utf8_lossy(&request.body);
    for secret in [&old, &new] {
        assert!(!text.contains(secret.as_str()), "{text}");
    }
    assert!(!text.contains(HMAC_SECRET));
}

#[tokio::test]
async fn a_failed_rotation_is_mailed_through_the_outbox() {
    let (smtp, mails) = smtp_server().await;
    let config = RouterConfig {
        webhook_secret: None,
        webhook: WebhookOptions::default(),
        smtp: Some(SmtpConfig {
            port: Some(smtp.port()),
            tls: SmtpTls::None,
            timeout_ms: 5_000,
            ..SmtpConfig::new("127.0.0.1", "rotation@example.com")
        }),
        url_allowlist: crate::support::loopback(),
    };
    let router = Router::from_config(&config, Arc::new(rotation_crypto::RingCrypto::new())).unwrap();
    let env = Env::new().await.with_notifier(Arc::new(router));
    let engine = env.engine();
    let (check, _) = http_receiver(503).await;
    set_policy(&engine, "mailed", |p| {
        p.strategy = Some(Strategy::Staged);
        p.verification_tests = vec![format!("http:http://{check}/verify")];
        p.notify = vec!["mailto:ops@example.com".into()];
        p.notify_on_failure = true;
    })
    .await;
    let old = random("mailold");
    put(
        &engine,
        "svc/mailed",
        SecretType::Generic,
        &old,
        Some("mailed"),
        SecretConfig::default(),
    )
    .await;
    let e = engine.rotate_secret(rotate("svc/mailed")).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    let (_, rejected) = version(&engine, "svc/mailed", 2).await;
    assert!(mails.lock().unwrap().is_empty(), "nothing is sent before dispatch");

    let report = engine.dispatch_outbox().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 0));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.rcpt[0].contains("<ops@example.com>"), "{:?}", mail.rcpt);
    assert!(mail.from.contains("rotation@example.com"), "{}", mail.from);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[rotation] rolled_back secret:svc/mailed")
    );
    let body = mail.body();
    assert!(body.contains("event: rolled_back"), "{body}");
    assert!(body.contains("verification_failed"), "{body}");
    for secret in [&old, &rejected] {
        assert!(!mail.data.contains(secret.as_str()), "{}", mail.data);
        assert!(!body.contains(secret.as_str()), "{body}");
    }
}
