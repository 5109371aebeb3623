//! `HttpVerifier` against a local listener.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use std::sync::Arc;

use rotation_core::Reason;
use rotation_core::outbound::UrlAllowlist;
use rotation_core::ports::{Step, StepContext, Verifier};
use rotation_core::secret::{SecretConfig, SecretType};
use rotation_targets::HttpVerifier;

use crate::support::{ctx, secret, with_values};

const TOKEN: &str = "good-token-8b1f";

/// Serves `/health` (200 for the expected bearer token, 401 otherwise) and
/// `/moved` (302 to `/health`); returns the base URL.
async fn serve() -> String {
    let app = Router::new()
        .route(
            "/health",
            get(|headers: HeaderMap| async move {
                match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                    Some(v) if v == format!("Bearer {TOKEN}") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/health")]) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The allowlist these tests need: their listener is on loopback.
fn loopback() -> Arc<UrlAllowlist> {
    Arc::new(UrlAllowlist::parse("127.0.0.1").unwrap())
}

fn pending(value: Option<&str>) -> StepContext {
    let c = ctx(
        secret("app/token", SecretType::ApiKey, SecretConfig::default()),
        Step::Test,
    );
    with_values(&c, Some("old-token-77c2"), value)
}

#[tokio::test]
async fn the_expected_token_passes_and_others_fail() {
    let base = serve().await;
    let v = HttpVerifier::from_test_name(&format!("http:{base}/health"))
        .unwrap()
        .with_allowlist(loopback());
    let out = v.verify(&pending(Some(TOKEN))).await.unwrap();
    assert!(out.log.contains("200"), "{}", out.log);
    assert!(!out.log.contains(TOKEN));

    let e = v.verify(&pending(Some("wrong-token-0a9e"))).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert!(
        e.message.contains("401") && e.message.contains(&format!("{base}/health")),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("wrong-token-0a9e") && !e.message.contains("old-token"),
        "{}",
        e.message
    );

    // Redirects are not followed: the token stays with the named URL.
    let moved = HttpVerifier::new(&format!("{base}/moved"))
        .unwrap()
        .with_allowlist(loopback());
    let e = moved.verify(&pending(Some(TOKEN))).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert!(e.message.contains("302"), "{}", e.message);

    // No value to test; a value no header can carry.
    assert_eq!(v.verify(&pending(None)).await.unwrap_err().reason, Reason::InvalidInput);
    let e = v.verify(&pending(Some("bad\nvalue"))).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert!(!e.message.contains("bad\nvalue"));
}

#[tokio::test]
async fn userinfo_is_neither_sent_nor_shown() {
    let base = serve().await;
    let with_user = base.replacen("http://", "http://someone:url-pw-5d1c@", 1);
    let v = HttpVerifier::new(&format!("{with_user}/health"))
        .unwrap()
        .with_allowlist(loopback());
    // Only the bearer token is sent (basic auth from the URL would replace it).
    v.verify(&pending(Some(TOKEN))).await.unwrap();
    let e = v.verify(&pending(Some("nope-3c1d"))).await.unwrap_err();
    assert!(
        !e.message.contains("url-pw-5d1c") && !e.message.contains("someone"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn an_unreachable_url_is_backend_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = HttpVerifier::new(&format!("http://user:pw-9f9f@127.0.0.1:{port}/health"))
        .unwrap()
        .with_allowlist(loopback());
    let e = v.verify(&pending(Some(TOKEN))).await.unwrap_err();
    assert_eq!(e.reason, Reason::BackendUnavailable, "{}", e.message);
    assert!(
        e.message.contains(&format!("http://127.0.0.1:{port}/health")),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains(TOKEN) && !e.message.contains("pw-9f9f"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allow_listed() {
    // A listener that records whether anything reached it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = reached.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let refused = [
        format!("http://127.0.0.1:{port}/health"),
        format!("http://localhost:{port}/health"),
        "http://10.0.0.1/x".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/x".to_owned(),
        "http://[::ffff:169.254.169.254]/x".to_owned(),
        "http://0.0.0.0/x".to_owned(),
    ];
    for url in &refused {
        let v = HttpVerifier::new(url).unwrap();
        let e = v.check_destination().await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidPolicy, "{url}: {}", e.message);
        assert!(
            e.message.starts_with("http test ") && e.message.contains("ROTATION_URL_ALLOWLIST"),
            "{url}: {}",
            e.message
        );
        // Refused when sent too, before anything is sent.
        let e = v.verify(&pending(Some(TOKEN))).await.unwrap_err();
        assert_eq!(e.reason, Reason::InvalidPolicy, "{url}: {}", e.message);
        assert!(!e.message.contains(TOKEN));
    }
    let e = HttpVerifier::new("http://169.254.169.254/x")
        .unwrap()
        .check_destination()
        .await
        .unwrap_err();
    assert!(e.message.contains("169.254.169.254, a link-local"), "{}", e.message);
    let e = HttpVerifier::new(&format!("http://localhost:{port}/"))
        .unwrap()
        .check_destination()
        .await
        .unwrap_err();
    assert!(e.message.contains("localhost resolves to"), "{}", e.message);
    assert!(
        !reached.load(std::sync::atomic::Ordering::SeqCst),
        "a refused request reached the listener"
    );

    // Allowed by host, by host:port and by CIDR; another port of an
    // allowed host:port stays refused.
    let base = serve().await;
    let serve_port = base.rsplit(':').next().unwrap().to_owned();
    let by_name = base.replace("127.0.0.1", "localhost");
    for (list, url) in [
        ("localhost".to_owned(), format!("{by_name}/health")),
        (format!("localhost:{serve_port}"), format!("{by_name}/health")),
        (format!("127.0.0.1:{serve_port}"), format!("{base}/health")),
        ("127.0.0.0/8".to_owned(), format!("{by_name}/health")),
        ("10.0.0.0/8, 127.0.0.1/32".to_owned(), format!("{base}/health")),
    ] {
        let allow = Arc::new(UrlAllowlist::parse(&list).unwrap());
        let v = HttpVerifier::new(&url).unwrap().with_allowlist(allow);
        v.check_destination()
            .await
            .unwrap_or_else(|e| panic!("{list} {url}: {}", e.message));
        let out = v
            .verify(&pending(Some(TOKEN)))
            .await
            .unwrap_or_else(|e| panic!("{list} {url}: {}", e.message));
        assert!(out.log.contains("200"), "{}", out.log);
    }
    let other_port = Arc::new(UrlAllowlist::parse(&format!("localhost:{port}")).unwrap());
    let v = HttpVerifier::new(&format!("{by_name}/health"))
        .unwrap()
        .with_allowlist(other_port);
    assert_eq!(v.check_destination().await.unwrap_err().reason, Reason::InvalidPolicy);
    assert_eq!(
        v.verify(&pending(Some(TOKEN))).await.unwrap_err().reason,
        Reason::InvalidPolicy
    );
    // A host that does not resolve passes the check (it is checked when sent).
    HttpVerifier::new("https://no-such-host.invalid/x")
        .unwrap()
        .check_destination()
        .await
        .unwrap();
}
