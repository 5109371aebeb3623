//! Two `rotation-server` processes (the real binary) on one fresh
//! PostgreSQL database (`DATABASE_URL`; never skipped): 100 due schedules
//! are each rotated exactly once, and a replica killed with SIGKILL in the
//! middle of a rotation leaves the other to resume the run once its lease
//! has expired.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rotation_core::Engine;
use rotation_core::engine::{IssueRequest, NewAuthority};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::ports::{CryptoProvider, StateStore};
use rotation_core::time::{SystemClock, truncate};
use rotation_crypto::RingCrypto;
use rotation_server::{Role, Tokens};
use rotation_testkit::SettableClock;
use secrecy::ExposeSecret as _;
use sqlx::{Connection, Executor, PgConnection};

use crate::postgres::{server_url, with_database};
use crate::support::{KEY_BYTES, init_store, unique};

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

/// Authorities with a due schedule in the exactly-once test.
const AUTHORITIES: usize = 100;
/// Trust-chain records of the authority rotated when a replica is killed.
const RECORDS: usize = 40_000;
/// Lease of the replicas, in seconds.
const LEASE_SECONDS: u64 = 3;

/// A fresh database on the server of `DATABASE_URL`, dropped on [`Db::drop_db`].
struct Db {
    admin: PgConnection,
    name: String,
    url: String,
}

impl Db {
    async fn create(prefix: &str) -> Db {
        let server = server_url();
        let name = unique(prefix).replace('-', "_");
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of DATABASE_URL: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap();
        let url = with_database(&server, &name);
        Db { admin, name, url }
    }

    async fn drop_db(mut self) {
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                self.name
            )))
            .await
            .unwrap();
    }
}

/// A `rotation-server` child process, killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Replica {
    /// Starts the binary on a free port with its own worker id, a 1 s
    /// scheduler interval and a short lease, and waits for `/readyz`.
    async fn start(url: &str, key_file: &Path, dir: &Path, worker_id: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{worker_id}.log"));
        let child = Command::new(BIN)
            .args([
                "--store",
                url,
                "--master-key-file",
                &key_file.display().to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--scheduler-interval-seconds",
                "1",
                "--worker-id",
                worker_id,
                "--lease-seconds",
                &LEASE_SECONDS.to_string(),
            ])
            .env_remove("ROTATION_MASTER_PASSWORD")
            .env_remove("ROTATION_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let replica = Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", replica.base)).send().await
                && r.status() == StatusCode::OK
            {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "replica {worker_id} did not come up: {}",
                std::fs::read_to_string(&replica.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the test master key file (mode 0600) into `dir`.
fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("master.key");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap()
        .write_all(hex::encode(KEY_BYTES).as_bytes())
        .unwrap();
    path
}

/// An engine on `store` whose clock is an hour behind, so that it may
/// schedule rotations at times that are already past for the replicas.
async fn seeding_engine(store: Arc<dyn StateStore>, key_file: &Path) -> Engine {
    let custody = rotation_app::unlock_custody(store.as_ref(), key_file).await.unwrap();
    let clock = Arc::new(SettableClock::new(
        truncate(chrono::Utc::now()) - chrono::TimeDelta::hours(1),
    ));
    rotation_app::engine(
        store,
        custody,
        clock,
        rotation_app::Identity {
            owner: "test-seed".into(),
            actor: "test:seed".into(),
            lease: chrono::TimeDelta::seconds(60),
        },
    )
}

async fn create_authority(engine: &Engine, id: &AuthorityId) {
    engine
        .create_authority(NewAuthority {
            id: id.clone(),
            name: None,
            rotation_period_days: None,
            grace_period_hours: Some(1),
        })
        .await
        .unwrap();
}

/// Runs that are not completed, rolled back or failed.
async fn open_runs(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM runs WHERE state NOT IN ('completed', 'rolled_back', 'failed')")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_rotate_each_due_target_exactly_once() {
    let db = Db::create("replicas_once").await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let store = init_store(&db.url).await;
    let engine = seeding_engine(store, &key).await;
    let due = truncate(chrono::Utc::now()) - chrono::TimeDelta::seconds(1);
    for i in 0..AUTHORITIES {
        let id = AuthorityId::parse(format!("org-{i:03}")).unwrap();
        create_authority(&engine, &id).await;
        engine
            .issue_chains(&[IssueRequest {
                agent_id: AgentId::parse(format!("agent-{i:03}")).unwrap(),
                authority_id: id.clone(),
                capabilities: vec!["read".into()],
                delegate_to: None,
            }])
            .await
            .unwrap();
        engine.schedule_rotation(&id, due).await.unwrap();
    }

    let a = Replica::start(&db.url, &key, dir.path(), "replica-a").await;
    let b = Replica::start(&db.url, &key, dir.path(), "replica-b").await;

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'completed'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if completed >= AUTHORITIES as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{completed} of {AUTHORITIES} rotations completed in time; logs:\n{}\n{}",
            std::fs::read_to_string(&a.log).unwrap_or_default(),
            std::fs::read_to_string(&b.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Give a replica that would rotate a target twice the chance to do so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(a);
    drop(b);

    let runs: Vec<(String, i64)> = sqlx::query_as("SELECT target, count(*) FROM runs GROUP BY target ORDER BY target")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs.len(), AUTHORITIES, "{runs:?}");
    assert!(
        runs.iter().all(|(_, n)| *n == 1),
        "a target ran more than once: {runs:?}"
    );
    let completed_events: Vec<(String, i64)> =
        sqlx::query_as("SELECT target, count(*) FROM audit_events WHERE event = 'rotation_completed' GROUP BY target")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(completed_events.len(), AUTHORITIES, "{completed_events:?}");
    assert!(
        completed_events.iter().all(|(_, n)| *n == 1),
        "a target completed more than once: {completed_events:?}"
    );
    assert_eq!(open_runs(&mut conn).await, 0);
    let owners: Vec<(String, i64)> =
        sqlx::query_as("SELECT split_part(lease_owner, ':', 2), count(*) FROM runs GROUP BY 1 ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    eprintln!("runs by replica: {owners:?}");
    assert!(
        owners.iter().all(|(o, _)| o == "replica-a" || o == "replica-b"),
        "{owners:?}"
    );

    let audit = engine.verify_audit().await.unwrap();
    assert!(audit.valid, "{audit:?}");
    let verdicts = engine.verify_all_chains().await.unwrap();
    assert_eq!(verdicts.len(), AUTHORITIES);
    assert!(verdicts.iter().all(|v| v.valid), "{verdicts:?}");
    drop(conn);
    drop(engine);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_rotation_is_resumed_by_the_other() {
    let db = Db::create("replicas_kill").await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let store = init_store(&db.url).await;
    let crypto: Arc<dyn CryptoProvider> = Arc::new(RingCrypto::new());
    let tokens = Tokens::new(store.clone(), crypto, Arc::new(SystemClock));
    let (_, token) = tokens
        .create(Role::Operator, None, Some("replica test".into()))
        .await
        .unwrap();
    let token = token.expose_secret().to_owned();
    let engine = seeding_engine(store, &key).await;
    let id = AuthorityId::parse("org-big").unwrap();
    create_authority(&engine, &id).await;
    let requests: Vec<IssueRequest> = (0..RECORDS / 2)
        .map(|i| IssueRequest {
            agent_id: AgentId::parse(format!("agent-{i:06}")).unwrap(),
            authority_id: id.clone(),
            capabilities: vec!["read:data".into()],
            delegate_to: None,
        })
        .collect();
    for chunk in requests.chunks(5_000) {
        engine.issue_chains(chunk).await.unwrap();
    }

    let mut a = Replica::start(&db.url, &key, dir.path(), "replica-a").await;
    let rotate = {
        let url = format!("{}/v1/authorities/org-big/rotate", a.base);
        let token = token.clone();
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({}))
                .send()
                .await;
        })
    };
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if open_runs(&mut conn).await == 1 {
            break;
        }
        assert!(
            !rotate.is_finished(),
            "the rotation finished before it was seen in progress; raise RECORDS"
        );
        assert!(Instant::now() < deadline, "no run in progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    let _ = rotate.await;
    let (state, owner): (String, String) = sqlx::query_as("SELECT state, lease_owner FROM runs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_ne!(
        state, "completed",
        "replica A finished before it was killed; raise RECORDS"
    );
    assert!(owner.starts_with("server:replica-a:"), "{owner}");

    let b = Replica::start(&db.url, &key, dir.path(), "replica-b").await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (state, owner) = loop {
        let (state, owner): (String, String) = sqlx::query_as("SELECT state, lease_owner FROM runs")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if matches!(state.as_str(), "completed" | "rolled_back" | "failed") {
            break (state, owner);
        }
        assert!(
            Instant::now() < deadline,
            "replica B did not finish the run ({state}); log:\n{}",
            std::fs::read_to_string(&b.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(state, "completed");
    assert!(owner.starts_with("server:replica-b:"), "{owner}");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, 1, "the run was resumed, not started again");
    drop(b);

    let audit = engine.verify_audit().await.unwrap();
    assert!(audit.valid, "{audit:?}");
    let verdicts = engine.verify_all_chains().await.unwrap();
    assert_eq!(verdicts.len(), RECORDS / 2);
    assert!(
        verdicts.iter().all(|v| v.valid),
        "an invalid chain after the resumed rotation"
    );
    drop(conn);
    drop(engine);
    db.drop_db().await;
}
