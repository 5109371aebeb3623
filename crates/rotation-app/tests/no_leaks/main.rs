//! No secret value in logs, errors, history, audit, the outbox or
//! notification bodies: rotations against real parts (PostgreSQL of
//! `DATABASE_URL`, a script, webhook and SMTP listeners), successful and
//! failing, with every `tracing` event at TRACE (and `log` records) captured.
//!
//! Its own test binary: the capturing subscriber is the process-wide
//! default, so events from every thread and task are caught.

#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use rotation_core::engine::SecretRotateRequest;
use rotation_core::secret::{SecretConfig, SecretType, Strategy, VersionSelector};
use rotation_core::{Engine, Reason};
use rotation_notify::{Router, RouterConfig, Secret, SmtpConfig, SmtpTls, WebhookOptions};

use support::{
    ECHO_SCRIPT_FAILING_TEST, Env, can_login, create_role, database_url, drop_roles, error_text, http_receiver, put,
    random, rotate, set_policy, smtp_server, unique_role, write_script,
};

const WEBHOOK_SECRET: &str = "whsec-no-leaks-8d3e0b7a41c9";

/// A `tracing` writer appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every value of every version of `paths`.
async fn all_values(engine: &Engine, paths: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        for v in engine.secret_backend().versions(path).await.unwrap() {
            let (_, value) = engine
                .get_secret(path, VersionSelector::Version(v.version))
                .await
                .unwrap();
            out.push(value.expose().to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_reaches_logs_errors_history_outbox_or_notifications() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let (smtp, mails) = smtp_server().await;
    let (hook, hooks) = http_receiver(200).await;
    let (refuser, _) = http_receiver(503).await;
    let config = RouterConfig {
        webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        webhook: WebhookOptions {
            attempts: 1,
            backoff_base_ms: 10,
            timeout_ms: 5_000,
        },
        smtp: Some(SmtpConfig {
            port: Some(smtp.port()),
            tls: SmtpTls::None,
            timeout_ms: 5_000,
            ..SmtpConfig::new("127.0.0.1", "rotation@example.com")
        }),
        url_allowlist: support::loopback(),
    };
    let router = Router::from_config(&config, Arc::new(rotation_crypto::RingCrypto::new())).unwrap();
    let env = Env::new().await.with_notifier(Arc::new(router));
    let engine = env.engine();
    let recipients = vec![format!("http://{hook}/hook"), "mailto:ops@example.com".to_owned()];
    let mut errors = Vec::new();

    // A PostgreSQL role: one rotation that works, one that fails verification.
    let role = unique_role();
    let db_old = random("dbold");
    create_role(&role, &db_old).await;
    set_policy(&engine, "db-ok", |p| {
        p.strategy = Some(Strategy::Staged);
        p.verification_tests = vec!["login".into()];
        p.notify.clone_from(&recipients);
    })
    .await;
    set_policy(&engine, "db-fail", |p| {
        p.strategy = Some(Strategy::Immediate);
        p.verification_tests = vec![format!("http:http://{refuser}/verify")];
        p.notify.clone_from(&recipients);
        p.notify_on_failure = true;
    })
    .await;
    put(
        &engine,
        "db/admin",
        SecretType::Generic,
        &database_url(),
        None,
        SecretConfig::default(),
    )
    .await;
    put(
        &engine,
        "db/app",
        SecretType::Database,
        &db_old,
        Some("db-ok"),
        SecretConfig {
            role: Some(role.clone()),
            admin_secret: Some("db/admin".into()),
            ..SecretConfig::default()
        },
    )
    .await;
    engine.rotate_secret(rotate("db/app")).await.unwrap();
    let e = engine
        .rotate_secret(SecretRotateRequest {
            policy: Some("db-fail".into()),
            ..rotate("db/app")
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    errors.push(error_text(&e));

    // A script echoing every value it is given, failing its test.
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "rotate.sh", ECHO_SCRIPT_FAILING_TEST);
    set_policy(&engine, "scripted", |p| {
        p.strategy = Some(Strategy::Staged);
        p.notify.clone_from(&recipients);
    })
    .await;
    put(
        &engine,
        "svc/scripted",
        SecretType::Generic,
        &random("scriptold"),
        Some("scripted"),
        SecretConfig {
            script: Some(script),
            ..SecretConfig::default()
        },
    )
    .await;
    let e = engine.rotate_secret(rotate("svc/scripted")).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    errors.push(error_text(&e));

    // A dual-write API key through its grace period.
    set_policy(&engine, "keys", |p| {
        p.strategy = Some(Strategy::DualWrite);
        p.grace_period_hours = Some(1);
        p.notify.clone_from(&recipients);
    })
    .await;
    put(
        &engine,
        "svc/api-key",
        SecretType::ApiKey,
        &random("apikey"),
        Some("keys"),
        SecretConfig::default(),
    )
    .await;
    engine.rotate_secret(rotate("svc/api-key")).await.unwrap();
    env.clock.advance(TimeDelta::hours(2));
    engine.process_scheduled_rotations().await.unwrap();

    let report = engine.dispatch_outbox().await.unwrap();
    assert_eq!(report.retrying, 0, "{report:?}");
    assert!(report.delivered >= 8, "{report:?}");

    // Every value ever used, and the credentials around them.
    let paths = ["db/admin", "db/app", "svc/scripted", "svc/api-key"];
    let mut secrets = all_values(&engine, &paths).await;
    assert_eq!(secrets.len(), 1 + 3 + 2 + 2, "every version of every secret");
    let admin_password = url::Url::parse(&database_url())
        .unwrap()
        .password()
        .expect("DATABASE_URL carries a password")
        .to_owned();
    secrets.push(admin_password);
    secrets.push(WEBHOOK_SECRET.to_owned());
    assert!(secrets.iter().all(|s| s.len() >= 16), "values long enough to grep for");

    let mut texts: Vec<(String, String)> = Vec::new();
    for path in paths {
        let history = engine.secret_history(path, 100).await.unwrap();
        texts.push((format!("history {path}"), serde_json::to_string(&history).unwrap()));
        let status = engine.secret_status(path).await.unwrap();
        texts.push((format!("status {path}"), serde_json::to_string(&status).unwrap()));
    }
    let outbox = engine.list_outbox(false, 1000).await.unwrap();
    let events: Vec<&str> = outbox.iter().map(|m| m.notification.event.as_str()).collect();
    for expected in ["rotated", "rolled_back", "grace_period_ended"] {
        assert!(events.contains(&expected), "{events:?}");
    }
    texts.push(("outbox".into(), serde_json::to_string(&outbox).unwrap()));
    let audit = engine.audit_events(10_000).await.unwrap();
    texts.push(("audit".into(), serde_json::to_string(&audit).unwrap()));
    for (i, e) in errors.iter().enumerate() {
        texts.push((format!("error {i}"), e.clone()));
    }
    let hooks = hooks.lock().unwrap().clone();
    assert!(hooks.len() >= 4, "webhooks delivered: {}", hooks.len());
    for (i, r) in hooks.iter().enumerate() {
        assert!(support::verify_signature(WEBHOOK_SECRET, r));
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default()))
            .collect();
        texts.push((
            format!("webhook {i}"),
            format!("{}\n{}", headers.join("\n"), String::from_utf8_lossy(&r.body)),
        ));
    }
    let mails = mails.lock().unwrap().clone();
    assert!(mails.len() >= 4, "mails delivered: {}", mails.len());
    for (i, m) in mails.iter().enumerate() {
        texts.push((format!("mail {i}"), format!("{}\n{}", m.data, m.body())));
    }

    // The logs last, once everything above has run.
    let logs = captured.text();
    assert!(logs.contains("secret rotation started"), "the capture works");
    assert!(logs.contains("secret rotation rolled back"));
    assert!(logs.contains("TRACE"), "TRACE events are captured");
    texts.push(("logs".into(), logs));

    for (name, text) in &texts {
        for secret in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let from = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
                panic!(
                    "{name} shows a secret value at byte {at}: …{}[the value]",
                    &text[from..at]
                );
            }
        }
    }

    assert!(can_login(&role, &all_values(&engine, &["db/app"]).await[1]).await);
    drop_roles(&[&role]).await;
}
