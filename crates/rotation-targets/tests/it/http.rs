//! `HttpVerifier` against a local listener.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use rotation_core::Reason;
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
    let v = HttpVerifier::from_test_name(&format!("http:{base}/health")).unwrap();
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
    let moved = HttpVerifier::new(&format!("{base}/moved")).unwrap();
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
    let v = HttpVerifier::new(&format!("{with_user}/health")).unwrap();
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
    let v = HttpVerifier::new(&format!("http://user:pw-9f9f@127.0.0.1:{port}/health")).unwrap();
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
