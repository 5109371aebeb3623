//! The `rotation-server` binary: `token create` prints a working token
//! once, `serve` reads its key file, and SIGTERM stops it gracefully.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{KEY_BYTES, init_store};

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_then_serve_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rotation.db").display());
    init_store(&url).await;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("master.key"))
        .unwrap()
        .write_all(hex::encode(KEY_BYTES).as_bytes())
        .unwrap();

    let created = Command::new(BIN)
        .args([
            "--store",
            &url,
            "token",
            "create",
            "--role",
            "viewer",
            "--description",
            "ci",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("rot_"), "{token}");
    let listed = Command::new(BIN)
        .args(["--store", &url, "token", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("\"viewer\"") && !listed.contains(token.rsplit_once('_').unwrap().1));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["--store", &url, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("ROTATION_MASTER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            assert_eq!(r.status(), StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .get(format!("{base}/v1/authorities"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never logged");
}

/// A store with its 0600 key file, as `rotation init` leaves it.
pub(crate) async fn store_with_key_file(dir: &std::path::Path) -> String {
    let url = format!("sqlite://{}", dir.join("rotation.db").display());
    init_store(&url).await;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("master.key"))
        .unwrap()
        .write_all(hex::encode(KEY_BYTES).as_bytes())
        .unwrap();
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_notification_config_fails_startup_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_key_file(dir.path()).await;
    let missing = dir.path().join("no-such-notify.json");
    let out = Command::new(BIN)
        .args(["--store", &url, "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("ROTATION_NOTIFY_CONFIG", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error[invalid_input]") && stderr.contains("ROTATION_NOTIFY_CONFIG"),
        "{stderr}"
    );
}

/// After rotations (a success, a dual-write and a rollback), neither any
/// answer but `GET /v1/secrets/{path}` nor any line the server logged
/// (at debug level) contains a secret value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_or_log_line_carries_a_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_key_file(dir.path()).await;
    let created = Command::new(BIN)
        .args(["--store", &url, "token", "create", "--role", "admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let refusing = crate::support::http_answering(503).await;
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--store",
            &url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--scheduler-interval-seconds",
            "1",
        ])
        .env("ROTATION_LOG", "debug")
        // The verification listener of this test is on loopback.
        .env("ROTATION_URL_ALLOWLIST", "127.0.0.1")
        .env_remove("ROTATION_NOTIFY_CONFIG")
        .env_remove("ROTATION_MASTER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as it comes: a full pipe would block the server's logging.
    let mut stderr = child.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut log = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut log).unwrap();
        log
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers: Vec<String> = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = client.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    use reqwest::Method;
    use serde_json::json;
    let given = [
        "leak-given-one-5f0e2c",
        "leak-given-two-a81d3b",
        "leak-refused-three-9c4e77",
    ];
    values.extend(given.iter().map(|v| v.to_string()));
    let (status, put) = call(Method::PUT, "/v1/secrets/leak/db", Some(json!({"value": given[0]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    answers.push(put);
    let (status, put) = call(
        Method::PUT,
        "/v1/secrets/leak/key",
        Some(json!({"type": "api_key", "generate": "random:40"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    answers.push(put);
    let (status, policy) = call(
        Method::PUT,
        "/v1/policies/refused",
        Some(json!({"interval_days": 30, "verify": [format!("http:{refusing}/")], "notify": ["log"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    let steps = [
        (
            Method::POST,
            "/v1/secrets/leak/db:rotate",
            Some(json!({"value": given[1]})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/secrets/leak/db:rotate",
            Some(json!({})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/secrets/leak/key:rotate",
            Some(json!({})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/secrets/leak/db:rotate",
            Some(json!({"policy": "refused", "value": given[2]})),
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            "/v1/secrets/leak/key:rotate",
            Some(json!({"policy": "refused"})),
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            "/v1/secrets/leak/key:validate",
            Some(json!({"value": given[0]})),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/secrets", None, StatusCode::OK),
        (Method::GET, "/v1/secrets/leak/db:history", None, StatusCode::OK),
        (Method::GET, "/v1/secrets/leak/key:history", None, StatusCode::OK),
        (Method::GET, "/v1/secrets/leak/db:status", None, StatusCode::OK),
        (Method::GET, "/v1/secrets/leak/key:status", None, StatusCode::OK),
        (Method::GET, "/v1/stats", None, StatusCode::OK),
        (Method::GET, "/v1/schedules/plan", None, StatusCode::OK),
        (Method::GET, "/v1/audit?limit=1000", None, StatusCode::OK),
        (Method::GET, "/v1/outbox", None, StatusCode::OK),
        (Method::GET, "/v1/report", None, StatusCode::OK),
    ];
    for (method, path, body, expected) in steps {
        let (status, text) = call(method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        answers.push(text);
    }
    // Every version's value, read the only way values leave the server.
    for (path, versions) in [("leak/db", 4), ("leak/key", 3)] {
        for v in 1..=versions {
            let (status, text) = call(Method::GET, &format!("/v1/secrets/{path}?version={v}"), None).await;
            if status == StatusCode::OK {
                let got: serde_json::Value = serde_json::from_str(&text).unwrap();
                values.push(got["value"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(values.len() >= 7, "{values:?}");
    // Let the worker pass once (outbox delivery to `log`).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = drained.join().unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("notification"), "the log notifier ran: {log}");
    for value in &values {
        for answer in &answers {
            assert!(!answer.contains(value.as_str()), "an answer carries a value: {answer}");
        }
        assert!(!log.contains(value.as_str()), "the log carries a value");
    }
    assert!(!log.contains(&token), "the token is never logged");
}

/// At the default log level, each request's completion is logged at INFO
/// with the request id the client sent, method, path, status and latency;
/// the bearer token never appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_carry_the_request_id_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_key_file(dir.path()).await;
    let created = Command::new(BIN)
        .args(["--store", &url, "token", "create", "--role", "viewer"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--store", &url, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("ROTATION_LOG")
        .env_remove("ROTATION_NOTIFY_CONFIG")
        .env_remove("ROTATION_MASTER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut log = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut log).unwrap();
        log
    });
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request_id = "req-log-test-7f3a9c";
    let r = client
        .get(format!("{base}/v1/authorities?secret-looking=q"))
        .bearer_auth(&token)
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], request_id);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = String::from_utf8_lossy(&drained.join().unwrap()).into_owned();
    let line = log
        .lines()
        .find(|l| l.contains(request_id))
        .unwrap_or_else(|| panic!("no log line with the request id:\n{log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("GET") && line.contains("/v1/authorities"), "{line}");
    assert!(line.contains("status=200") && line.contains("latency="), "{line}");
    assert!(
        !log.contains("secret-looking"),
        "the query string is not logged:\n{log}"
    );
    assert!(!log.contains(&token), "the token is never logged:\n{log}");
    let secret_part = token.rsplit_once('_').unwrap().1;
    assert!(!log.contains(secret_part), "{log}");
}

/// `--help` names the environment variables of the store URL and Vault
/// credentials but never prints their values.
#[test]
fn help_never_prints_secret_environment_values() {
    let out = Command::new(BIN)
        .arg("--help")
        .env("ROTATION_STORE", "postgres://u:topsecretpw@h/db")
        .env("ROTATION_VAULT_TOKEN", "hvs.topsecrettoken")
        .env("ROTATION_VAULT_SECRET_ID", "topsecretid")
        .env("ROTATION_VAULT_ROLE_ID", "topsecretrole")
        .env("VAULT_ADDR", "https://user:topsecretaddr@vault.example")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("ROTATION_STORE"), "{help}");
    assert!(!help.contains("topsecret"), "{help}");
}
