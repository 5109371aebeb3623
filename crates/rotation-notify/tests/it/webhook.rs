//! Webhook delivery to real local HTTP listeners: signatures, retries, failures.

use std::sync::Arc;
use std::time::Instant;

use rotation_core::Reason;
use rotation_core::ports::Notifier;
use rotation_core::time::FixedClock;
use rotation_notify::{Secret, WebhookClient, WebhookNotifier, WebhookOptions};

use crate::support::{SECRET, closed_port, crypto, http_receiver, loopback, notification, verify_signature};

fn fast() -> WebhookOptions {
    WebhookOptions {
        attempts: 3,
        backoff_base_ms: 20,
        timeout_ms: 5_000,
    }
}

#[tokio::test]
async fn posts_signed_json_that_an_independent_hmac_verifies() {
    let (addr, seen) = http_receiver(vec![200]).await;
    let n = notification();
    let url = format!("http://{addr}/hooks/rotation?token=abc");
    let notifier = WebhookNotifier::new(&url, Secret::new(SECRET), crypto(), fast())
        .unwrap()
        .with_allowlist(loopback());
    notifier.notify(&n).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/hooks/rotation?token=abc");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-rotation-event"), "key_rotated");
    let timestamp: i64 = request.header("x-rotation-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp).abs() <= 5, "timestamp {timestamp} vs now {now}");
    let signature = request.header("x-rotation-signature");
    assert!(signature.starts_with("sha256="));
    assert_eq!(signature.len(), 7 + 64);
    assert!(verify_signature(SECRET, request), "the signature must verify");
    assert!(!verify_signature("another-secret", request));

    // The body has exactly the documented fields.
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let object = body.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["details", "event", "rotation_id", "sent_at", "target"]);
    assert_eq!(body["event"], "key_rotated");
    assert_eq!(body["target"], "keyring:payments");
    assert_eq!(body["rotation_id"], n.rotation_id.unwrap().to_string());
    assert_eq!(body["details"], n.details);
    assert!(body["sent_at"].as_str().unwrap().ends_with('Z'));
    // The secret never travels.
    let raw = String::from_utf8_lossy(&request.body);
    assert!(!raw.contains(SECRET));
    assert!(
        request
            .headers
            .values()
            .all(|v| !v.to_str().unwrap_or("").contains(SECRET))
    );
}

#[tokio::test]
async fn signature_matches_the_documented_construction_with_a_fixed_clock() {
    let (addr, seen) = http_receiver(vec![204]).await;
    let at = "2026-11-22T03:04:05.123456Z".parse().unwrap();
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap()
        .with_clock(Arc::new(FixedClock(at)));
    let mut n = notification();
    n.rotation_id = None;
    client.send(&format!("http://{addr}/x"), &n).await.unwrap();
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request.header("x-rotation-timestamp"), "1795316645");
    let body = String::from_utf8(request.body.clone()).unwrap();
    assert_eq!(
        body,
        r#"{"event":"key_rotated","target":"keyring:payments","rotation_id":null,"details":{"new_version":2,"previous_version":1},"sent_at":"2026-11-22T03:04:05.123456Z"}"#
    );
    let expected = rotation_notify::signature(crypto().as_ref(), SECRET.as_bytes(), 1_795_316_645, body.as_bytes());
    assert_eq!(request.header("x-rotation-signature"), expected);
    assert!(verify_signature(SECRET, &request));
}

#[tokio::test]
async fn retries_server_errors_with_backoff_then_delivers() {
    let (addr, seen) = http_receiver(vec![500, 500, 200]).await;
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let started = Instant::now();
    client
        .send(&format!("http://{addr}/flaky"), &notification())
        .await
        .unwrap();
    // 20 ms before the first retry, 40 ms before the second.
    assert!(started.elapsed().as_millis() >= 60, "{:?}", started.elapsed());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert!(verify_signature(SECRET, request), "every attempt is signed");
        assert_eq!(request.body, seen[0].body, "every attempt carries the same body");
    }
}

#[tokio::test]
async fn gives_up_after_the_configured_attempts() {
    let (addr, seen) = http_receiver(vec![503]).await;
    let options = WebhookOptions { attempts: 2, ..fast() };
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), options)
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let err = client
        .send(
            &format!("http://user:hunter22@{addr}/down?sig=querysecret"),
            &notification(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert_eq!(seen.lock().unwrap().len(), 2);
    let message = err.to_string();
    assert!(message.contains(&format!("http://{addr}/down")), "{message}");
    assert!(message.contains("503"), "{message}");
    for hidden in [SECRET, "hunter22", "querysecret", "user:"] {
        assert!(!message.contains(hidden), "{message} contains {hidden}");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (addr, seen) = http_receiver(vec![401, 200]).await;
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let err = client
        .send(&format!("http://{addr}/auth"), &notification())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, seen) = http_receiver(vec![302]).await;
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let err = client
        .send(&format!("http://{addr}/moved"), &notification())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert_eq!(seen.lock().unwrap().len(), 3, "a redirect is a failed attempt");
}

#[tokio::test]
async fn connection_refused_is_backend_unavailable_without_secrets() {
    let addr = closed_port().await;
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let err = client
        .send(
            &format!("http://admin:pa55word@{addr}/hook?api_key=topsecretkey"),
            &notification(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(err.reason.is_retryable());
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    eprintln!("connection refused: {text}");
    assert!(text.contains(&format!("http://{addr}/hook")), "{text}");
    assert!(text.contains("connection"), "{text}");
    for hidden in [SECRET, "pa55word", "topsecretkey", "api_key", "admin"] {
        assert!(!text.contains(hidden), "{text} contains {hidden}");
    }
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    // Accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = WebhookOptions {
        attempts: 1,
        backoff_base_ms: 1,
        timeout_ms: 200,
    };
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), options)
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let started = Instant::now();
    let err = client
        .send(&format!("http://{addr}/slow"), &notification())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn invalid_urls_and_empty_secrets_are_invalid_input() {
    let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .map(|c| c.with_allowlist(loopback()))
        .unwrap();
    let err = client.send("ftp://example.com/x", &notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    let err = client.send("not a url", &notification()).await.unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
    let err = WebhookClient::new(Secret::new(""), crypto(), fast()).unwrap_err();
    assert_eq!(err.reason, Reason::InvalidInput);
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allow_listed() {
    let (addr, requests) = http_receiver(vec![200]).await;
    let port = addr.port();
    let strict = WebhookClient::new(Secret::new(SECRET), crypto(), fast()).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/hook".to_owned(),
        "https://user:pw-5e5e@192.168.1.1/hook?token=q-7a7a".to_owned(),
    ] {
        let err = rotation_notify::check_webhook_url(&url, &Default::default())
            .await
            .unwrap_err();
        assert_eq!(err.reason, Reason::InvalidPolicy, "{url}: {err}");
        assert!(err.message.contains("ROTATION_URL_ALLOWLIST"), "{url}: {err}");
        let started = Instant::now();
        let err = strict.send(&url, &notification()).await.unwrap_err();
        assert_eq!(err.reason, Reason::InvalidPolicy, "{url}: {err}");
        assert!(err.message.starts_with("webhook http"), "{err}");
        assert!(
            !err.message.contains("pw-5e5e") && !err.message.contains("q-7a7a"),
            "{err}"
        );
        assert!(started.elapsed().as_millis() < 1000, "refusals are not retried");
    }
    assert!(requests.lock().unwrap().is_empty(), "nothing reached the receiver");

    // Allowed by host, host:port and CIDR.
    for list in [
        "localhost".to_owned(),
        format!("localhost:{port}"),
        "127.0.0.0/8".to_owned(),
    ] {
        let allow = Arc::new(rotation_core::outbound::UrlAllowlist::parse(&list).unwrap());
        let url = format!("http://localhost:{port}/hook");
        rotation_notify::check_webhook_url(&url, &allow).await.unwrap();
        let client = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
            .unwrap()
            .with_allowlist(allow);
        client
            .send(&url, &notification())
            .await
            .unwrap_or_else(|e| panic!("{list}: {e}"));
    }
    assert_eq!(requests.lock().unwrap().len(), 3);
    // host:port allows that port only.
    let other = Arc::new(rotation_core::outbound::UrlAllowlist::parse("localhost:1").unwrap());
    let err = WebhookClient::new(Secret::new(SECRET), crypto(), fast())
        .unwrap()
        .with_allowlist(other)
        .send(&format!("http://localhost:{port}/hook"), &notification())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::InvalidPolicy, "{err}");
}
