//! The server on PostgreSQL (`DATABASE_URL`, a role that may create
//! databases; `cargo xtask test` provides one). Without it this test
//! fails, saying so: it is never skipped.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::{Options, TestServer, unique};

pub(crate) fn server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL server test needs a server. Run it with \
             `cargo xtask test` (which starts a throwaway PostgreSQL), or set \
             DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE for a role that may create databases"
        ),
    }
}

/// `url` with its database replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let start = url.find("://").expect("a URL with a scheme") + 3;
    let end = url[start..].find('?').map_or(url.len(), |i| start + i);
    let path = url[start..end].find('/').map_or(end, |i| start + i);
    format!("{}/{database}{}", &url[..path], &url[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_on_postgres() {
    let server = server_url();
    let name = unique("server_it").replace('-', "_");
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of DATABASE_URL: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap();
    let s = TestServer::start(with_database(&server, &name), None, Options::default()).await;

    let (status, _) = s
        .post(
            "/v1/authorities",
            &s.operator,
            json!({"id": "org-pg", "grace_period_hours": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s
        .post(
            "/v1/chains",
            &s.operator,
            json!({"agent_id": "agent-1", "authority_id": "org-pg", "capabilities": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, rotated) = s.post("/v1/authorities/org-pg/rotate", &s.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["chains_updated"], 1);
    assert_eq!(
        s.get("/v1/authorities/org-pg/rotate", &s.viewer).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        s.post("/v1/authorities/org-pg/rotate", &s.viewer, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let (_, verdict) = s.get("/v1/chains/agent-1/verify", &s.viewer).await;
    assert_eq!(verdict["valid"], true);
    let (_, verified) = s.get("/v1/audit/verify", &s.viewer).await;
    assert_eq!(verified["valid"], true);
    let ready = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // The store goes away (its connections are closed, the database is
    // gone): not ready, 503 backend_unavailable.
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .await
        .unwrap();
    let ready = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "backend_unavailable", "{body}");
    s.stop().await;
}
