//! Health, readiness, metrics, body limits, unknown routes, the scheduler
//! worker and graceful shutdown.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Options, TestServer, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_unknown_routes() {
    let s = TestServer::sqlite().await;
    let health = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    s.post(
        "/v1/authorities",
        &s.operator,
        json!({"id": "org-acme", "grace_period_hours": 1}),
    )
    .await;
    s.post("/v1/authorities/org-acme/rotate", &s.operator, json!({})).await;
    // A client mistake is not a failed rotation.
    s.post("/v1/authorities/no-such-org/rotate", &s.operator, json!({}))
        .await;
    let text = s.metrics().await;
    assert!(
        text.contains(r#"rotation_rotations_total{kind="authority",outcome="completed"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rotation_rotations_total{kind="authority",outcome="rejected"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"outcome="failed""#), "{text}");
    assert!(text.contains("rotation_rotation_duration_seconds_bucket"), "{text}");
    assert!(text.contains("rotation_keys_in_grace"), "{text}");
    assert!(text.contains("rotation_active_runs"), "{text}");
    // The compliance report's figures: the rotated authority's old key is in
    // its grace period, which ends within 24 hours.
    assert!(text.contains("rotation_overdue_targets 0"), "{text}");
    assert!(text.contains("rotation_stuck_runs 0"), "{text}");
    assert!(text.contains("rotation_grace_ending_soon 1"), "{text}");

    assert_error(
        &s.get("/v1/nothing", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let s = TestServer::sqlite_with(Options {
        body_limit: 4096,
        ..Options::default()
    })
    .await;
    s.post("/v1/keyrings", &s.operator, json!({"name": "big"})).await;
    let big = "x".repeat(8192);
    let got = s
        .post("/v1/keyrings/big/values", &s.operator, json!({"id": "v", "value": big}))
        .await;
    // Refused by the body limit before any handler: a JSON error all the same.
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "invalid_input");
    assert!(got.1["message"].as_str().unwrap().contains("4096"), "{}", got.1);
    // Without a Content-Length (streamed), the limit holds too: 413, or the
    // server hangs up while the client is still writing the rest.
    let chunks: Vec<Result<String, std::io::Error>> = (0..5).map(|_| Ok("y".repeat(1024))).collect();
    let sent = s
        .client
        .post(format!("{}/v1/keyrings/big/values", s.base))
        .bearer_auth(&s.operator)
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await;
    match sent {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["reason"], "invalid_input", "{body}");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }
    let small = s
        .post(
            "/v1/keyrings/big/values",
            &s.operator,
            json!({"id": "v", "value": "small"}),
        )
        .await;
    assert_eq!(small.0, StatusCode::CREATED, "{}", small.1);
    assert_error(
        &s.call(reqwest::Method::POST, "/v1/keyrings", Some(&s.operator), None)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    s.stop().await;
}

fn futures_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<String, std::io::Error>> + Send + 'static {
    struct Iter(std::vec::IntoIter<Result<String, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<String, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

/// A request still unanswered after the request timeout (here: its body
/// never arrives) is answered 408 with a JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_is_a_json_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = TestServer::sqlite_with(Options {
        request_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/keyrings HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        s.operator
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; read the answer until its JSON is complete.
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).ends_with('}') {
        assert!(
            Instant::now() < deadline,
            "no answer: {}",
            String::from_utf8_lossy(&answer)
        );
        match tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("content-type: application/json"),
        "{answer}"
    );
    let body: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["reason"], "backend_unavailable", "{body}");
    assert!(body["message"].as_str().unwrap().contains("longer than"), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_worker_runs_due_rotations_and_stops_on_shutdown() {
    let s = TestServer::sqlite_with(Options {
        scheduler_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    s.post("/v1/authorities", &s.operator, json!({"id": "org-acme"})).await;
    let at = (s.now() + TimeDelta::minutes(5)).to_rfc3339();
    let (status, scheduled) = s
        .post("/v1/authorities/org-acme/schedule", &s.operator, json!({"at": at}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    s.clock.advance(TimeDelta::minutes(6));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = s.get("/v1/authorities/org-acme/status", &s.viewer).await;
        // Promoted (last_rotation) and finished (no active run).
        if st["last_rotation"].is_string() && st["active_rotation_id"].is_null() {
            assert!(st["next_scheduled"].is_null(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not rotate: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events) = s.get("/v1/audit?limit=20", &s.viewer).await;
    let completed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "rotation_completed")
        .expect("rotation_completed");
    assert_eq!(completed["rotation_id"], scheduled["rotation_id"]);
    // The worker's rotation is in the duration histogram (the only rotation of this process).
    let text = s.metrics().await;
    assert!(
        text.contains(r#"rotation_rotation_duration_seconds_count{kind="authority"} 1"#),
        "{text}"
    );
    let shutdown = tokio::time::timeout(Duration::from_secs(10), s.stop()).await;
    assert!(shutdown.is_ok(), "graceful shutdown finishes");
}

/// A custody whose backend is down: every call fails with
/// `backend_unavailable`; it counts the data keys it was asked to wrap.
#[derive(Default)]
struct DownCustody {
    wraps: std::sync::atomic::AtomicUsize,
}

fn down() -> rotation_core::Error {
    rotation_core::Error::backend("injected: the custody backend is unreachable")
}

#[async_trait::async_trait]
impl rotation_core::ports::KeyCustody for DownCustody {
    fn name(&self) -> &str {
        "down"
    }
    async fn create_signing_key(
        &self,
        _: &rotation_core::ids::KeyId,
    ) -> rotation_core::Result<rotation_core::ports::NewSigningKey> {
        Err(down())
    }
    async fn sign(
        &self,
        _: &rotation_core::ids::KeyId,
        _: &rotation_core::authority::CustodyRef,
        _: &[Vec<u8>],
    ) -> rotation_core::Result<Vec<Vec<u8>>> {
        Err(down())
    }
    async fn destroy_signing_key(
        &self,
        _: &rotation_core::ids::KeyId,
        _: &rotation_core::authority::CustodyRef,
    ) -> rotation_core::Result<()> {
        Err(down())
    }
    async fn retire_signing_key(
        &self,
        _: &rotation_core::ids::KeyId,
        _: &rotation_core::authority::CustodyRef,
    ) -> rotation_core::Result<()> {
        Err(down())
    }
    async fn create_data_key(
        &self,
        _: &rotation_core::ids::KeyringName,
        _: u32,
    ) -> rotation_core::Result<(rotation_core::ports::DataKey, rotation_core::authority::CustodyRef)> {
        Err(down())
    }
    async fn wrap_data_key(
        &self,
        _: &rotation_core::ids::KeyringName,
        _: u32,
        _: &rotation_core::ports::DataKey,
    ) -> rotation_core::Result<rotation_core::authority::CustodyRef> {
        self.wraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(down())
    }
    async fn unwrap_data_key(
        &self,
        _: &rotation_core::ids::KeyringName,
        _: u32,
        _: &rotation_core::authority::CustodyRef,
    ) -> rotation_core::Result<rotation_core::ports::DataKey> {
        Err(down())
    }
    async fn rewrap(
        &self,
        _: &rotation_core::ports::WrapContext,
        _: &rotation_core::authority::CustodyRef,
    ) -> rotation_core::Result<Option<rotation_core::authority::CustodyRef>> {
        Err(down())
    }
}

#[tokio::test]
async fn readiness_needs_a_usable_custody() {
    let custody = std::sync::Arc::new(DownCustody::default());
    let s = TestServer::sqlite_with(Options {
        custody: Some(custody.clone()),
        ..Options::default()
    })
    .await;
    let health = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the process is up");
    let ready = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "backend_unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("custody backend is unreachable"),
        "{body}"
    );
    // Anyone may call /readyz: the custody is probed at most once per few
    // seconds, whatever the number of calls.
    for _ in 0..5 {
        let again = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(custody.wraps.load(std::sync::atomic::Ordering::SeqCst), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::sqlite_with(Options {
        request_timeout: Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = slow.write_all(b"X-Still: here\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "no answer to a request whose headers never ended: {text}"
    );
    // Clients that send their headers at once are served as before.
    let health = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    s.stop().await;
}
