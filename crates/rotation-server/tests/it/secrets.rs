//! Secrets, operator-form policies, schedule plan and resume, statistics,
//! the outbox and the worker's delivery, over a real socket.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use reqwest::StatusCode;
use rotation_core::ports::{Notification, Notifier};
use serde_json::{Value, json};

use crate::support::{Options, TestServer, assert_error, http_answering};

/// GET of a secret's value as `token`, with the `Cache-Control` header.
async fn read_value(s: &TestServer, path: &str, token: &str) -> (StatusCode, Option<String>, Value) {
    let r = s
        .client
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cache = r.headers().get("cache-control").map(|v| v.to_str().unwrap().to_owned());
    (status, cache, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_put_get_list_rotate_validate_history_status() {
    let s = TestServer::sqlite().await;
    let first = "first-value-3a9c";
    let (status, put) = s
        .put("/v1/secrets/db/prod/app", &s.operator, json!({"value": first}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    assert_eq!(put["secret"]["path"], "db/prod/app");
    assert_eq!(put["secret"]["type"], "generic");
    assert_eq!(put["version"]["version"], 1);
    assert_eq!(put["version"]["stages"], json!(["CURRENT"]));
    assert!(!put.to_string().contains(first), "{put}");
    let second = "second-value-77d1";
    let (status, put) = s
        .put("/v1/secrets/db/prod/app", &s.operator, json!({"value": second}))
        .await;
    assert_eq!(status, StatusCode::OK, "an existing secret gets a new version: {put}");
    assert_eq!(put["version"]["version"], 2);

    assert_error(
        &s.put("/v1/secrets/db/prod/app", &s.viewer, json!({"value": "x"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.put(
            "/v1/secrets/db/prod/app",
            &s.operator,
            json!({"value": "x", "generate": "uuid"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.put("/v1/secrets/other", &s.operator, json!({"generate": "random:0"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.put("/v1/secrets/other", &s.operator, json!({"valeu": "typo"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.put("/v1/secrets/bad%20path", &s.operator, json!({"value": "x"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    for bad in ["/v1/secrets/a%2F..%2Fb", "/v1/secrets/a//b", "/v1/secrets/trailing/"] {
        assert_error(
            &s.put(bad, &s.operator, json!({"value": "x"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
    }
    // A script runs a program on the server: admins only.
    assert_error(
        &s.put(
            "/v1/secrets/scripted",
            &s.operator,
            json!({"value": "x", "script": "/bin/true"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Reading a value: admin only, no-store, audited.
    let (status, cache, got) = read_value(&s, "/v1/secrets/db/prod/app", &s.admin).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(got["value"], second);
    assert_eq!(got["version"], 2);
    assert_eq!(got["path"], "db/prod/app");
    assert!(got["created_at"].is_string() && got["attributes"].is_object(), "{got}");
    let (status, _, got) = read_value(&s, "/v1/secrets/db%2Fprod%2Fapp?version=1", &s.admin).await;
    assert_eq!(status, StatusCode::OK, "percent-encoded slashes work: {got}");
    assert_eq!(got["value"], first);
    let (_, _, got) = read_value(&s, "/v1/secrets/db/prod/app?stage=previous", &s.admin).await;
    assert_eq!(got["version"], 1);
    assert_error(
        &s.get("/v1/secrets/db/prod/app", &s.viewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.get("/v1/secrets/db/prod/app", &s.operator).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.get("/v1/secrets/db/prod/app?stage=pending", &s.admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/v1/secrets/db/prod/app?stage=newest", &s.admin).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.get("/v1/secrets/db/prod/app?stage=current&version=1", &s.admin).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.get("/v1/secrets/db/nowhere", &s.admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, audit) = s.get("/v1/audit?limit=50", &s.viewer).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "secret_read" && e["actor"].as_str().unwrap().starts_with("token:")),
        "{audit}"
    );

    // Listing: no values.
    let (status, list) = s.get("/v1/secrets", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["path"], "db/prod/app");
    assert_eq!(list[0]["current_version"], 2);
    assert!(list[0].get("value").is_none());
    assert!(!list.to_string().contains(second));

    // A generic secret rotates staged by default.
    let (status, rotated) = s.post("/v1/secrets/db/prod/app:rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["strategy"], "staged");
    assert_eq!(rotated["status"], "success");
    assert_eq!(rotated["old_version"], 2);
    assert_eq!(rotated["new_version"], 3);
    assert_error(
        &s.post("/v1/secrets/db/prod/app:rotate", &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post("/v1/secrets/db/nowhere:rotate", &s.operator, json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post("/v1/secrets/db/prod/app:spin", &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post("/v1/secrets/db/prod/app", &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.get("/v1/secrets/db/prod/app:spin", &s.viewer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    // The same rotation id reports the same run instead of rotating again.
    let id = "0190d4a0-0000-7000-8000-000000000001";
    let (status, once) = s
        .post(
            "/v1/secrets/db/prod/app:rotate",
            &s.operator,
            json!({"rotation_id": id, "value": "given-value-5e21"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{once}");
    let (_, twice) = s
        .post(
            "/v1/secrets/db/prod/app:rotate",
            &s.operator,
            json!({"rotation_id": id}),
        )
        .await;
    assert_eq!(once["new_version"], twice["new_version"], "{twice}");
    let (_, _, got) = read_value(&s, "/v1/secrets/db/prod/app", &s.admin).await;
    assert_eq!(got["value"], "given-value-5e21");

    // An API key rotates dual-write: old and new are both valid during the grace period.
    let (status, put) = s
        .put(
            "/v1/secrets/api/partner",
            &s.operator,
            json!({"type": "api_key", "generate": "hex:64"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    let (_, _, old) = read_value(&s, "/v1/secrets/api/partner", &s.admin).await;
    let old = old["value"].as_str().unwrap().to_owned();
    assert_eq!(old.len(), 64);
    let (status, rotated) = s.post("/v1/secrets/api/partner:rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["strategy"], "dual-write");
    assert!(rotated["grace_period_end"].is_string(), "{rotated}");
    let (_, _, new) = read_value(&s, "/v1/secrets/api/partner", &s.admin).await;
    let new = new["value"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let (status, v) = s
        .post("/v1/secrets/api/partner:validate", &s.operator, json!({"value": old}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"valid": true, "version": 1, "stage": "PREVIOUS"}));
    let (_, v) = s
        .post("/v1/secrets/api/partner:validate", &s.operator, json!({"value": new}))
        .await;
    assert_eq!(v, json!({"valid": true, "version": 2, "stage": "CURRENT"}));
    let (_, v) = s
        .post(
            "/v1/secrets/api/partner:validate",
            &s.operator,
            json!({"value": "nope"}),
        )
        .await;
    assert_eq!(v["valid"], false);
    assert_error(
        &s.post("/v1/secrets/api/partner:validate", &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );

    // History and status: viewer.
    let (status, history) = s.get("/v1/secrets/api/partner:history", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "success");
    assert_eq!(history[0]["old_version"], 1);
    assert_eq!(history[0]["new_version"], 2);
    assert!(!history[0]["steps"].as_array().unwrap().is_empty(), "{history:?}");
    let (_, history) = s.get("/v1/secrets/db/prod/app:history?limit=1", &s.viewer).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_error(
        &s.get("/v1/secrets/db/prod/app:history?limit=0", &s.viewer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, st) = s.get("/v1/secrets/api/partner:status", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(st["type"], "api_key");
    assert_eq!(st["current_version"], 2);
    assert_eq!(st["previous_version"], 1);
    assert_eq!(st["last_status"], "success");
    assert!(st["previous_valid_until"].is_string(), "{st}");
    assert_error(
        &s.get("/v1/secrets/api/none:status", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    for body in [st.to_string(), rotated.to_string()] {
        assert!(!body.contains(&old) && !body.contains(&new), "{body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_policies_plan_stats_rollback_outbox_and_resume() {
    let s = TestServer::sqlite().await;
    let refusing = http_answering(503).await;

    // The operator's form: checked field by field, nothing written on error.
    for (body, field) in [
        (json!({"interval_days": -1}), "interval_days"),
        (json!({"interval_days": 30, "strategy": "sideways"}), "strategy"),
        (json!({"interval_days": 30, "max_retries": "three"}), "max_retries"),
        (json!({"interval_days": 30, "intervl_days": 3}), "intervl_days"),
        (json!({"interval_days": 30, "generator": "random:0"}), "generator"),
    ] {
        let got = s.put("/v1/policies/bad", &s.admin, body.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
        let message = got.1["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{body}: {message}");
    }
    assert_error(
        &s.get("/v1/policies/bad", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.put("/v1/policies/flaky", &s.operator, json!({"interval_days": 30}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, flaky) = s
        .put(
            "/v1/policies/flaky",
            &s.admin,
            json!({
                "interval_days": 30, "strategy": "staged", "max_retries": 0,
                "verify": [format!("http:{refusing}/check")], "notify": ["log"],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{flaky}");
    assert_eq!(flaky["procedure"]["strategy"], "staged");
    assert_eq!(flaky["procedure"]["max_retries"], 0);
    // The engine's form still works, now with a procedure.
    let (status, engine_form) = s
        .put(
            "/v1/policies/engine-form",
            &s.admin,
            json!({"trigger": {"max_age_days": 10}, "procedure": {"strategy": "immediate"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{engine_form}");
    assert_eq!(engine_form["procedure"]["strategy"], "immediate");

    // One success and one rollback.
    s.put("/v1/secrets/app/token", &s.operator, json!({"value": "token-v1-aa11"}))
        .await;
    let (status, ok) = s.post("/v1/secrets/app/token:rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    // `flaky` has an http: test the secret does not carry: an admin's choice.
    let failed = s
        .post(
            "/v1/secrets/app/token:rotate",
            &s.admin,
            json!({"policy": "flaky", "value": "token-refused-bb22"}),
        )
        .await;
    assert_error(&failed, StatusCode::CONFLICT, "verification_failed");
    assert!(failed.1["rotation_id"].is_string(), "{}", failed.1);
    assert!(!failed.1.to_string().contains("token-refused-bb22"));
    let (_, history) = s.get("/v1/secrets/app/token:history", &s.viewer).await;
    assert_eq!(history[0]["status"], "rolled_back", "{history}");
    assert_eq!(history[0]["error_reason"], "verification_failed");
    assert!(
        history[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|step| step["ok"] == false),
        "{history}"
    );
    assert_eq!(history[1]["status"], "success");
    assert!(!history.to_string().contains("token-refused-bb22"));
    let (status, st) = s.get("/v1/secrets/app/token:status", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["last_status"], "rolled_back");
    assert_eq!(st["current_version"], ok["new_version"], "the rollback kept the value");

    let (status, stats) = s.get("/v1/stats", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["total_rotations"], 2, "{stats}");
    assert_eq!(stats["successful_rotations"], 1);
    assert_eq!(stats["rollbacks"], 1);

    // The rollback queued a notice to `log`; the outbox is admin's and carries no value.
    let deadline = Instant::now() + Duration::from_secs(10);
    let outbox = loop {
        let (status, outbox) = s.get("/v1/outbox", &s.admin).await;
        assert_eq!(status, StatusCode::OK, "{outbox}");
        let delivered = outbox
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["recipient"] == "log" && !m["delivered_at"].is_null());
        if delivered {
            break outbox;
        }
        assert!(Instant::now() < deadline, "not delivered: {outbox}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!outbox.to_string().contains("token-refused-bb22"), "{outbox}");
    assert!(!outbox.to_string().contains("token-v1-aa11"), "{outbox}");
    let (status, pending) = s.get("/v1/outbox?pending=true&limit=10", &s.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pending.as_array().unwrap().is_empty(), "{pending}");
    assert_error(
        &s.get("/v1/outbox", &s.operator).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.get("/v1/outbox?limit=0", &s.admin).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );

    // Statistics reset: admin only.
    assert_error(
        &s.post("/v1/stats/reset", &s.operator, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, reset) = s.post("/v1/stats/reset", &s.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert!(reset["reset_at"].is_string());
    s.clock.advance(TimeDelta::seconds(1));
    let (_, stats) = s.get("/v1/stats", &s.viewer).await;
    assert_eq!(stats["total_rotations"], 0, "{stats}");

    // Schedules: an offset as a duration, the plan, an orphaned schedule and its resume.
    s.put("/v1/secrets/app/flaky", &s.operator, json!({"value": "flaky-v1-cc33"}))
        .await;
    assert_error(
        &s.post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "secret:app/flaky", "policy": "flaky", "offset": "soon"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "secret:app/flaky", "policy": "flaky", "offset": "1h", "offset_seconds": 60}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    // `flaky`'s http: test is not the secret's own: an admin schedules it.
    let (status, schedule) = s
        .post(
            "/v1/schedules",
            &s.admin,
            json!({"target": "secret:app/flaky", "policy": "flaky", "offset": "1h"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    assert_eq!(schedule["offset_seconds"], 3600);
    let id = schedule["id"].as_str().unwrap().to_owned();
    let (status, plan) = s.get("/v1/schedules/plan?within=60d", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!(
        plan.as_array()
            .unwrap()
            .iter()
            .any(|p| p["target"] == "secret:app/flaky" && p["strategy"] == "staged"),
        "{plan}"
    );
    let (status, default_plan) = s.get("/v1/schedules/plan", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{default_plan}");
    assert_error(
        &s.get("/v1/schedules/plan?within=later", &s.viewer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let resume = format!("/v1/schedules/{id}/resume");
    assert_error(
        &s.post(&resume, &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    s.clock.advance(TimeDelta::days(31));
    let (status, outcomes) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{outcomes}");
    assert!(
        outcomes
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["target"] == "secret:app/flaky" && o["error_reason"] == "verification_failed"),
        "{outcomes}"
    );
    let (_, all) = s.get("/v1/schedules?all=true", &s.viewer).await;
    let orphaned = all.as_array().unwrap().iter().find(|x| x["id"] == id.as_str()).unwrap();
    assert_eq!(orphaned["state"], "orphaned", "{all}");
    assert_error(
        &s.post(&resume, &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, resumed) = s.post(&resume, &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], "scheduled");
    assert_eq!(resumed["attempts"], 0);
    assert_error(
        &s.post(&resume, &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post("/v1/schedules/not-a-uuid/resume", &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post(
            "/v1/schedules/0190d4a0-0000-7000-8000-0000000000ff/resume",
            &s.operator,
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let metrics = s.metrics().await;
    assert!(metrics.contains("rotation_outbox_pending"), "{metrics}");
    assert!(metrics.contains("rotation_orphaned_schedules"), "{metrics}");
    s.stop().await;
}

/// A notifier that remembers what it delivered.
#[derive(Default)]
struct Recording(Mutex<Vec<(String, Notification)>>);

type Boxed<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = rotation_core::Result<()>> + Send + 'a>>;

impl Notifier for Recording {
    fn notify<'a, 'b, 'c>(&'a self, notification: &'b Notification) -> Boxed<'c>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.deliver("default", notification)
    }

    fn deliver<'a, 'b, 'n, 'c>(&'a self, recipient: &'b str, notification: &'n Notification) -> Boxed<'c>
    where
        'a: 'c,
        'b: 'c,
        'n: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push((recipient.to_owned(), notification.clone()));
            Ok(())
        })
    }
}

/// The worker delivers the outbox after its pass, through the server's notifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_rotates_due_secrets_and_delivers_their_notifications() {
    let recording = Arc::new(Recording::default());
    let s = TestServer::sqlite_with(Options {
        scheduler_interval: Some(Duration::from_millis(100)),
        notifier: Some(recording.clone()),
        ..Options::default()
    })
    .await;
    let (status, _) = s
        .put(
            "/v1/policies/daily",
            &s.admin,
            json!({"interval_days": 1, "notify": ["https://hooks.example/rotation"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.put(
        "/v1/secrets/svc/worker",
        &s.operator,
        json!({"value": "worker-v1-dd44"}),
    )
    .await;
    let (status, schedule) = s
        .post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "secret:svc/worker", "policy": "daily", "offset_seconds": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    s.clock.advance(TimeDelta::days(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = recording.0.lock().unwrap().clone();
        if let Some((recipient, n)) = delivered.iter().find(|(_, n)| n.target == "secret:svc/worker") {
            assert_eq!(recipient, "https://hooks.example/rotation");
            assert!(!n.details.to_string().contains("worker-v1-dd44"));
            break;
        }
        assert!(Instant::now() < deadline, "nothing delivered: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, st) = s.get("/v1/secrets/svc/worker:status", &s.viewer).await;
    assert_eq!(st["current_version"], 2, "{st}");
    let (_, pending) = s.get("/v1/outbox?pending=true", &s.admin).await;
    assert!(pending.as_array().unwrap().is_empty(), "{pending}");
    s.stop().await;
}

/// A refused body never comes back in the error: neither a numeric value
/// nor a string value next to a wrong-typed field (issue 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_secret_bodies_are_not_echoed() {
    let s = TestServer::sqlite().await;
    let numeric = s
        .put("/v1/secrets/app/key", &s.operator, json!({"value": 987654321}))
        .await;
    assert_error(&numeric, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let text = numeric.1.to_string();
    assert!(!text.contains("987654321"), "{text}");
    assert!(text.contains("value") && text.contains("expected a string"), "{text}");

    let wrong_type = s
        .put(
            "/v1/secrets/app/key",
            &s.operator,
            json!({"value": "s3cr3t-XYZ", "type": 12345}),
        )
        .await;
    assert_error(&wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let text = wrong_type.1.to_string();
    assert!(!text.contains("s3cr3t-XYZ") && !text.contains("12345"), "{text}");
    assert!(text.contains("type"), "{text}");

    // Through the `:rotate` dispatcher (read once as JSON, then as its body).
    let rotate = s
        .post("/v1/secrets/app/key:rotate", &s.operator, json!({"value": 55555555}))
        .await;
    assert_error(&rotate, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(!rotate.1.to_string().contains("55555555"), "{}", rotate.1);

    // Not JSON at all: only the position.
    let response = s
        .client
        .put(format!("{}/v1/secrets/app/key", s.base))
        .bearer_auth(&s.operator)
        .header("content-type", "application/json")
        .body(r#"{"value": "s3cr3t-XYZ" "#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = response.text().await.unwrap();
    assert!(!text.contains("s3cr3t-XYZ") && text.contains("line 1"), "{text}");
    s.stop().await;
}

/// The HTTP verifier sends each new value to its URL: an operator may not
/// set or change `http:URL` tests (admin may), everything else is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_or_change_http_verification_urls() {
    let s = TestServer::sqlite().await;
    let refused = s
        .put(
            "/v1/secrets/app/exfil",
            &s.operator,
            json!({"value": "v1", "verify": ["http:https://attacker.example/collect"]}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        refused.1["message"].as_str().unwrap().contains("admin"),
        "{}",
        refused.1
    );
    let (status, _) = s.get("/v1/secrets/app/exfil:status", &s.viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");

    // Other tests stay the operator's.
    let plain = s
        .put(
            "/v1/secrets/app/exfil",
            &s.operator,
            json!({"value": "v1", "verify": ["nonempty"]}),
        )
        .await;
    assert_eq!(plain.0, StatusCode::CREATED, "{}", plain.1);

    // An admin sets a URL; the operator may resend it unchanged but not change it.
    let url = "http:https://checker.example/health";
    let admin = s
        .put("/v1/secrets/app/exfil", &s.admin, json!({"verify": ["nonempty", url]}))
        .await;
    assert_eq!(admin.0, StatusCode::OK, "{}", admin.1);
    let same = s
        .put(
            "/v1/secrets/app/exfil",
            &s.operator,
            json!({"value": "v3", "verify": ["nonempty", url]}),
        )
        .await;
    assert_eq!(same.0, StatusCode::OK, "{}", same.1);
    let value_only = s
        .put("/v1/secrets/app/exfil", &s.operator, json!({"value": "v4"}))
        .await;
    assert_eq!(value_only.0, StatusCode::OK, "{}", value_only.1);
    let changed = s
        .put(
            "/v1/secrets/app/exfil",
            &s.operator,
            json!({"verify": ["nonempty", "http:https://attacker.example/collect"]}),
        )
        .await;
    assert_error(&changed, StatusCode::FORBIDDEN, "forbidden");
    let removed = s
        .put("/v1/secrets/app/exfil", &s.operator, json!({"verify": ["nonempty"]}))
        .await;
    assert_error(&removed, StatusCode::FORBIDDEN, "forbidden");
    s.stop().await;
}

/// A secret's stored value and its entry in the list, read back as admin
/// (neither shows the settings: a put's answer does).
async fn stored(s: &TestServer, path: &str) -> (Value, Value) {
    let (status, _, value) = read_value(s, &format!("/v1/secrets/{path}"), &s.admin).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let (status, list) = s.get("/v1/secrets", &s.admin).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let secret = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("{path} not listed: {list}"));
    (value, secret)
}

/// A 403 `forbidden` naming the admin role and `setting` (the first one
/// changed), quoting none of `values`.
fn assert_admin_needed(response: &(StatusCode, Value), setting: &str, values: &[&str]) {
    assert_error(response, StatusCode::FORBIDDEN, "forbidden");
    let message = response.1["message"].as_str().unwrap();
    let changing = format!("changing {setting}");
    assert!(
        message.contains("admin role") && message.contains(&changing),
        "{message}"
    );
    for v in values {
        assert!(!message.contains(v), "{message}");
    }
}

/// `script`, `admin_secret`, `ca_secret` and `role` decide where a new
/// value is sent or what runs with it: setting or changing them needs
/// admin (on a new secret too), resending them unchanged does not, and a
/// refused request changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_or_change_script_admin_secret_ca_secret_and_role() {
    let s = TestServer::sqlite().await;

    // New secrets: refused for operators, nothing written.
    let new_script = s
        .put(
            "/v1/secrets/app/scripted",
            &s.operator,
            json!({"value": "v1", "script": "/tmp/operator-exfil.sh"}),
        )
        .await;
    assert_admin_needed(&new_script, "script", &["/tmp/operator-exfil.sh"]);
    let (status, _, _) = read_value(&s, "/v1/secrets/app/scripted", &s.admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");

    // The operator's own "admin connection": a PostgreSQL URL of their server.
    let evil = s
        .put(
            "/v1/secrets/op/evil-admin",
            &s.operator,
            json!({"value": "postgres://collector:pw@attacker.example:5432/x"}),
        )
        .await;
    assert_eq!(evil.0, StatusCode::CREATED, "{}", evil.1);
    let admin_conn = s
        .put(
            "/v1/secrets/db/admin",
            &s.admin,
            json!({"value": "postgres://admin:pw@db.internal:5432/app"}),
        )
        .await;
    assert_eq!(admin_conn.0, StatusCode::CREATED, "{}", admin_conn.1);
    let new_db = s
        .put(
            "/v1/secrets/db/app",
            &s.operator,
            json!({"type": "database", "value": "pw1", "role": "app", "admin_secret": "op/evil-admin"}),
        )
        .await;
    assert_admin_needed(&new_db, "admin_secret", &["op/evil-admin"]);
    assert!(
        new_db.1["message"].as_str().unwrap().contains("admin_secret, role"),
        "{}",
        new_db.1
    );
    let (status, _, _) = read_value(&s, "/v1/secrets/db/app", &s.admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
    let new_ca = s
        .put(
            "/v1/secrets/app/ca-signed",
            &s.operator,
            json!({"value": "v1", "ca_secret": "op/evil-admin"}),
        )
        .await;
    assert_admin_needed(&new_ca, "ca_secret", &["op/evil-admin"]);

    // An admin sets them.
    let db = s
        .put(
            "/v1/secrets/db/app",
            &s.admin,
            json!({"type": "database", "value": "pw1", "role": "app", "admin_secret": "db/admin"}),
        )
        .await;
    assert_eq!(db.0, StatusCode::CREATED, "{}", db.1);
    let scripted = s
        .put(
            "/v1/secrets/app/scripted",
            &s.admin,
            json!({"value": "v1", "script": "/bin/true"}),
        )
        .await;
    assert_eq!(scripted.0, StatusCode::CREATED, "{}", scripted.1);

    // The operator resends them unchanged (with a new value, or the value
    // alone, or other settings): allowed.
    let same_db = s
        .put(
            "/v1/secrets/db/app",
            &s.operator,
            json!({"value": "pw2", "role": "app", "admin_secret": "db/admin"}),
        )
        .await;
    assert_eq!(same_db.0, StatusCode::OK, "{}", same_db.1);
    let same_script = s
        .put(
            "/v1/secrets/app/scripted",
            &s.operator,
            json!({"value": "v2", "script": "/bin/true", "verify": ["nonempty"]}),
        )
        .await;
    assert_eq!(same_script.0, StatusCode::OK, "{}", same_script.1);
    let value_only = s
        .put("/v1/secrets/app/scripted", &s.operator, json!({"value": "v3"}))
        .await;
    assert_eq!(value_only.0, StatusCode::OK, "{}", value_only.1);

    // The operator changes them: refused, and nothing changes.
    let db_config = same_db.1["secret"]["config"].clone();
    assert_eq!(db_config["admin_secret"], "db/admin", "{}", same_db.1);
    assert_eq!(db_config["role"], "app", "{}", same_db.1);
    let db_before = stored(&s, "db/app").await;
    assert_eq!(db_before.0["value"], "pw2");
    for (body, setting) in [
        (json!({"value": "pw3", "admin_secret": "op/evil-admin"}), "admin_secret"),
        (json!({"value": "pw3", "role": "postgres"}), "role"),
        (
            json!({"value": "pw3", "role": "app", "admin_secret": "op/evil-admin"}),
            "admin_secret",
        ),
        (json!({"value": "pw3", "script": "/tmp/operator-exfil.sh"}), "script"),
    ] {
        let refused = s.put("/v1/secrets/db/app", &s.operator, body.clone()).await;
        assert_admin_needed(&refused, setting, &["op/evil-admin", "pw3", "/tmp/operator-exfil.sh"]);
    }
    let db_after = stored(&s, "db/app").await;
    assert_eq!(db_after.0["value"], "pw2", "the refused puts wrote no version");
    assert_eq!(db_after.0["version"], db_before.0["version"]);
    assert_eq!(db_after.1, db_before.1);
    let later = s.put("/v1/secrets/db/app", &s.operator, json!({"value": "pw4"})).await;
    assert_eq!(later.0, StatusCode::OK, "{}", later.1);
    assert_eq!(
        later.1["secret"]["config"], db_config,
        "the refused puts changed no setting"
    );

    let scripted_config = value_only.1["secret"]["config"].clone();
    assert_eq!(scripted_config["script"], "/bin/true", "{}", value_only.1);
    let scripted_before = stored(&s, "app/scripted").await;
    for body in [
        json!({"value": "v4", "script": "/tmp/operator-exfil.sh"}),
        json!({"script": "/tmp/operator-exfil.sh", "verify": ["nonempty"]}),
    ] {
        let refused = s.put("/v1/secrets/app/scripted", &s.operator, body).await;
        assert_admin_needed(&refused, "script", &["/tmp/operator-exfil.sh", "v4"]);
    }
    let scripted_after = stored(&s, "app/scripted").await;
    assert_eq!(scripted_after.0["value"], "v3");
    assert_eq!(scripted_after.0["version"], scripted_before.0["version"]);
    assert_eq!(scripted_after.1, scripted_before.1);
    let later = s
        .put("/v1/secrets/app/scripted", &s.operator, json!({"value": "v5"}))
        .await;
    assert_eq!(later.0, StatusCode::OK, "{}", later.1);
    assert_eq!(later.1["secret"]["config"], scripted_config);

    // An admin changes them.
    let changed = s
        .put("/v1/secrets/app/scripted", &s.admin, json!({"script": "/bin/echo"}))
        .await;
    assert_eq!(changed.0, StatusCode::OK, "{}", changed.1);
    assert_eq!(changed.1["secret"]["config"]["script"], "/bin/echo", "{}", changed.1);
    s.stop().await;
}
