//! Faults: the server unreachable in the middle of a rotation, a token
//! without permission. (A second writer's CAS conflict is in `kv`.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
use rotation_store_vault::{VaultAuth, VaultClient, VaultConfig, VaultKvBackend, VaultTransitCustody};
use rotation_testkit::{MemoryStore, SettableClock};
use secrecy::SecretString;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{fresh, local_engine, root_client, server};

/// A TCP proxy in front of the real server that can make it unreachable:
/// while `down`, open connections are cut and new ones closed at once.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let (addr, _) = server();
        let upstream = addr.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (d, c) = (down.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy {
            port,
            down,
            connections,
            accept,
        }
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server becomes unreachable (as if stopped).
    fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// The server is reachable again.
    fn restart(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A target that stops the proxy when the rotation reaches `set`.
struct StopsServerAtSet(Arc<Proxy>, AtomicBool);

#[async_trait]
impl CredentialTarget for StopsServerAtSet {
    fn describe(&self, _: &Secret) -> String {
        "stops the server once".into()
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        if ctx.step == rotation_core::ports::Step::Set && !self.1.swap(true, Ordering::SeqCst) {
            self.0.stop();
        }
        Ok(StepOutput::default())
    }
}

struct Resolver(Arc<StopsServerAtSet>);

impl TargetResolver for Resolver {
    fn target(&self, _: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        Ok(self.0.clone())
    }
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        StoreOnlyResolver.verifier(name)
    }
}

#[tokio::test]
async fn the_server_gone_mid_rotation_is_backend_unavailable_and_the_run_resumes_with_nothing_lost() {
    let proxy = Arc::new(Proxy::start().await);
    let (_, token) = server();
    let mut config = VaultConfig::new(proxy.addr(), VaultAuth::Token(SecretString::from(token)));
    config.retries = 1;
    let prefix = format!("tests/{}", fresh("fault"));
    let through_proxy =
        Arc::new(VaultKvBackend::new(Arc::new(VaultClient::new(config).unwrap()), "secret", &prefix).unwrap());
    let direct = VaultKvBackend::new(root_client(), "secret", &prefix).unwrap();

    let (base, custody, _) = local_engine();
    drop(base);
    let clock = Arc::new(SettableClock::new(rotation_core::time::truncate(chrono::Utc::now())));
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(RingCrypto::new()),
        custody,
        clock.clone(),
        EngineConfig {
            owner: "faults".into(),
            actor: "test".into(),
            lease: TimeDelta::seconds(60),
            resign_batch: 10,
        },
    )
    .with_secret_backend(through_proxy as Arc<dyn SecretBackend>)
    .with_resolver(Arc::new(Resolver(Arc::new(StopsServerAtSet(
        proxy.clone(),
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
            path: "svc/pw".into(),
            secret_type: Some(SecretType::Password),
            value: Some(SecretValue::new("old-value")),
            policy: Some("staged".into()),
            ..PutSecret::default()
        })
        .await
        .unwrap();

    let rotation_id = RotationId::generate();
    let request = SecretRotateRequest {
        path: "svc/pw".into(),
        rotation_id: Some(rotation_id),
        ..SecretRotateRequest::default()
    };
    let err = engine.rotate_secret(request.clone()).await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert_eq!(err.rotation_id.as_deref(), Some(rotation_id.to_string().as_str()));
    // Meanwhile in the server: the new value is PENDING, the old one still CURRENT.
    let versions = direct.versions("svc/pw").await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions[0].has(Stage::Current) && versions[1].has(Stage::Pending),
        "{versions:?}"
    );

    // The server is back; the run resumes once its lease has expired.
    proxy.restart();
    clock.advance(TimeDelta::seconds(61));
    let done = engine.rotate_secret(request).await.unwrap();
    assert_eq!(done.rotation_id, rotation_id);
    assert!(done.resumed, "{done:?}");
    assert_eq!((done.old_version, done.new_version), (Some(1), Some(2)));
    let versions = direct.versions("svc/pw").await.unwrap();
    assert_eq!(versions.len(), 2, "no version was written twice: {versions:?}");
    let (_, previous) = direct
        .read("svc/pw", VersionSelector::Stage(Stage::Previous))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.expose(), "old-value", "nothing lost");
    let (current, value) = direct
        .read("svc/pw", VersionSelector::Stage(Stage::Current))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 2);
    assert_ne!(value.expose(), "old-value");
    assert!(
        direct
            .read("svc/pw", VersionSelector::Stage(Stage::Pending))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_token_without_permission_is_forbidden() {
    let root = root_client();
    let policy = fresh("read-only");
    root.write(
        &format!("sys/policies/acl/{policy}"),
        &json!({"policy": "path \"secret/data/elsewhere/*\" { capabilities = [\"read\"] }"}),
        rotation_store_vault::Retry::Safe,
    )
    .await
    .unwrap();
    let created = root
        .write(
            "auth/token/create",
            &json!({"policies": [policy], "no_default_policy": true, "ttl": "10m"}),
            rotation_store_vault::Retry::ConnectOnly,
        )
        .await
        .unwrap()
        .unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let (addr, _) = server();
    let client = Arc::new(
        VaultClient::new(VaultConfig::new(
            addr,
            VaultAuth::Token(SecretString::from(token.clone())),
        ))
        .unwrap(),
    );
    let kv = VaultKvBackend::new(client.clone(), "secret", &format!("tests/{}", fresh("denied"))).unwrap();
    let err = kv
        .write(
            "x",
            &SecretValue::new("v"),
            &[Stage::Current],
            &BTreeMap::new(),
            Some(0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(err.message.contains("permission denied"), "{err}");
    assert!(
        !err.message.contains(&token) && !format!("{err:?}").contains(&token),
        "the token is never shown"
    );
    let custody = VaultTransitCustody::new(client, "transit").unwrap();
    let err = rotation_core::ports::KeyCustody::create_signing_key(
        &custody,
        &rotation_core::ids::KeyId::generate(&rotation_core::ids::AuthorityId::parse("denied").unwrap()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
}

/// A target whose `create` step lets another writer add a version first.
struct SecondWriterAtCreate(VaultKvBackend);

#[async_trait]
impl CredentialTarget for SecondWriterAtCreate {
    fn describe(&self, _: &Secret) -> String {
        "another writer races the rotation".into()
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        if ctx.step == rotation_core::ports::Step::Create {
            let latest = self.0.versions(&ctx.secret.path).await?.last().map_or(0, |v| v.version);
            self.0
                .write(
                    &ctx.secret.path,
                    &SecretValue::new("from another writer"),
                    &[],
                    &BTreeMap::new(),
                    Some(latest),
                )
                .await?;
        }
        Ok(StepOutput::default())
    }
}

struct RaceResolver(Arc<SecondWriterAtCreate>);

impl TargetResolver for RaceResolver {
    fn target(&self, _: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        Ok(self.0.clone())
    }
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        StoreOnlyResolver.verifier(name)
    }
}

#[tokio::test]
async fn a_second_writer_during_a_rotation_gives_concurrent_rotation() {
    let prefix = format!("tests/{}", fresh("race"));
    let ours: Arc<dyn SecretBackend> = Arc::new(VaultKvBackend::new(root_client(), "secret", &prefix).unwrap());
    let theirs = VaultKvBackend::new(root_client(), "secret", &prefix).unwrap();
    let (base, _, _) = local_engine();
    let engine = base
        .with_secret_backend(ours.clone())
        .with_resolver(Arc::new(RaceResolver(Arc::new(SecondWriterAtCreate(theirs)))));
    engine
        .put_secret(PutSecret {
            path: "svc/raced".into(),
            secret_type: Some(SecretType::Password),
            value: Some(SecretValue::new("v1")),
            ..PutSecret::default()
        })
        .await
        .unwrap();
    let err = engine
        .rotate_secret(SecretRotateRequest {
            path: "svc/raced".into(),
            ..SecretRotateRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation, "{err}");
    let versions = ours.versions("svc/raced").await.unwrap();
    assert_eq!(
        versions.len(),
        2,
        "the other writer's version stands, ours was not written: {versions:?}"
    );
    let (_, value) = ours
        .read("svc/raced", VersionSelector::Version(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), "from another writer");
    let (current, _) = ours
        .read("svc/raced", VersionSelector::Stage(Stage::Current))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 1, "CURRENT untouched");
}
