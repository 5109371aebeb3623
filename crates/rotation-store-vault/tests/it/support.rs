//! The server from the environment, fresh prefixes, an independent HTTP client.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::ports::{KeyCustody, StateStore};
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use rotation_store_vault::{VaultAuth, VaultClient, VaultConfig, VaultKvBackend};
use rotation_testkit::{MemoryStore, SettableClock};
use secrecy::{SecretBox, SecretString};
use serde_json::Value;

/// `VAULT_ADDR` and `VAULT_TOKEN`, or a panic saying how to get them.
pub(crate) fn server() -> (String, String) {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{k} is not set: these tests need a Vault/OpenBao server; run them with `cargo xtask test` \
                 (which starts OpenBao), or `eval $(cargo xtask openbao)` in another shell and export its variables"
                )
            })
    };
    (get("VAULT_ADDR"), get("VAULT_TOKEN"))
}

/// A client with the root token of the environment.
pub(crate) fn root_client() -> Arc<VaultClient> {
    let (addr, token) = server();
    Arc::new(VaultClient::new(VaultConfig::new(addr, VaultAuth::Token(SecretString::from(token)))).unwrap())
}

/// A fresh random name (KV prefixes, transit keys, policies).
pub(crate) fn fresh(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A KV backend on `secret/` under a fresh prefix.
pub(crate) fn kv() -> (VaultKvBackend, String) {
    let prefix = format!("tests/{}", fresh("kv"));
    (VaultKvBackend::new(root_client(), "secret", &prefix).unwrap(), prefix)
}

/// Plain HTTP GET with the root token, independent of the crate's client:
/// (status, JSON body).
pub(crate) async fn plain_get(path: &str) -> (u16, Value) {
    let (addr, token) = server();
    let response = reqwest::Client::new()
        .get(format!("{}/v1/{path}", addr.trim_end_matches('/')))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// An engine on a memory store with the local custody.
pub(crate) fn local_engine() -> (Engine, Arc<LocalCustody>, Arc<dyn StateStore>) {
    let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![7u8; 32])));
    let (kek, _) = Kek::create(&secret).unwrap();
    let custody = Arc::new(LocalCustody::new(kek));
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    (engine(store.clone(), custody.clone()), custody, store)
}

/// An engine on `store` with `custody`.
pub(crate) fn engine(store: Arc<dyn StateStore>, custody: Arc<dyn KeyCustody>) -> Engine {
    Engine::new(
        store,
        Arc::new(RingCrypto::new()),
        custody,
        Arc::new(SettableClock::new(rotation_core::time::truncate(chrono::Utc::now()))),
        EngineConfig {
            owner: "vault-tests".into(),
            actor: "test".into(),
            lease: TimeDelta::seconds(60),
            resign_batch: 50,
        },
    )
}
