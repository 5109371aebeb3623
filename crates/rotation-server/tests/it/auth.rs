//! Tokens and roles: 401 for missing, malformed, wrong, unknown, revoked
//! and expired tokens (one answer for all), 403 for a role too low.

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use rotation_server::Role;
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::support::{TestServer, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_unknown_revoked_and_expired_tokens_are_401() {
    let s = TestServer::sqlite().await;
    let no_token = s.call(Method::GET, "/v1/authorities", None, None).await;
    assert_error(&no_token, StatusCode::UNAUTHORIZED, "unauthorized");
    let response = s.client.get(format!("{}/v1/authorities", s.base)).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Right id, wrong secret; unknown id; not a token at all.
    let (id_part, _) = s.viewer.rsplit_once('_').unwrap();
    let wrong_secret = format!("{id_part}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let unknown = "rot_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let mut messages = Vec::new();
    for token in [wrong_secret.as_str(), unknown, "hello", ""] {
        let got = s.get("/v1/authorities", token).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
        messages.push(got.1["message"].clone());
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "one message for every failure"
    );
    let basic = s
        .client
        .get(format!("{}/v1/authorities", s.base))
        .basic_auth("admin", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    // Revoked: stops working at once.
    let (info, token) = s.tokens.create(Role::Viewer, None, None).await.unwrap();
    let token = token.expose_secret().to_owned();
    assert_eq!(s.get("/v1/authorities", &token).await.0, StatusCode::OK);
    let (status, revoked) = s
        .call(Method::DELETE, &format!("/v1/tokens/{}", info.id), Some(&s.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    assert_error(
        &s.get("/v1/authorities", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Expired.
    let (_, token) = s.tokens.create(Role::Viewer, Some(1), None).await.unwrap();
    let token = token.expose_secret().to_owned();
    assert_eq!(s.get("/v1/authorities", &token).await.0, StatusCode::OK);
    s.clock.advance(TimeDelta::days(1));
    assert_error(
        &s.get("/v1/authorities", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_viewer_cannot_rotate_operator_cannot_administer() {
    let s = TestServer::sqlite().await;
    s.post("/v1/authorities", &s.operator, json!({"id": "org-acme"})).await;
    assert_error(
        &s.post("/v1/authorities/org-acme/rotate", &s.viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post("/v1/authorities", &s.viewer, json!({"id": "org-other"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let at = (s.now() + TimeDelta::hours(1)).to_rfc3339();
    assert_error(
        &s.post("/v1/authorities/org-acme/schedule", &s.viewer, json!({"at": at}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    for (status, token) in [
        (StatusCode::FORBIDDEN, &s.viewer),
        (StatusCode::FORBIDDEN, &s.operator),
        (StatusCode::OK, &s.admin),
    ] {
        assert_eq!(s.get("/v1/tokens", token).await.0, status);
    }
    // The viewer still reads.
    for path in [
        "/v1/authorities",
        "/v1/authorities/org-acme",
        "/v1/authorities/org-acme/status",
        "/v1/audit",
        "/v1/report",
        "/v1/schedules",
        "/v1/policies",
        "/v1/keyrings",
        "/v1/chains",
    ] {
        assert_eq!(s.get(path, &s.viewer).await.0, StatusCode::OK, "{path}");
    }

    // Admins create tokens over the API; the secret is shown once, never listed.
    let (status, created) = s
        .post(
            "/v1/tokens",
            &s.admin,
            json!({"role": "operator", "expires_in_days": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("rot_"));
    assert_eq!(
        s.post("/v1/authorities/org-acme/rotate", &token, json!({})).await.0,
        StatusCode::OK
    );
    let (_, list) = s.get("/v1/tokens", &s.admin).await;
    let text = list.to_string();
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(
        !text.contains(token.rsplit_once('_').unwrap().1),
        "no secret in the list"
    );
    assert!(!text.contains("hash"), "no hash in the list");
    // Token changes are audited with the admin as actor, never the secret.
    let (_, events) = s.get("/v1/audit?limit=50", &s.admin).await;
    let created_events: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "token_created" && e["actor"].as_str().unwrap().starts_with("token:"))
        .collect();
    assert_eq!(created_events.len(), 1, "{events}");
    assert!(!events.to_string().contains(token.rsplit_once('_').unwrap().1));
    assert_error(
        &s.post("/v1/tokens", &s.admin, json!({"role": "root"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_error(
        &s.call(Method::DELETE, "/v1/tokens/ffffffffffffffff", Some(&s.admin), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    s.stop().await;
}

/// Wrong and unknown tokens are answered in about the same time. The
/// guarantee is structural (`auth::tests::wrong_and_unknown_tokens_do_the_same_work`:
/// one hash and one constant-time comparison on both paths); this is a
/// coarse check over the socket that nothing else (e.g. an early return
/// before hashing, a second store read) sneaks in. To stay reliable on a
/// loaded 2-core machine it interleaves the two kinds of request, compares
/// medians of 150 each, and only fails when one median is more than 3
/// times the other plus 2 ms. So it catches only gross differences (e.g. a
/// slow hash on one path only); small ones are the structural test's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_unknown_tokens_take_about_the_same_time() {
    let s = TestServer::sqlite().await;
    let (id_part, _) = s.viewer.rsplit_once('_').unwrap();
    let wrong_secret = format!("{id_part}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let unknown = "rot_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let url = format!("{}/v1/stats", s.base);
    let time = |token: String| {
        let (client, url) = (s.client.clone(), url.clone());
        async move {
            let started = std::time::Instant::now();
            let response = client.get(&url).bearer_auth(token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let _ = response.bytes().await.unwrap();
            started.elapsed()
        }
    };
    // Warm up the connection pool and the store.
    for _ in 0..10 {
        time(wrong_secret.clone()).await;
        time(unknown.clone()).await;
    }
    let (mut wrong, mut unknown_times) = (Vec::new(), Vec::new());
    for i in 0..150 {
        // Alternate which goes first, so drift in load hits both alike.
        if i % 2 == 0 {
            wrong.push(time(wrong_secret.clone()).await);
            unknown_times.push(time(unknown.clone()).await);
        } else {
            unknown_times.push(time(unknown.clone()).await);
            wrong.push(time(wrong_secret.clone()).await);
        }
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (w, u) = (median(&mut wrong), median(&mut unknown_times));
    let slack = std::time::Duration::from_millis(2);
    assert!(
        w <= u * 3 + slack && u <= w * 3 + slack,
        "median wrong-secret {w:?} vs unknown-id {u:?}"
    );
    s.stop().await;
}

/// The `Authorization` scheme is case-insensitive (RFC 9110): `bearer`
/// and `BEARER` work as `Bearer`; another scheme does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = TestServer::sqlite().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = s
            .client
            .get(format!("{}/v1/authorities", s.base))
            .header("authorization", format!("{scheme} {}", s.viewer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "scheme {scheme}");
    }
    for header in [
        format!("Basic {}", s.viewer),
        format!("Bearer{}", s.viewer),
        s.viewer.clone(),
    ] {
        let response = s
            .client
            .get(format!("{}/v1/authorities", s.base))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    s.stop().await;
}
