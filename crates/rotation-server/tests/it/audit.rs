//! `GET /v1/audit`: filters and cursor pagination.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

/// GET with the response's `X-Next-Before-Seq` header.
async fn page(s: &TestServer, query: &str) -> (Vec<Value>, Option<i64>) {
    let response = s
        .client
        .get(format!("{}/v1/audit?{query}", s.base))
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let next = response
        .headers()
        .get("x-next-before-seq")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let events: Vec<Value> = response.json().await.unwrap();
    (events, next)
}

#[tokio::test]
async fn audit_filters_and_cursor_pages() {
    let s = TestServer::sqlite().await;
    for id in ["aud-one", "aud-two"] {
        let (status, body) = s.post("/v1/authorities", &s.operator, json!({"id": id})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, rotated) = s.post("/v1/authorities/aud-one/rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let rotation_id = rotated["rotation_id"].as_str().expect("rotation_id").to_owned();

    // Filters.
    let (by_target, _) = page(&s, "target=authority:aud-two&limit=1000").await;
    assert!(!by_target.is_empty());
    assert!(
        by_target.iter().all(|e| e["target"] == "authority:aud-two"),
        "{by_target:?}"
    );
    let (by_run, _) = page(&s, &format!("rotation_id={rotation_id}")).await;
    assert!(by_run.iter().any(|e| e["event"] == "rotation_completed"), "{by_run:?}");
    assert!(by_run.iter().all(|e| e["rotation_id"] == rotation_id.as_str()));
    let (by_event, _) = page(&s, "event=rotation_completed").await;
    assert_eq!(by_event.len(), 1, "{by_event:?}");
    let actor = by_event[0]["actor"].as_str().unwrap().to_owned();
    let (by_actor, _) = page(&s, &format!("actor={actor}&event=rotation_completed")).await;
    assert_eq!(by_actor.len(), 1);
    let (nobody, _) = page(&s, "actor=token:0000000000000000").await;
    assert!(nobody.is_empty());
    let later = (s.now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let later = later.replace('+', "%2B");
    let (future, next) = page(&s, &format!("since={later}")).await;
    assert!(future.is_empty() && next.is_none());
    let (past, _) = page(&s, &format!("until={later}&limit=1000")).await;
    let (all, none) = page(&s, "limit=1000").await;
    assert_eq!(past.len(), all.len());
    assert!(none.is_none(), "a page that is not full is the last");

    // Cursor pages of 2 walk every event once, newest first, and stop.
    let mut walked = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let query = match cursor {
            Some(c) => format!("limit=2&before_seq={c}"),
            None => "limit=2".to_owned(),
        };
        let (events, next) = page(&s, &query).await;
        assert!(events.len() <= 2);
        walked.extend(events.iter().map(|e| e["seq"].as_i64().unwrap()));
        match next {
            Some(n) => {
                assert_eq!(Some(n), events.last().and_then(|e| e["seq"].as_i64()));
                cursor = Some(n);
            }
            None => break,
        }
        assert!(walked.len() <= all.len(), "pagination does not end");
    }
    let expected: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(walked, expected);

    // Bad parameters.
    for bad in [
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "rotation_id=not-a-uuid",
        "limit=0",
        "limit=1001",
        "before_seq=0",
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
    ] {
        assert_error(
            &s.get(&format!("/v1/audit?{bad}"), &s.viewer).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
    }
    // Malformed or unknown parameters too (issue 7: invalid input is 422).
    for bad in ["before_seq=abc", "limit=-1", "evnt=rotation_completed"] {
        assert_error(
            &s.get(&format!("/v1/audit?{bad}"), &s.viewer).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------- transparency log

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rotation_core::tlog::{self, Hash};
use rotation_crypto::RingCrypto;

fn unb64(v: &Value) -> Hash {
    STANDARD.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(unb64).collect()
}

#[tokio::test]
async fn checkpoints_and_proofs_over_a_real_socket() {
    let s = TestServer::sqlite().await;
    let c = RingCrypto::new();
    let (status, _) = s.post("/v1/authorities", &s.operator, json!({"id": "tl-one"})).await;
    assert_eq!(status, StatusCode::CREATED);
    // Any role reads the checkpoint; it is signed for the current log.
    let (status, first) = s.get("/v1/audit/checkpoint", &s.viewer).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let size1 = first["size"].as_u64().unwrap();
    let note = first["checkpoint"].as_str().unwrap();
    assert!(note.contains(&format!("\n{size1}\n")), "{note}");
    let vkey = rotation_core::tlog::note::VerifierKey::parse(&c, first["verifier_key"].as_str().unwrap()).unwrap();
    let opened = rotation_core::tlog::note::open_checkpoint(&c, &vkey, note).unwrap();
    assert_eq!(opened.size, size1);

    // ed25519-dalek checks the note's signature with the served key.
    let (body, sig) = note.split_once("\n\n").unwrap();
    let blob = STANDARD.decode(sig.trim_end().rsplit_once(' ').unwrap().1).unwrap();
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&vkey.public_key).unwrap();
    dalek
        .verify_strict(
            format!("{body}\n").as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&blob[4..].try_into().unwrap()),
        )
        .unwrap();

    // text/plain: exactly the note.
    let text = s
        .client
        .get(format!("{}/v1/audit/checkpoint", s.base))
        .bearer_auth(&s.viewer)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::OK);
    assert_eq!(text.text().await.unwrap(), note);

    // More work; the next checkpoint extends the first.
    let (status, _) = s.post("/v1/authorities", &s.operator, json!({"id": "tl-two"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, second) = s.get("/v1/audit/checkpoint", &s.viewer).await;
    let size2 = second["size"].as_u64().unwrap();
    assert!(size2 > size1);
    let root1 = unb64(&first["root_hash"]);
    let root2 = unb64(&second["root_hash"]);
    let (status, proof) = s
        .get(&format!("/v1/audit/consistency?from={size1}&to={size2}"), &s.viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert!(tlog::verify_consistency(
        &c,
        size1,
        size2,
        &root1,
        &root2,
        &hashes(&proof["proof"])
    ));
    for index in 0..size2 {
        let (status, p) = s
            .get(&format!("/v1/audit/proof?index={index}&size={size2}"), &s.viewer)
            .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert!(tlog::verify_inclusion(
            &c,
            index,
            size2,
            &unb64(&p["leaf_hash"]),
            &hashes(&p["proof"]),
            &root2
        ));
    }
    // The leaf hash of entry 0 is the hash of the first event's canonical bytes.
    let (_, events) = s.get("/v1/audit?limit=1000", &s.viewer).await;
    let oldest: rotation_core::audit::AuditEvent =
        serde_json::from_value(events.as_array().unwrap().last().unwrap().clone()).unwrap();
    let (_, p0) = s.get(&format!("/v1/audit/proof?index=0&size={size2}"), &s.viewer).await;
    assert_eq!(
        unb64(&p0["leaf_hash"]),
        tlog::leaf_hash(&c, &oldest.canonical_bytes().unwrap())
    );

    // Out of range or malformed: invalid_input.
    for path in [
        format!("/v1/audit/proof?index={size2}&size={size2}"),
        format!("/v1/audit/proof?index=0&size={}", size2 + 100),
        "/v1/audit/proof?index=x&size=1".to_owned(),
        "/v1/audit/consistency?from=0&to=1".to_owned(),
        format!("/v1/audit/consistency?from=2&to={}", size2 + 100),
    ] {
        let (status, body) = s.get(&path, &s.viewer).await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
        assert_eq!(body["reason"], "invalid_input", "{path}: {body}");
    }
    // The verify verdict covers the tree.
    let (_, verdict) = s.get("/v1/audit/verify", &s.viewer).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    // Without a token: unauthorized.
    let anonymous = s
        .client
        .get(format!("{}/v1/audit/checkpoint", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_worker_signs_a_checkpoint_when_the_log_grows() {
    let s = TestServer::sqlite_with(crate::support::Options {
        scheduler_interval: Some(std::time::Duration::from_millis(50)),
        ..Default::default()
    })
    .await;
    let (status, _) = s.post("/v1/authorities", &s.operator, json!({"id": "tl-worker"})).await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // `verify` never signs: what it finds stored was signed by the worker.
    let (_, verdict) = s.get("/v1/audit/verify", &s.viewer).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert!(verdict["tree_size"].as_u64().unwrap() >= 2, "{verdict}");
    assert_eq!(verdict["checkpoints"]["stored_size"], verdict["tree_size"], "{verdict}");
}
