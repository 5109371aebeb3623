//! AppRole login and token renewal before expiry, on a role with short TTLs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rotation_core::ports::SecretBackend;
use rotation_core::secret::{SecretValue, Stage};
use rotation_store_vault::{Retry, VaultAuth, VaultClient, VaultConfig, VaultKvBackend};
use secrecy::SecretString;
use serde_json::json;

use crate::support::{fresh, root_client, server};

/// An AppRole role allowed to use `secret/.../tests/*`, and its role id and
/// a secret id usable `uses` times (0: unlimited).
async fn role(token_ttl: &str, token_max_ttl: &str, uses: u32) -> (String, String) {
    let root = root_client();
    // Enabled by `cargo xtask test`; enable it on other servers (an error if it already is).
    let _ = root
        .write("sys/auth/approle", &json!({"type": "approle"}), Retry::Safe)
        .await;
    let name = fresh("role");
    root.write(
        &format!("sys/policies/acl/{name}"),
        &json!({"policy": "path \"secret/data/tests/*\" { capabilities = [\"create\", \"read\", \"update\"] }\n\
                           path \"secret/metadata/tests/*\" { capabilities = [\"create\", \"read\", \"update\"] }"}),
        Retry::Safe,
    )
    .await
    .unwrap();
    root.write(
        &format!("auth/approle/role/{name}"),
        &json!({"token_policies": [name], "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
                "secret_id_num_uses": uses}),
        Retry::Safe,
    )
    .await
    .unwrap();
    let role_id = root
        .read(&format!("auth/approle/role/{name}/role-id"))
        .await
        .unwrap()
        .unwrap()["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = root
        .write(
            &format!("auth/approle/role/{name}/secret-id"),
            &json!({}),
            Retry::ConnectOnly,
        )
        .await
        .unwrap()
        .unwrap()["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (role_id, secret_id)
}

fn approle_backend(role_id: String, secret_id: String) -> VaultKvBackend {
    let (addr, _) = server();
    let auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: SecretString::from(secret_id),
    };
    let client = VaultClient::new(VaultConfig::new(addr, auth)).unwrap();
    VaultKvBackend::new(Arc::new(client), "secret", &format!("tests/{}", fresh("approle"))).unwrap()
}

#[tokio::test]
async fn approle_tokens_are_renewed_before_they_expire() {
    // The secret id works once: after the first login only renewal keeps
    // the client working past the 3 s TTL.
    let (role_id, secret_id) = role("3s", "60s", 1).await;
    let b = approle_backend(role_id, secret_id.clone());
    let secret_id_debug = format!("{b:?}");
    assert!(
        !secret_id_debug.contains(&secret_id),
        "Debug hides the secret id: {secret_id_debug}"
    );
    b.write(
        "renewed",
        &SecretValue::new("v1"),
        &[Stage::Current],
        &BTreeMap::new(),
        Some(0),
    )
    .await
    .unwrap();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        b.versions("renewed")
            .await
            .unwrap_or_else(|e| panic!("call {i} after {} s: {e}", i + 1));
    }
}

#[tokio::test]
async fn approle_logs_in_again_after_the_max_ttl() {
    let (role_id, secret_id) = role("2s", "3s", 0).await;
    let b = approle_backend(role_id, secret_id);
    b.write(
        "relogin",
        &SecretValue::new("v1"),
        &[Stage::Current],
        &BTreeMap::new(),
        Some(0),
    )
    .await
    .unwrap();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        b.versions("relogin").await.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
}

#[tokio::test]
async fn a_wrong_secret_id_is_refused() {
    let (role_id, _) = role("1m", "1m", 0).await;
    let b = approle_backend(role_id, "not-the-secret-id".into());
    let err = b.versions("x").await.unwrap_err();
    assert!(
        matches!(
            err.reason,
            rotation_core::Reason::InvalidInput
                | rotation_core::Reason::Forbidden
                | rotation_core::Reason::Unauthorized
        ),
        "{err}"
    );
    assert!(!err.message.contains("not-the-secret-id"), "{err}");
}

#[tokio::test]
async fn an_operators_renewable_token_is_renewed_before_it_expires() {
    let (addr, _) = server();
    let root = root_client();
    let policy = fresh("token-policy");
    root.write(
        &format!("sys/policies/acl/{policy}"),
        &json!({"policy": "path \"secret/data/tests/*\" { capabilities = [\"create\", \"read\", \"update\"] }\n\
                           path \"secret/metadata/tests/*\" { capabilities = [\"create\", \"read\", \"update\"] }"}),
        Retry::Safe,
    )
    .await
    .unwrap();
    let created = root
        .write(
            "auth/token/create",
            &json!({"policies": [policy], "ttl": "3s", "explicit_max_ttl": "60s", "renewable": true}),
            Retry::ConnectOnly,
        )
        .await
        .unwrap()
        .unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let client = VaultClient::new(VaultConfig::new(
        addr,
        VaultAuth::Token(SecretString::from(token.clone())),
    ))
    .unwrap();
    assert!(!format!("{client:?}").contains(&token), "Debug hides the token");
    let b = VaultKvBackend::new(Arc::new(client), "secret", &format!("tests/{}", fresh("token"))).unwrap();
    b.write(
        "renewed",
        &SecretValue::new("v1"),
        &[Stage::Current],
        &BTreeMap::new(),
        Some(0),
    )
    .await
    .unwrap();
    // Without renewal the token dies 3 s after its creation.
    for i in 0..7 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        b.versions("renewed")
            .await
            .unwrap_or_else(|e| panic!("call {i} after {} s: {e}", i + 1));
    }
}
