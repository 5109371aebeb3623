//! `prepublish_hours`: the next key is in the JWKS before it signs.

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

async fn kids(s: &TestServer, id: &str) -> Vec<String> {
    let (status, jwks) = s
        .call(Method::GET, &format!("/v1/authorities/{id}/jwks.json"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{jwks}");
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_prepublished_key_is_listed_ahead_and_then_promoted() {
    let s = TestServer::sqlite().await;
    let (status, created) = s
        .post(
            "/v1/authorities",
            &s.operator,
            json!({"id": "pre-pub", "rotation_period_days": 2, "prepublish_hours": 24}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["prepublish_hours"], 24, "{created}");
    let (_, shown) = s.get("/v1/authorities/pre-pub", &s.viewer).await;
    assert_eq!(shown["prepublish_hours"], 24, "{shown}");
    assert_eq!(kids(&s, "pre-pub").await.len(), 1);

    // Outside the window: nothing yet.
    s.clock.advance(TimeDelta::hours(12));
    let (status, body) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kids(&s, "pre-pub").await.len(), 1);

    // Inside the 24 hours before the rotation: current + next.
    s.clock.advance(TimeDelta::hours(13));
    let (status, body) = s.post("/v1/schedules/run-due", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cached = kids(&s, "pre-pub").await;
    assert_eq!(cached.len(), 2, "{cached:?}");
    let (_, shown) = s.get("/v1/authorities/pre-pub", &s.viewer).await;
    let pending: Vec<&Value> = shown["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{shown}");
    let next = pending[0]["key_id"].as_str().unwrap().to_owned();
    assert!(cached.contains(&next));

    // The rotation promotes exactly that key, known to the cached key set.
    let (status, rotated) = s.post("/v1/authorities/pre-pub/rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["new_key_id"], next.as_str(), "{rotated}");

    // Out of range and wrongly typed values are refused; nothing is created.
    assert_error(
        &s.post(
            "/v1/authorities",
            &s.operator,
            json!({"id": "pre-bad", "prepublish_hours": 8761}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.post(
            "/v1/authorities",
            &s.operator,
            json!({"id": "pre-bad", "prepublish_hours": -1}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.get("/v1/authorities/pre-bad", &s.viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    s.stop().await;
}
