//! `/openapi.json`: served without a token, OpenAPI 3.1, lists exactly the
//! routes the router serves, and real responses match their declared shapes.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestServer;

/// Every route the router serves, as (method, OpenAPI path).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/authorities"),
    ("post", "/v1/authorities"),
    ("get", "/v1/authorities/{id}"),
    ("post", "/v1/authorities/{id}/rotate"),
    ("post", "/v1/authorities/{id}/schedule"),
    ("get", "/v1/authorities/{id}/status"),
    ("post", "/v1/authorities/{id}/keys/{key_id}/revoke"),
    ("get", "/v1/authorities/{id}/jwks.json"),
    ("get", "/v1/chains"),
    ("post", "/v1/chains"),
    ("get", "/v1/chains/verify"),
    ("get", "/v1/chains/{agent}/verify"),
    ("get", "/v1/keyrings"),
    ("post", "/v1/keyrings"),
    ("get", "/v1/keyrings/{name}"),
    ("post", "/v1/keyrings/{name}/rotate"),
    ("post", "/v1/keyrings/{name}/migrate"),
    ("get", "/v1/keyrings/{name}/report"),
    ("post", "/v1/keyrings/{name}/values"),
    ("post", "/v1/keyrings/{name}/values/{id}/decrypt"),
    ("get", "/v1/policies"),
    ("get", "/v1/policies/{name}"),
    ("put", "/v1/policies/{name}"),
    ("delete", "/v1/policies/{name}"),
    ("get", "/v1/schedules"),
    ("post", "/v1/schedules"),
    ("post", "/v1/schedules/run-due"),
    ("get", "/v1/schedules/plan"),
    ("post", "/v1/schedules/{id}/resume"),
    ("get", "/v1/secrets"),
    ("put", "/v1/secrets/{path}"),
    ("get", "/v1/secrets/{path}"),
    ("get", "/v1/secrets/{path}:history"),
    ("get", "/v1/secrets/{path}:status"),
    ("post", "/v1/secrets/{path}:rotate"),
    ("post", "/v1/secrets/{path}:validate"),
    ("get", "/v1/stats"),
    ("post", "/v1/stats/reset"),
    ("get", "/v1/outbox"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/verify"),
    ("get", "/v1/audit/checkpoint"),
    ("get", "/v1/audit/proof"),
    ("get", "/v1/audit/consistency"),
    ("get", "/v1/report"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{id}"),
];

/// The schema at `schema`, following a local `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Asserts that `value` has the shape of `schema`: its type, its required
/// properties, the types of the properties it has, and enum membership.
#[track_caller]
fn assert_shape(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() {
        assert!(
            types.contains(&actual) || (actual == "integer" && types.contains(&"number")),
            "{at}: {actual} is not {types:?}"
        );
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(allowed.contains(value), "{at}: {value} is not one of {allowed:?}");
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            assert_shape(doc, items, v, &format!("{at}[{i}]"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            assert!(object.contains_key(name), "{at}: missing {name} in {value}");
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if let Some(v) = object.get(name) {
                    assert_shape(doc, property, v, &format!("{at}.{name}"));
                }
            }
        }
    }
}

/// The declared JSON schema of `method path`'s `status` response.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "no {status} JSON schema for {method} {path}");
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_matches_responses() {
    let s = TestServer::sqlite().await;
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);

    // Every listed route is served: none falls through to "no such route" or 405.
    for (method, path) in ROUTES {
        let concrete = path.replace(['{', '}'], "");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = s.call(method.clone(), &concrete, Some(&s.viewer), None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["message"], "no such route", "{method} {path}");
        // Every /v1 operation but the JWKS requires the bearer token.
        let secured = !doc["paths"][path][method.as_str().to_lowercase()]["security"].is_null();
        assert_eq!(
            secured,
            path.starts_with("/v1/") && !path.ends_with("/jwks.json"),
            "{path}"
        );
    }

    // A few real responses against their declared schemas.
    let (status, created) = s
        .post(
            "/v1/authorities",
            &s.operator,
            json!({"id": "org-openapi", "grace_period_hours": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_shape(
        &doc,
        response_schema(&doc, "post", "/v1/authorities", 201),
        &created,
        "authority",
    );
    assert!(!created["keys"].as_array().unwrap().is_empty());

    let (status, keyring) = s
        .post("/v1/keyrings", &s.operator, json!({"name": "openapi-ring"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_shape(
        &doc,
        response_schema(&doc, "post", "/v1/keyrings", 201),
        &keyring,
        "keyring",
    );

    let (status, tokens) = s.get("/v1/tokens", &s.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape(&doc, response_schema(&doc, "get", "/v1/tokens", 200), &tokens, "tokens");

    let (status, list) = s.get("/v1/authorities", &s.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_shape(
        &doc,
        response_schema(&doc, "get", "/v1/authorities", 200),
        &list,
        "authorities",
    );

    let missing = s.get("/v1/authorities/org-nowhere", &s.viewer).await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    let error = response_schema(&doc, "get", "/v1/authorities/{id}", 401);
    assert_shape(&doc, error, &missing.1, "not found");
    let forbidden = s.get("/v1/tokens", &s.viewer).await;
    assert_eq!(forbidden.0, StatusCode::FORBIDDEN);
    assert_shape(&doc, error, &forbidden.1, "forbidden");
    // A reason outside the enum would fail the shape check.
    let mut wrong = forbidden.1.clone();
    wrong["reason"] = json!("no_such_reason");
    let caught = std::panic::catch_unwind(|| assert_shape(&doc, error, &wrong, "wrong"));
    assert!(caught.is_err());
    s.stop().await;
}

/// Inputs the fuzzer sends: path and query rejections are JSON errors with
/// a stable reason, never axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_query_rejections_are_json_errors() {
    let s = TestServer::sqlite().await;
    // Invalid input is 422 invalid_input, from the extractors as from the handlers.
    let too_big = s.get("/v1/audit?limit=18446744073709551616", &s.viewer).await;
    crate::support::assert_error(&too_big, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let not_a_number = s.get("/v1/audit?limit=abc", &s.viewer).await;
    crate::support::assert_error(&not_a_number, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let not_bool = s.get("/v1/schedules?all=maybe", &s.viewer).await;
    crate::support::assert_error(&not_bool, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let not_utf8 = s.get("/v1/chains/%FF/verify", &s.viewer).await;
    crate::support::assert_error(&not_utf8, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // A method the route does not take: a JSON error too (405 kept, with `allow`).
    let response = s
        .client
        .delete(format!("{}/v1/authorities", s.base))
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key("allow"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "invalid_input", "{body}");
    s.stop().await;
}
