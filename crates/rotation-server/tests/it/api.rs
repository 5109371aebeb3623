//! Every `/v1` endpoint's happy path and its main errors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

async fn create_authority(s: &TestServer, id: &str, grace_hours: u32) -> Value {
    let (status, body) = s
        .post(
            "/v1/authorities",
            &s.operator,
            json!({"id": id, "name": "Acme", "grace_period_hours": grace_hours}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_create_show_rotate_schedule_status_and_revoke() {
    let s = TestServer::sqlite().await;
    let created = create_authority(&s, "org-acme", 1).await;
    assert_eq!(created["id"], "org-acme");
    assert_eq!(created["keys"].as_array().unwrap().len(), 1);
    assert!(created["keys"][0].get("private_key").is_none());
    let first_key = created["current_key_id"].as_str().unwrap().to_owned();

    assert_error(
        &s.post("/v1/authorities", &s.operator, json!({"id": "org-acme"})).await,
        StatusCode::CONFLICT,
        "already_exists",
    );
    assert_error(
        &s.post("/v1/authorities", &s.operator, json!({"id": "-bad id"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post("/v1/authorities", &s.operator, json!({"name": "no id"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );

    let (status, list) = s.get("/v1/authorities", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, shown) = s.get("/v1/authorities/org-acme", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["current_key_id"], first_key.as_str());
    assert_error(
        &s.get("/v1/authorities/org-nobody", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Rotate with a grace override (no body at all also works: see below).
    let (status, rotated) = s
        .post(
            "/v1/authorities/org-acme/rotate",
            &s.operator,
            json!({"grace_period_hours": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["old_key_id"], first_key.as_str());
    let grace_end: chrono::DateTime<chrono::Utc> = serde_json::from_value(rotated["grace_period_end"].clone()).unwrap();
    assert_eq!(grace_end, s.now() + TimeDelta::hours(2));
    assert_error(
        &s.post("/v1/authorities/org-nobody/rotate", &s.operator, json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, st) = s.get("/v1/authorities/org-acme/status", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["status"], "grace_period");
    assert!(st["grace_period_keys"].get(first_key.as_str()).is_some(), "{st}");

    // Revocation: too early, not a grace key, then after the grace period.
    let revoke = |key: &str| format!("/v1/authorities/org-acme/keys/{key}/revoke");
    assert_error(
        &s.post(&revoke(&first_key), &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "grace_period_not_expired",
    );
    let current = rotated["new_key_id"].as_str().unwrap().to_owned();
    assert_error(
        &s.post(&revoke(&current), &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "key_not_in_grace_period",
    );
    s.clock.advance(TimeDelta::hours(3));
    let (status, revoked) = s.post(&revoke(&first_key), &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");

    // Forced revocation: admin only, with a reason.
    let response = s
        .client
        .post(format!("{}/v1/authorities/org-acme/rotate", s.base))
        .bearer_auth(&s.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a rotation needs no body");
    let second: Value = response.json().await.unwrap();
    let old = second["old_key_id"].as_str().unwrap();
    assert_error(
        &s.post(&revoke(old), &s.operator, json!({"force": true, "reason": "leak"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post(&revoke(old), &s.admin, json!({"force": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, forced) = s
        .post(&revoke(old), &s.admin, json!({"force": true, "reason": "leak"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(forced["revocation_reason"], "leak");

    // Schedules: in the past refused, in the future accepted.
    let past = (s.now() - TimeDelta::hours(1)).to_rfc3339();
    assert_error(
        &s.post("/v1/authorities/org-acme/schedule", &s.operator, json!({"at": past}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_schedule_time",
    );
    assert_error(
        &s.post(
            "/v1/authorities/org-acme/schedule",
            &s.operator,
            json!({"at": "tomorrow"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let future = (s.now() + TimeDelta::hours(1)).to_rfc3339();
    let (status, scheduled) = s
        .post("/v1/authorities/org-acme/schedule", &s.operator, json!({"at": future}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scheduled}");
    let (_, st) = s.get("/v1/authorities/org-acme/status", &s.viewer).await;
    assert!(st["next_scheduled"].is_string(), "{st}");

    // The audit actor is the token.
    let (_, events) = s.get("/v1/audit?limit=50", &s.viewer).await;
    let forced_event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "key_force_revoked")
        .expect("a key_force_revoked event");
    assert!(
        forced_event["actor"].as_str().unwrap().starts_with("token:"),
        "{forced_event}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_issue_verify_list_and_the_jwks_verifies_their_signatures() {
    let s = TestServer::sqlite().await;
    create_authority(&s, "org-acme", 1).await;
    let (status, records) = s
        .post(
            "/v1/chains",
            &s.operator,
            json!({"agent_id": "agent-1", "authority_id": "org-acme", "capabilities": ["read", "write"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{records}");
    assert_eq!(records.as_array().unwrap().len(), 3, "genesis and two attestations");
    assert_error(
        &s.post(
            "/v1/chains",
            &s.operator,
            json!({"agent_id": "agent-2", "authority_id": "org-nobody", "capabilities": ["read"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post(
            "/v1/chains",
            &s.viewer,
            json!({"agent_id": "a", "authority_id": "org-acme"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let (status, verdict) = s.get("/v1/chains/agent-1/verify", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");
    let (status, all) = s.get("/v1/chains/verify", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["valid"], true);
    assert_eq!(all["chains"].as_array().unwrap().len(), 1);
    let (status, listed) = s.get("/v1/chains?authority=org-acme", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_error(
        &s.get("/v1/chains?authority=org-nobody", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // The JWKS needs no token, and its key verifies every record.
    let jwks_before = fetch_jwks(&s).await;
    assert_eq!(jwks_before.1["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks_before.0, "public, max-age=300");
    verify_all(&listed, &jwks_before.1);

    // After a rotation (grace 1 h) both keys are listed, the records are
    // re-signed by the new key, and the cache lifetime stops at the grace end.
    let (status, _) = s.post("/v1/authorities/org-acme/rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, resigned) = s.get("/v1/chains?authority=org-acme", &s.viewer).await;
    let (cache, jwks) = fetch_jwks(&s).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(cache, "public, max-age=300");
    verify_all(&resigned, &jwks);
    s.clock.advance(TimeDelta::minutes(58));
    assert_eq!(fetch_jwks(&s).await.0, "public, max-age=120");
    s.clock.advance(TimeDelta::minutes(3));
    let (cache, jwks) = fetch_jwks(&s).await;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        1,
        "past grace, the old key is gone"
    );
    assert_eq!(cache, "public, max-age=300");

    let response = s
        .client
        .get(format!("{}/v1/authorities/org-nobody/jwks.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn fetch_jwks(s: &TestServer) -> (String, Value) {
    let response = s
        .client
        .get(format!("{}/v1/authorities/org-acme/jwks.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response.headers()["cache-control"].to_str().unwrap().to_owned();
    (cache, response.json().await.unwrap())
}

/// Checks each record's signature with the JWKS key named by its `key_id`,
/// over `"rotation-record-v1\n" || JCS(body)` (docs/FORMATS.md).
fn verify_all(records: &Value, jwks: &Value) {
    for record in records.as_array().unwrap() {
        let kid = record["key_id"].as_str().unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("key {kid} not in the JWKS"));
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        let x: [u8; 32] = URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = VerifyingKey::from_bytes(&x).unwrap();
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(record["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let mut message = b"rotation-record-v1\n".to_vec();
        message.extend(serde_jcs::to_vec(&record["body"]).unwrap());
        key.verify(&message, &Signature::from_bytes(&sig))
            .expect("the record's signature verifies with the JWKS key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyrings_values_rotation_migration_and_report() {
    let s = TestServer::sqlite().await;
    let (status, keyring) = s.post("/v1/keyrings", &s.operator, json!({"name": "payments"})).await;
    assert_eq!(status, StatusCode::CREATED, "{keyring}");
    assert_eq!(keyring["current_version"], 1);
    assert!(keyring["versions"][0].get("wrapped").is_none());
    assert_error(
        &s.post("/v1/keyrings", &s.operator, json!({"name": "payments"})).await,
        StatusCode::CONFLICT,
        "already_exists",
    );
    let (status, list) = s.get("/v1/keyrings", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    for i in 0..5 {
        let (status, v) = s
            .post(
                "/v1/keyrings/payments/values",
                &s.operator,
                json!({"id": format!("card-{i}"), "value": format!("4111-{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert!(v["sealed"].as_str().unwrap().starts_with("rot:v1:"));
        assert!(!v.to_string().contains("4111"), "no plaintext in the answer");
    }
    let (status, bin) = s
        .post(
            "/v1/keyrings/payments/values",
            &s.operator,
            json!({"id": "blob", "value_base64": "AP8="}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bin}");
    assert_error(
        &s.post("/v1/keyrings/payments/values", &s.operator, json!({"id": "x"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post(
            "/v1/keyrings/nothing/values",
            &s.operator,
            json!({"id": "x", "value": "y"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Decrypt: admin only, audited as secret_read by the admin's token.
    let decrypt = "/v1/keyrings/payments/values/card-3/decrypt";
    assert_error(
        &s.post(decrypt, &s.operator, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, plain) = s.post(decrypt, &s.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plain, json!({"id": "card-3", "value": "4111-3"}));
    let (_, plain) = s
        .post("/v1/keyrings/payments/values/blob/decrypt", &s.admin, json!({}))
        .await;
    assert_eq!(plain["value_base64"], "AP8=");
    assert_error(
        &s.post("/v1/keyrings/payments/values/nothing/decrypt", &s.admin, json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, events) = s.get("/v1/audit?limit=5", &s.viewer).await;
    let read = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "secret_read")
        .expect("a secret_read event");
    let tokens = s.tokens.list().await.unwrap();
    let admin_id = &tokens
        .iter()
        .find(|t| t.role == rotation_server::Role::Admin)
        .unwrap()
        .id;
    assert_eq!(read["actor"], format!("token:{admin_id}"));

    // Rotate (dry run first), migrate, report.
    let (status, dry) = s
        .post("/v1/keyrings/payments/rotate", &s.operator, json!({"dry_run": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let (status, rotated) = s.post("/v1/keyrings/payments/rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["new_version"], 2);
    assert_eq!(rotated["values_needing_migration"], 6);
    assert_error(
        &s.post("/v1/keyrings/payments/rotate", &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, migrated) = s
        .post("/v1/keyrings/payments/migrate", &s.operator, json!({"batch_size": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{migrated}");
    assert_eq!(migrated["migrated"], 6);
    assert_eq!(migrated["failed"], 0);
    assert_error(
        &s.post("/v1/keyrings/payments/migrate", &s.operator, json!({"batch_size": 0}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, report) = s.get("/v1/keyrings/payments/report", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (status, info) = s.get("/v1/keyrings/payments", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["versions"].as_array().unwrap().len(), 2);
    let (_, plain) = s.post(decrypt, &s.admin, json!({})).await;
    assert_eq!(plain["value"], "4111-3", "still decrypts after migration");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_schedules_run_due_audit_and_report() {
    let s = TestServer::sqlite().await;
    s.post("/v1/keyrings", &s.operator, json!({"name": "tokens"})).await;
    let policy = json!({"trigger": {"max_uses": 2}, "migrate": true});
    assert_error(
        &s.call(
            Method::PUT,
            "/v1/policies/by-use",
            Some(&s.operator),
            Some(policy.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, set) = s
        .call(Method::PUT, "/v1/policies/by-use", Some(&s.admin), Some(policy))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["name"], "by-use");
    assert_error(
        &s.call(
            Method::PUT,
            "/v1/policies/bad",
            Some(&s.admin),
            Some(json!({"trigger": {"cron": {"expr": "not cron", "timezone": "UTC"}}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_policy",
    );
    assert_error(
        &s.call(
            Method::PUT,
            "/v1/policies/bad",
            Some(&s.admin),
            Some(json!({"trigger": "soon"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, list) = s.get("/v1/policies", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, shown) = s.get("/v1/policies/by-use", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["trigger"], json!({"max_uses": 2}));
    assert_error(
        &s.get("/v1/policies/none", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, schedule) = s
        .post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "keyring:tokens", "policy": "by-use"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    assert_error(
        &s.post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "keyring:tokens", "policy": "none"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post(
            "/v1/schedules",
            &s.operator,
            json!({"target": "nonsense", "policy": "by-use"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, schedules) = s.get("/v1/schedules", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schedules.as_array().unwrap().len(), 1);

    // Not yet used: the policy does not fire. After three uses it does.
    let (status, outcomes) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{outcomes}");
    assert!(
        outcomes.as_array().unwrap().iter().all(|o| o["result"].is_null()),
        "{outcomes}"
    );
    for i in 0..3 {
        s.post(
            "/v1/keyrings/tokens/values",
            &s.operator,
            json!({"id": format!("t{i}"), "value": "x"}),
        )
        .await;
    }
    s.clock.advance(TimeDelta::hours(1));
    let (status, outcomes) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{outcomes}");
    assert!(
        outcomes
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["result"]["new_version"] == 2),
        "{outcomes}"
    );
    assert_error(
        &s.post("/v1/schedules/run-due", &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    assert_error(
        &s.call(Method::DELETE, "/v1/policies/by-use", Some(&s.operator), None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Audit and report.
    let (status, events) = s.get("/v1/audit?limit=3", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.as_array().unwrap().len(), 3);
    assert_error(
        &s.get("/v1/audit?limit=0", &s.viewer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let (status, verified) = s.get("/v1/audit/verify", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["valid"], true, "{verified}");
    let (status, report) = s.get("/v1/report", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(report["items"].is_array(), "{report}");
    s.stop().await;
}
