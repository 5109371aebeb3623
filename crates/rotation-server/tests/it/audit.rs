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
