//! Benchmark: Vault/OpenBao adapters against the server of `VAULT_ADDR` /
//! `VAULT_TOKEN` (`cargo xtask bench vault` starts an OpenBao dev server).
//!
//! 1. Secrets: N secrets (default 1,000) put into KV v2, then each rotated
//!    with the staged strategy through the engine's persisted run, at
//!    concurrency 1 and C (default 4, different secrets).
//! 2. Authority rotation re-signing R records (default 4,000: 1,000 agents
//!    with genesis, two attestations and a delegation each), with local
//!    custody and with transit custody.
//!
//! The engine's state store is SQLite in a temp directory (as for the
//! `rotation` CLI); the secrets part also times the KV operations of a
//! staged rotation alone (read the versions, write PENDING with cas, move
//! the labels, read CURRENT back), which is the Vault-bound part.
//!
//! `cargo bench -p rotation-store-vault --bench vault -- [SECRETS] [CONCURRENCY] [AGENTS]`

use std::sync::Arc;
use std::time::Instant;

use chrono::TimeDelta;
use rotation_core::engine::{IssueRequest, NewAuthority, PutSecret, RotateRequest, SecretRotateRequest};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::policy::{Policy, Procedure, Trigger};
use rotation_core::ports::{KeyCustody, SecretBackend, StateStore};
use rotation_core::secret::{SecretType, SecretValue, Strategy};
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use rotation_store_sqlite::SqliteStore;
use rotation_store_vault::{VaultAuth, VaultClient, VaultConfig, VaultKvBackend, VaultTransitCustody};
use secrecy::{SecretBox, SecretString};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn client() -> Arc<VaultClient> {
    let addr = std::env::var("VAULT_ADDR").expect("VAULT_ADDR (run `cargo xtask bench vault`)");
    let token = std::env::var("VAULT_TOKEN").expect("VAULT_TOKEN (run `cargo xtask bench vault`)");
    Arc::new(VaultClient::new(VaultConfig::new(addr, VaultAuth::Token(SecretString::from(token)))).unwrap())
}

fn local_custody() -> Arc<LocalCustody> {
    let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![5u8; 32])));
    Arc::new(LocalCustody::new(Kek::create(&secret).unwrap().0))
}

async fn engine(custody: Arc<dyn KeyCustody>, dir: &std::path::Path) -> Engine {
    let url = format!(
        "sqlite://{}",
        dir.join(format!("{}.db", uuid::Uuid::new_v4().simple())).display()
    );
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::connect(&url, true).await.unwrap());
    Engine::new(
        store,
        Arc::new(RingCrypto::new()),
        custody,
        Arc::new(SystemClock),
        EngineConfig {
            owner: "bench".into(),
            actor: "bench".into(),
            lease: TimeDelta::seconds(300),
            resign_batch: 1000,
        },
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn kv_only(n: usize, concurrency: usize) {
    use rotation_core::secret::{Stage, VersionSelector};
    let prefix = format!("bench/{}", uuid::Uuid::new_v4().simple());
    let b = Arc::new(VaultKvBackend::new(client(), "secret", &prefix).unwrap());
    let none = std::collections::BTreeMap::new();
    for i in 0..n {
        b.write(
            &format!("s{i}"),
            &SecretValue::new("v1"),
            &[Stage::Current],
            &none,
            Some(0),
        )
        .await
        .unwrap();
    }
    for c in [1, concurrency] {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let chunk = n.div_ceil(c);
        for w in 0..c {
            let (b, none) = (b.clone(), none.clone());
            tasks.spawn(async move {
                for i in (w * chunk)..((w + 1) * chunk).min(n) {
                    let p = format!("s{i}");
                    let versions = b.versions(&p).await.unwrap();
                    let latest = versions.last().unwrap().version;
                    let current = versions.iter().find(|v| v.has(Stage::Current)).unwrap().version;
                    let new = b
                        .write(&p, &SecretValue::new("next"), &[Stage::Pending], &none, Some(latest))
                        .await
                        .unwrap();
                    b.update(
                        &p,
                        &[
                            (Stage::Current, Some(new)),
                            (Stage::Previous, Some(current)),
                            (Stage::Pending, None),
                        ],
                        &[],
                    )
                    .await
                    .unwrap();
                    b.read(&p, VersionSelector::Stage(Stage::Current))
                        .await
                        .unwrap()
                        .unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "kv only: {n} staged label moves (versions, cas write, metadata read+write, read: 8 requests) concurrency {c}: {secs:.2} s = {:.0}/s",
            n as f64 / secs
        );
    }
}

async fn secrets(n: usize, concurrency: usize, dir: &std::path::Path) {
    let prefix = format!("bench/{}", uuid::Uuid::new_v4().simple());
    let backend: Arc<dyn SecretBackend> = Arc::new(VaultKvBackend::new(client(), "secret", &prefix).unwrap());
    let e = engine(local_custody(), dir).await.with_secret_backend(backend);
    e.set_policy(Policy {
        name: "staged".into(),
        trigger: Trigger::MaxAgeDays(30),
        migrate: false,
        retire_old: false,
        updated_at: e.now(),
        procedure: Procedure {
            strategy: Some(Strategy::Staged),
            ..Procedure::default()
        },
    })
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..n {
        e.put_secret(PutSecret {
            path: format!("app/s{i}"),
            secret_type: Some(SecretType::Password),
            value: Some(SecretValue::new(format!("initial-{i}"))),
            policy: Some("staged".into()),
            ..PutSecret::default()
        })
        .await
        .unwrap();
    }
    let put = started.elapsed().as_secs_f64();
    for c in [1, concurrency] {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let chunk = n.div_ceil(c);
        for w in 0..c {
            let e = e.clone();
            tasks.spawn(async move {
                let mut lat = Vec::new();
                for i in (w * chunk)..((w + 1) * chunk).min(n) {
                    let t = Instant::now();
                    e.rotate_secret(SecretRotateRequest {
                        path: format!("app/s{i}"),
                        ..SecretRotateRequest::default()
                    })
                    .await
                    .unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            });
        }
        let mut lat = Vec::new();
        while let Some(l) = tasks.join_next().await {
            lat.extend(l.unwrap());
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        println!(
            "secrets: {n} staged rotations into KV v2, concurrency {c}: {secs:.2} s = {:.0}/s (p50 {:.1} ms, p99 {:.1} ms); put {:.0}/s",
            n as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            n as f64 / put
        );
    }
}

async fn resign(agents: usize, label: &str, custody: Arc<dyn KeyCustody>, dir: &std::path::Path) {
    let e = engine(custody, dir).await;
    let id = AuthorityId::parse(format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])).unwrap();
    e.create_authority(NewAuthority {
        id: id.clone(),
        name: None,
        rotation_period_days: None,
        grace_period_hours: Some(24),
    })
    .await
    .unwrap();
    let requests: Vec<IssueRequest> = (0..agents)
        .map(|i| IssueRequest {
            agent_id: AgentId::parse(format!("agent-{i}")).unwrap(),
            authority_id: id.clone(),
            capabilities: vec!["read".into(), "write".into()],
            delegate_to: Some(AgentId::parse(format!("delegate-{i}")).unwrap()),
        })
        .collect();
    let started = Instant::now();
    let issued = e.issue_chains(&requests).await.unwrap().len();
    let issue = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let result = e.rotate_key(RotateRequest::new(id)).await.unwrap();
    let rotate = started.elapsed().as_secs_f64();
    println!(
        "resign ({label}): {issued} records issued in {issue:.2} s ({:.0}/s); rotation re-signed {} chains / {issued} records in {rotate:.2} s ({:.0} records/s)",
        issued as f64 / issue,
        result.chains_updated,
        issued as f64 / rotate
    );
}

async fn sign_only(messages: usize, label: &str, custody: Arc<dyn KeyCustody>) {
    let key_id = rotation_core::ids::KeyId::generate(&AuthorityId::parse("bench-sign").unwrap());
    let key = custody.create_signing_key(&key_id).await.unwrap();
    let batch: Vec<Vec<u8>> = (0..messages)
        .map(|i| format!("record body {i:08}").into_bytes())
        .collect();
    let started = Instant::now();
    let signatures = custody.sign(&key_id, &key.custody, &batch).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(signatures.len(), messages);
    println!(
        "sign only ({label}): {messages} signatures in {secs:.2} s ({:.0}/s)",
        messages as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let n = arg(1, 1000);
    let concurrency = arg(2, 4);
    let agents = arg(3, 1000);
    let dir = tempfile::tempdir().unwrap();
    kv_only(n, concurrency).await;
    secrets(n, concurrency, dir.path()).await;
    resign(agents, "local custody", local_custody(), dir.path()).await;
    let transit = VaultTransitCustody::new(client(), "transit").unwrap();
    resign(agents, "transit custody", Arc::new(transit.clone()), dir.path()).await;
    sign_only(agents * 4, "local custody", local_custody()).await;
    sign_only(agents * 4, "transit custody", Arc::new(transit)).await;
}
