//! KV v2 specifics: the documented layout read by plain HTTP, max_versions,
//! check-and-set between two writers, error mapping.

use std::collections::BTreeMap;
use std::sync::Arc;

use rotation_core::error::Reason;
use rotation_core::ports::SecretBackend;
use rotation_core::secret::{SecretValue, Stage, VersionSelector};
use rotation_store_vault::{VaultAuth, VaultClient, VaultConfig, VaultKvBackend};
use secrecy::SecretString;

use crate::support::{kv, plain_get, server};

#[tokio::test]
async fn a_written_secret_is_readable_over_plain_http_current_and_previous() {
    let (b, prefix) = kv();
    let none = BTreeMap::new();
    b.write("app/db", &SecretValue::new("first"), &[Stage::Current], &none, Some(0))
        .await
        .unwrap();
    let v2 = b
        .write("app/db", &SecretValue::new("second"), &[Stage::Pending], &none, Some(1))
        .await
        .unwrap();
    b.update(
        "app/db",
        &[
            (Stage::Current, Some(v2)),
            (Stage::Previous, Some(1)),
            (Stage::Pending, None),
        ],
        &[],
    )
    .await
    .unwrap();
    let (status, body) = plain_get(&format!("secret/data/{prefix}/app/db")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["data"]["value"], "second",
        "the current value in field `value`"
    );
    assert_eq!(body["data"]["metadata"]["version"], 2);
    assert_eq!(
        body["data"]["metadata"]["custom_metadata"]["rotation:stage:CURRENT"],
        "2"
    );
    assert_eq!(
        body["data"]["metadata"]["custom_metadata"]["rotation:stage:PREVIOUS"],
        "1"
    );
    let (status, body) = plain_get(&format!("secret/data/{prefix}/app/db?version=1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["data"]["value"], "first",
        "the previous version stays readable"
    );
    assert_eq!(b.data_path("app/db"), format!("secret/data/{prefix}/app/db"));
}

#[tokio::test]
async fn max_versions_is_honoured_and_labels_of_dropped_versions_go() {
    let (b, prefix) = kv();
    let b = b.with_max_versions(3);
    let none = BTreeMap::new();
    for i in 1..=5u32 {
        let v = b
            .write("limited", &SecretValue::new(format!("v{i}")), &[], &none, Some(i - 1))
            .await
            .unwrap();
        let mut moves = vec![(Stage::Current, Some(v))];
        if v > 1 {
            moves.push((Stage::Previous, Some(v - 1)));
        }
        b.update(
            "limited",
            &moves,
            &[(v, BTreeMap::from([("n".to_owned(), i.to_string())]))],
        )
        .await
        .unwrap();
    }
    let versions = b.versions("limited").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(versions[2].has(Stage::Current) && versions[1].has(Stage::Previous));
    let (_, body) = plain_get(&format!("secret/metadata/{prefix}/limited")).await;
    assert_eq!(body["data"]["max_versions"], 3);
    let custom = body["data"]["custom_metadata"].as_object().unwrap();
    assert!(
        !custom.contains_key("rotation:v1"),
        "attributes of dropped versions are removed: {custom:?}"
    );
    assert!(b.read("limited", VersionSelector::Version(1)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_second_writer_gets_concurrent_rotation() {
    let (a, prefix) = kv();
    let b = VaultKvBackend::new(crate::support::root_client(), "secret", &prefix).unwrap();
    let none = BTreeMap::new();
    a.write("shared", &SecretValue::new("a1"), &[Stage::Current], &none, Some(0))
        .await
        .unwrap();
    // Both saw version 1; `a` writes first.
    a.write("shared", &SecretValue::new("a2"), &[Stage::Pending], &none, Some(1))
        .await
        .unwrap();
    let err = b
        .write("shared", &SecretValue::new("b2"), &[Stage::Pending], &none, Some(1))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation, "{err}");
    assert!(err.message.contains("check-and-set"), "Vault's message is kept: {err}");
    let (_, value) = a
        .read("shared", VersionSelector::Stage(Stage::Pending))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), "a2", "the loser overwrote nothing");
}

#[tokio::test]
async fn other_tools_custom_metadata_is_kept() {
    let (b, prefix) = kv();
    let client = crate::support::root_client();
    client
        .write(
            &format!("secret/metadata/{prefix}/tagged"),
            &serde_json::json!({"custom_metadata": {"owner": "team-a"}}),
            rotation_store_vault::Retry::Safe,
        )
        .await
        .unwrap();
    b.write(
        "tagged",
        &SecretValue::new("x"),
        &[Stage::Current],
        &BTreeMap::new(),
        Some(0),
    )
    .await
    .unwrap();
    let (_, body) = plain_get(&format!("secret/metadata/{prefix}/tagged")).await;
    assert_eq!(body["data"]["custom_metadata"]["owner"], "team-a");
}

#[tokio::test]
async fn a_bad_token_is_forbidden_and_is_never_printed() {
    let (addr, _) = server();
    let token = "s.this-token-must-not-show-up";
    let client = VaultClient::new(VaultConfig::new(addr, VaultAuth::Token(SecretString::from(token)))).unwrap();
    assert!(!format!("{client:?}").contains(token), "Debug redacts the token");
    let b = VaultKvBackend::new(Arc::new(client), "secret", "tests").unwrap();
    let err = b.versions("x").await.unwrap_err();
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(
        err.message.contains("permission denied"),
        "Vault's message is kept: {err}"
    );
    assert!(!err.message.contains(token));
}

#[tokio::test]
async fn a_server_that_is_down_is_backend_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = VaultConfig::new(
        format!("http://127.0.0.1:{port}"),
        VaultAuth::Token(SecretString::from("t")),
    );
    config.retries = 1;
    let b = VaultKvBackend::new(Arc::new(VaultClient::new(config).unwrap()), "secret", "p").unwrap();
    let err = b.versions("x").await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    let err = b
        .write("x", &SecretValue::new("v"), &[], &BTreeMap::new(), Some(0))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
}

#[tokio::test]
async fn a_missing_mount_is_an_error_not_a_silent_none() {
    let b = VaultKvBackend::new(crate::support::root_client(), "no-such-mount", "p").unwrap();
    let err = b
        .write("x", &SecretValue::new("v"), &[], &BTreeMap::new(), Some(0))
        .await
        .unwrap_err();
    assert_ne!(err.reason, Reason::ConcurrentRotation, "{err}");
}

#[tokio::test]
async fn concurrent_label_updates_from_two_clients_are_both_applied() {
    let (a, prefix) = kv();
    let b = VaultKvBackend::new(crate::support::root_client(), "secret", &prefix).unwrap();
    let none = BTreeMap::new();
    a.write("raced", &SecretValue::new("v1"), &[Stage::Current], &none, Some(0))
        .await
        .unwrap();
    // Many attribute merges from two clients at once: with metadata_cas
    // (OpenBao) each re-reads and re-applies after a lost race, none is lost.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            backend
                .update(
                    "raced",
                    &[],
                    &[(1, BTreeMap::from([(format!("k{i}"), "x".to_owned())]))],
                )
                .await
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    let versions = a.versions("raced").await.unwrap();
    let applied = versions[0].attributes.len();
    // Every update either landed or reported concurrent_rotation (after 5 attempts); none vanished silently.
    assert!(
        failures.iter().all(|e| e.reason == Reason::ConcurrentRotation),
        "{failures:?}"
    );
    assert_eq!(applied + failures.len(), 10, "{versions:?} {failures:?}");
    assert!(versions[0].has(Stage::Current));
}

#[tokio::test]
async fn the_namespace_header_selects_an_openbao_namespace() {
    let root = crate::support::root_client();
    let ns = crate::support::fresh("ns");
    root.write(
        &format!("sys/namespaces/{ns}"),
        &serde_json::json!({}),
        rotation_store_vault::Retry::Safe,
    )
    .await
    .unwrap();
    let (addr, token) = server();
    let mut config = VaultConfig::new(addr, VaultAuth::Token(SecretString::from(token)));
    config.namespace = Some(ns.clone());
    let in_ns = Arc::new(VaultClient::new(config).unwrap());
    in_ns
        .write(
            "sys/mounts/secret",
            &serde_json::json!({"type": "kv", "options": {"version": "2"}}),
            rotation_store_vault::Retry::Safe,
        )
        .await
        .unwrap();
    let b = VaultKvBackend::new(in_ns, "secret", "p").unwrap();
    b.write(
        "only-here",
        &SecretValue::new("v"),
        &[Stage::Current],
        &BTreeMap::new(),
        Some(0),
    )
    .await
    .unwrap();
    let (status, _) = plain_get(&format!("{ns}/secret/data/p/only-here")).await;
    assert_eq!(status, 200, "the value lives in the namespace");
    let (status, _) = plain_get("secret/data/p/only-here").await;
    assert_eq!(status, 404, "not in the root namespace");
}

/// A one-shot HTTP server answering every connection with `response`
/// (or, with `None`, never answering).
async fn fake_server(response: Option<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            match response {
                Some(r) => {
                    let _ = s.write_all(r.as_bytes()).await;
                }
                None => held.push(s),
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_sealed_server_and_a_silent_one_are_backend_unavailable() {
    let sealed = fake_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"errors\":[\"Vault is sealed\"]}",
    ))
    .await;
    let mut config = VaultConfig::new(sealed, VaultAuth::Token(SecretString::from("t")));
    config.retries = 1;
    let b = VaultKvBackend::new(Arc::new(VaultClient::new(config).unwrap()), "secret", "p").unwrap();
    let err = b.versions("x").await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(
        err.message.contains("Vault is sealed"),
        "Vault's message is kept: {err}"
    );

    let silent = fake_server(None).await;
    let mut config = VaultConfig::new(silent, VaultAuth::Token(SecretString::from("t")));
    config.retries = 0;
    config.timeout = std::time::Duration::from_millis(300);
    let b = VaultKvBackend::new(Arc::new(VaultClient::new(config).unwrap()), "secret", "p").unwrap();
    let err = b.versions("x").await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
}
