//! Issue 7, over the socket: a JWKS fetched before a rotation and records
//! signed during the grace period; the old key leaves the JWKS once
//! revoked; revocation rights; `concurrent_rotation`; policy deletion.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

/// Creates the authority `id` with the extra fields of `extra`.
async fn create_authority(s: &TestServer, id: &str, extra: Value) -> Value {
    let mut body = json!({"id": id, "name": "JWKS test"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = s.post("/v1/authorities", &s.operator, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// GET of the JWKS without a token: the `max-age` of its `Cache-Control`
/// and the key set.
async fn fetch_jwks(s: &TestServer, id: &str) -> (i64, Value) {
    let response = s
        .client
        .get(format!("{}/v1/authorities/{id}/jwks.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response.headers()["cache-control"].to_str().unwrap().to_owned();
    let max_age = cache
        .strip_prefix("public, max-age=")
        .unwrap_or_else(|| panic!("unexpected Cache-Control {cache:?}"))
        .parse()
        .unwrap();
    (max_age, response.json().await.unwrap())
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `record`'s signature verifies with the key of `jwks` its
/// `key_id` names, over `"rotation-record-v1\n" || JCS(body)`
/// (docs/FORMATS.md); `false` when the JWKS lacks that key.
fn verifies(record: &Value, jwks: &Value) -> bool {
    let kid = record["key_id"].as_str().unwrap();
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid) else {
        return false;
    };
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(record["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut message = b"rotation-record-v1\n".to_vec();
    message.extend(serde_jcs::to_vec(&record["body"]).unwrap());
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(&message, &Signature::from_bytes(&sig))
        .is_ok()
}

#[track_caller]
fn assert_all_verify(records: &Value, jwks: &Value, what: &str) {
    let records = records.as_array().unwrap();
    assert!(!records.is_empty(), "{what}: no records");
    for r in records {
        assert!(verifies(r, jwks), "{what}: record {r} does not verify with {jwks}");
    }
}

async fn issue_chain(s: &TestServer, authority: &str, agent: &str) -> Value {
    let (status, records) = s
        .post(
            "/v1/chains",
            &s.operator,
            json!({"agent_id": agent, "authority_id": authority, "capabilities": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{records}");
    records
}

async fn records_of(s: &TestServer, authority: &str) -> Value {
    let (status, records) = s.get(&format!("/v1/chains?authority={authority}"), &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{records}");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_fetched_before_a_rotation_and_records_of_the_grace_period() {
    let s = TestServer::sqlite().await;
    let id = "org-jwks";
    let created = create_authority(&s, id, json!({"grace_period_hours": 2})).await;
    let old_kid = created["current_key_id"].as_str().unwrap().to_owned();
    issue_chain(&s, id, "agent-1").await;
    let records_before = records_of(&s, id).await;
    let (max_age, jwks_before) = fetch_jwks(&s, id).await;
    assert_eq!(kids(&jwks_before), vec![old_kid.clone()]);
    assert_eq!(max_age, 300, "no grace key: the longest cache lifetime");
    assert_all_verify(&records_before, &jwks_before, "before the rotation");

    let (status, rotated) = s
        .post(&format!("/v1/authorities/{id}/rotate"), &s.operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["old_key_id"], old_kid.as_str());
    let new_kid = rotated["new_key_id"].as_str().unwrap().to_owned();
    assert!(rotated["chains_updated"].as_u64().unwrap() >= 1, "{rotated}");

    // (a) Records fetched before the rotation (signed by the old key) still
    // verify during the grace period: with the cached pre-rotation JWKS and
    // with a freshly fetched one, which still lists the old key.
    s.clock.advance(TimeDelta::minutes(30));
    let (max_age, jwks_during) = fetch_jwks(&s, id).await;
    assert_all_verify(&records_before, &jwks_before, "pre-rotation records, cached JWKS");
    assert_all_verify(&records_before, &jwks_during, "pre-rotation records, JWKS in grace");

    // (b) During the grace period the JWKS lists both keys; the records
    // re-signed at the rotation and those issued in the grace period carry
    // the new key and verify with it.
    let mut listed = kids(&jwks_during);
    listed.sort();
    let mut expected = vec![old_kid.clone(), new_kid.clone()];
    expected.sort();
    assert_eq!(listed, expected, "both keys during the grace period");
    issue_chain(&s, id, "agent-2").await;
    let records_during = records_of(&s, id).await;
    assert!(
        records_during
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["key_id"] == new_kid.as_str()),
        "every record is signed by the new key: {records_during}"
    );
    assert_all_verify(&records_during, &jwks_during, "grace-period records, JWKS in grace");
    let (status, verdict) = s.get("/v1/chains/verify", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");

    // (c) The cache lifetime never outlasts the remaining grace period.
    let grace_end: chrono::DateTime<chrono::Utc> = serde_json::from_value(rotated["grace_period_end"].clone()).unwrap();
    let remaining = |s: &TestServer| (grace_end - s.now()).num_seconds();
    assert!(max_age <= remaining(&s), "max-age {max_age} > {} s left", remaining(&s));
    for before_end in [TimeDelta::minutes(4), TimeDelta::seconds(90), TimeDelta::seconds(1)] {
        s.clock.set(grace_end - before_end);
        let (max_age, jwks) = fetch_jwks(&s, id).await;
        assert_eq!(max_age, before_end.num_seconds(), "{before_end} before the grace end");
        assert!(max_age <= remaining(&s));
        assert!(kids(&jwks).contains(&old_kid), "still in grace");
    }
    s.clock.set(grace_end);
    let (max_age, jwks) = fetch_jwks(&s, id).await;
    assert_eq!(kids(&jwks), vec![new_kid.clone()], "the grace period is over");
    assert_eq!(max_age, 300);
    s.stop().await;
}

/// With `prepublish_hours`, a JWKS fetched before the rotation already has
/// the next key: it verifies every record signed during the grace period
/// (re-signed at the rotation or issued after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepublished_jwks_fetched_before_a_rotation_verifies_grace_period_records() {
    let s = TestServer::sqlite().await;
    let id = "org-prepub";
    create_authority(
        &s,
        id,
        json!({"grace_period_hours": 1, "rotation_period_days": 2, "prepublish_hours": 24}),
    )
    .await;
    issue_chain(&s, id, "agent-1").await;
    s.clock.advance(TimeDelta::hours(25));
    let (status, body) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, jwks_before) = fetch_jwks(&s, id).await;
    assert_eq!(kids(&jwks_before).len(), 2, "current and prepublished: {jwks_before}");

    let (status, rotated) = s
        .post(&format!("/v1/authorities/{id}/rotate"), &s.operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_kid = rotated["new_key_id"].as_str().unwrap();
    assert!(kids(&jwks_before).iter().any(|k| k == new_kid), "{rotated}");
    s.clock.advance(TimeDelta::minutes(10));
    issue_chain(&s, id, "agent-2").await;
    let records = records_of(&s, id).await;
    assert_eq!(records.as_array().unwrap().len(), 4, "{records}");
    assert_all_verify(&records, &jwks_before, "grace-period records, pre-rotation JWKS");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_rights_and_the_revoked_key_leaves_the_jwks() {
    let s = TestServer::sqlite().await;
    let id = "org-revoke";
    create_authority(&s, id, json!({"grace_period_hours": 1})).await;
    let revoke = |key: &str| format!("/v1/authorities/{id}/keys/{key}/revoke");

    // In the grace period: an operator's revocation is refused, a viewer's
    // is forbidden; an admin's forced revocation (with a reason) works and
    // the key leaves the JWKS at once.
    let (status, rotated) = s
        .post(&format!("/v1/authorities/{id}/rotate"), &s.operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let first = rotated["old_key_id"].as_str().unwrap().to_owned();
    assert!(kids(&fetch_jwks(&s, id).await.1).contains(&first));
    assert_error(
        &s.post(&revoke(&first), &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "grace_period_not_expired",
    );
    assert_error(
        &s.post(&revoke(&first), &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post(&revoke(&first), &s.viewer, json!({"force": true, "reason": "leak"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post(&revoke(&first), &s.operator, json!({"force": true, "reason": "leak"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post(&revoke(&first), &s.admin, json!({"force": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert!(
        kids(&fetch_jwks(&s, id).await.1).contains(&first),
        "refused revocations change nothing"
    );
    let (status, forced) = s
        .post(&revoke(&first), &s.admin, json!({"force": true, "reason": "leaked"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(forced["state"], "revoked", "{forced}");
    assert_eq!(forced["revocation_reason"], "leaked", "{forced}");
    let (max_age, jwks) = fetch_jwks(&s, id).await;
    assert!(!kids(&jwks).contains(&first), "force-revoked key still listed: {jwks}");
    assert_eq!(kids(&jwks), vec![rotated["new_key_id"].as_str().unwrap().to_owned()]);
    assert_eq!(max_age, 300, "no grace key is left");

    // After the grace period: the operator revokes, and the next JWKS
    // fetch no longer lists the key.
    let (status, rotated) = s
        .post(&format!("/v1/authorities/{id}/rotate"), &s.operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["old_key_id"].as_str().unwrap().to_owned();
    s.clock.advance(TimeDelta::minutes(59));
    assert!(kids(&fetch_jwks(&s, id).await.1).contains(&second));
    assert_error(
        &s.post(&revoke(&second), &s.operator, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "grace_period_not_expired",
    );
    s.clock.advance(TimeDelta::minutes(2));
    assert_error(
        &s.post(&revoke(&second), &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, revoked) = s.post(&revoke(&second), &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    let (_, jwks) = fetch_jwks(&s, id).await;
    assert!(!kids(&jwks).contains(&second), "revoked key still listed: {jwks}");
    assert_eq!(kids(&jwks), vec![rotated["new_key_id"].as_str().unwrap().to_owned()]);
    let (_, shown) = s.get(&format!("/v1/authorities/{id}"), &s.viewer).await;
    let states: Vec<(&str, &str)> = shown["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&(first.as_str(), "revoked")), "{states:?}");
    assert!(states.contains(&(second.as_str(), "revoked")), "{states:?}");
    s.stop().await;
}

/// Two rotations of one secret at once (its script sleeps in `create`):
/// one wins, the other is 409 `concurrent_rotation` naming the winner's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_secret_one_wins_one_is_409() {
    use std::os::unix::fs::PermissionsExt as _;

    let s = TestServer::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow-rotate.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$1\" = create ]; then sleep 2; fi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    let (status, put) = s
        .put(
            "/v1/secrets/app/slow",
            &s.admin,
            json!({"value": "v1", "script": script}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{put}");

    let rotate = || s.post("/v1/secrets/app/slow:rotate", &s.operator, json!({}));
    let (a, b) = tokio::join!(rotate(), rotate());
    let (won, lost) = match (a.0, b.0) {
        (StatusCode::OK, StatusCode::CONFLICT) => (a, b),
        (StatusCode::CONFLICT, StatusCode::OK) => (b, a),
        _ => panic!("want one 200 and one 409: {} {}; {} {}", a.0, a.1, b.0, b.1),
    };
    assert_error(&lost, StatusCode::CONFLICT, "concurrent_rotation");
    let winner = won.1["rotation_id"].as_str().unwrap();
    assert_eq!(
        lost.1["rotation_id"], winner,
        "the 409 names the run in progress: {}",
        lost.1
    );
    assert_eq!(won.1["new_version"], 2, "{}", won.1);

    // Once the run is over, the next rotation goes through.
    let (status, again) = s.post("/v1/secrets/app/slow:rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["new_version"], 3, "{again}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_policy_needs_admin_and_removes_it() {
    let s = TestServer::sqlite().await;
    let path = "/v1/policies/to-remove";
    let (status, set) = s
        .put(path, &s.admin, json!({"trigger": {"max_uses": 2}, "migrate": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    for token in [&s.operator, &s.viewer] {
        assert_error(
            &s.call(Method::DELETE, path, Some(token), None).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    assert_eq!(s.get(path, &s.viewer).await.0, StatusCode::OK, "still there");
    let (status, removed) = s.call(Method::DELETE, path, Some(&s.admin), None).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::NO_CONTENT,
        "{status} {removed}"
    );
    assert_error(&s.get(path, &s.viewer).await, StatusCode::NOT_FOUND, "not_found");
    let (_, list) = s.get("/v1/policies", &s.viewer).await;
    assert!(
        list.as_array().unwrap().iter().all(|p| p["name"] != "to-remove"),
        "{list}"
    );
    assert_error(
        &s.call(Method::DELETE, path, Some(&s.admin), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    s.stop().await;
}
