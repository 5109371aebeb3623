//! The CLI on a PostgreSQL store: every command works, 8 processes racing
//! through `schedule run-due` rotate each due target exactly once, and a
//! rotation killed with SIGKILL is resumed by another process.
//!
//! These tests need `DATABASE_URL` (a role that may create databases);
//! `cargo xtask test` starts a throwaway server and sets it. Without it
//! they fail, saying so; they are never skipped. Each test works in a
//! database of its own, dropped at the end.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::engine::{IssueRequest, NewAuthority};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::ports::StateStore;
use rotation_core::time::{Clock, FixedClock, SystemClock, truncate};
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, KekParams, LocalCustody, MasterSecret, RingCrypto};
use rotation_store_pg::PgStore;
use secrecy::SecretBox;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::hours_from_now;

/// The server URL from `DATABASE_URL`; panics with instructions without it.
fn server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL CLI tests need a server. Run them with \
             `cargo xtask test` (which starts a throwaway PostgreSQL), or set \
             DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE for a role that may create databases"
        ),
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let start = url.find("://").expect("a URL with a scheme") + 3;
    let end = url[start..].find('?').map_or(url.len(), |i| start + i);
    let path = url[start..end].find('/').map_or(end, |i| start + i);
    format!("{}/{database}{}", &url[..path], &url[end..])
}

/// A private database, a working directory, and helpers to run `rotation`
/// against them. The database is dropped with this value.
struct PgEnv {
    dir: tempfile::TempDir,
    name: String,
    url: String,
    now: Option<String>,
}

impl PgEnv {
    /// A fresh database (uninitialised store).
    fn new() -> PgEnv {
        let server = server_url();
        let name = format!("t_cli_{}", uuid::Uuid::new_v4().simple());
        block_on(async {
            let mut admin = PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of DATABASE_URL: {e}"));
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .await
                .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
            let _ = admin.close().await;
        });
        PgEnv {
            dir: tempfile::tempdir().unwrap(),
            url: with_database(&server, &name),
            name,
            now: None,
        }
    }

    /// A fresh database, initialised with a key file in `./rotation-data`.
    fn init() -> PgEnv {
        let env = PgEnv::new();
        let report = env.json(&["init"]);
        assert_eq!(report["key_file"], "./rotation-data/master.key", "{report}");
        assert!(
            !report["store"].as_str().unwrap().contains(&password_of(&env.url)),
            "init shows the store URL without its password: {report}"
        );
        env
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("rotation-data").join("master.key")
    }

    /// `rotation` in the working directory, on this database, with a clean environment.
    fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("rotation"));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("ROTATION_") {
                c.env_remove(k);
            }
        }
        c.env("ROTATION_STORE", &self.url);
        if let Some(n) = &self.now {
            c.env("ROTATION_NOW", n);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`rotation {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--output json` and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{text}"))
    }

    /// Runs, expects failure, and returns the reason of `error[<reason>]` and stderr.
    fn fails(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`rotation {}` succeeded unexpectedly",
            args.join(" ")
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let reason = stderr
            .lines()
            .find_map(|l| l.strip_prefix("error[").and_then(|r| r.split(']').next()))
            .unwrap_or_else(|| panic!("no error[reason] in stderr: {stderr}"))
            .to_owned();
        (reason, stderr)
    }

    /// A direct connection to the database, bypassing the application.
    fn sql(&self) -> SqlProbe {
        SqlProbe { url: self.url.clone() }
    }

    /// An engine on this store through the library, unlocked with the key
    /// file like the CLI does, with its clock at `now`.
    async fn engine(&self, now: Option<rotation_core::time::Timestamp>) -> Engine {
        let store = Arc::new(PgStore::connect(&self.url).await.unwrap());
        let params: KekParams = serde_json::from_slice(&store.get_meta("kek").await.unwrap().unwrap()).unwrap();
        let key = hex::decode(std::fs::read_to_string(self.key_file()).unwrap().trim()).unwrap();
        let kek = Kek::unlock(&MasterSecret::KeyFile(SecretBox::new(Box::new(key))), &params).unwrap();
        let clock: Arc<dyn Clock> = match now {
            Some(at) => Arc::new(FixedClock(at)),
            None => Arc::new(SystemClock),
        };
        Engine::new(
            store,
            Arc::new(RingCrypto::new()),
            Arc::new(LocalCustody::new(kek)),
            clock,
            EngineConfig::default(),
        )
    }
}

impl Drop for PgEnv {
    fn drop(&mut self) {
        let server = server_url();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                let done = admin.execute(sqlx::AssertSqlSafe(sql)).await.ok();
                let _ = admin.close().await;
                done
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: test database {} was not dropped", self.name);
        }
    }
}

/// Counts through a direct connection.
struct SqlProbe {
    url: String,
}

impl SqlProbe {
    /// `(text, count)` rows of a `SELECT key, COUNT(*) ... GROUP BY key`.
    fn grouped(&self, statement: &'static str) -> BTreeMap<String, i64> {
        let url = self.url.clone();
        block_on(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            let rows: Vec<(String, i64)> = sqlx::query_as(statement).fetch_all(&mut c).await.unwrap();
            rows.into_iter().collect()
        })
    }

    /// The single number a `SELECT COUNT(*) ...` returns.
    fn count(&self, statement: &'static str) -> i64 {
        let url = self.url.clone();
        block_on(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(statement).fetch_one(&mut c).await.unwrap()
        })
    }
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn password_of(url: &str) -> String {
    let start = url.find("://").unwrap() + 3;
    let at = url.rfind('@').unwrap();
    url[start..at]
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default()
}

#[test]
fn every_command_works_on_postgres() {
    let mut env = PgEnv::init();
    let (reason, stderr) = env.fails(&["init"]);
    assert_eq!(reason, "already_exists", "{stderr}");
    assert!(
        !stderr.contains(&password_of(&env.url)),
        "no password in errors: {stderr}"
    );

    env.ok(&["authority", "create", "org-acme", "--name", "Acme"]);
    assert_eq!(env.json(&["authority", "list"]).as_array().unwrap().len(), 1);
    env.ok(&[
        "chain",
        "issue",
        "agent-1",
        "--authority",
        "org-acme",
        "--capability",
        "read:x",
    ]);
    env.ok(&[
        "chain",
        "issue",
        "agent-2",
        "--authority",
        "org-acme",
        "--capability",
        "read:x",
        "--delegate-to",
        "agent-1",
    ]);
    assert_eq!(
        env.json(&["chain", "list", "--authority", "org-acme"])
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let rotated = env.json(&["authority", "rotate", "org-acme"]);
    assert_eq!(rotated["chains_updated"], 2, "{rotated}");
    let verdicts = env.json(&["chain", "verify", "--all"]);
    assert!(
        verdicts.as_array().unwrap().iter().all(|v| v["valid"] == true),
        "{verdicts}"
    );
    assert_eq!(
        env.json(&["authority", "jwks", "org-acme"])["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_ne!(env.json(&["authority", "status", "org-acme"])["status"], "in_progress");
    env.ok(&["authority", "show", "org-acme"]);
    env.ok(&["authority", "schedule", "org-acme", "--at", &hours_from_now(2)]);
    assert_eq!(env.json(&["schedule", "list"]).as_array().unwrap().len(), 1);

    env.ok(&["keyring", "create", "payments"]);
    env.ok(&[
        "value",
        "encrypt",
        "--keyring",
        "payments",
        "db/password",
        "--value",
        "s3cret",
    ]);
    env.ok(&["keyring", "rotate", "payments"]);
    env.ok(&["value", "encrypt", "--keyring", "payments", "api/key", "--value", "k-2"]);
    env.ok(&["keyring", "migrate", "payments"]);
    assert_eq!(
        env.ok(&["value", "decrypt", "--keyring", "payments", "db/password"])
            .trim(),
        "s3cret"
    );
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 2);
    env.ok(&["keyring", "report", "payments"]);
    env.ok(&["keyring", "health-check", "payments"]);
    env.ok(&["policy", "set", "busy", "--max-uses", "5"]);
    assert_eq!(env.json(&["policy", "list"]).as_array().unwrap().len(), 1);

    // Later, when the schedule is due, run-due performs it.
    env.now = Some(hours_from_now(3));
    let outcomes = env.json(&["schedule", "run-due"]);
    assert!(
        outcomes.as_array().unwrap().iter().any(|o| !o["result"].is_null()),
        "{outcomes}"
    );
    env.now = None;
    assert_eq!(
        env.json(&["audit", "list", "--limit", "5"]).as_array().unwrap().len(),
        5
    );
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    env.ok(&["quickstart"]);
}

#[test]
fn connection_failures_are_backend_unavailable_without_the_password() {
    let env = PgEnv::new();
    let password = password_of(&env.url);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("postgres://rot:{password}@127.0.0.1:{port}/db"),
        format!("postgres://rot:{password}@127.0.0.1:notaport/db"),
        env.url.replace(&format!(":{password}@"), ":wrong-password@"),
    ] {
        let out = env.cmd().args(["--store", &url, "authority", "list"]).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error[backend_unavailable]:"), "{stderr}");
        assert!(!stderr.contains(&password), "the password is not shown: {stderr}");
        assert!(!stderr.contains("wrong-password"), "no password is shown: {stderr}");
        assert!(stderr.contains(":***@"), "the URL is shown redacted: {stderr}");
    }
    // An uninitialised database is not an outage.
    let (reason, stderr) = env.fails(&["authority", "list"]);
    assert_eq!(reason, "not_found", "{stderr}");
    assert!(stderr.contains("rotation init"), "{stderr}");
}

/// Authorities in the race.
const RACE_TARGETS: usize = 200;
/// Processes racing.
const RACERS: usize = 8;

#[test]
fn eight_processes_running_due_schedules_rotate_each_target_exactly_once() {
    let mut env = PgEnv::init();
    let now = truncate(chrono::Utc::now());
    block_on(async {
        let engine = env.engine(Some(now)).await;
        for i in 0..RACE_TARGETS {
            let id = AuthorityId::parse(format!("org-{i:03}")).unwrap();
            engine
                .create_authority(NewAuthority {
                    id: id.clone(),
                    name: None,
                    rotation_period_days: None,
                    grace_period_hours: None,
                })
                .await
                .unwrap();
            engine
                .schedule_rotation(&id, now + chrono::TimeDelta::hours(1))
                .await
                .unwrap();
        }
    });
    assert_eq!(
        env.json(&["schedule", "list"]).as_array().unwrap().len(),
        RACE_TARGETS,
        "every schedule pending"
    );

    // Two hours later every schedule is due; all processes start at once.
    env.now = Some((now + chrono::TimeDelta::hours(2)).to_rfc3339());
    let started = Instant::now();
    let racers: Vec<Child> = (0..RACERS)
        .map(|_| {
            env.cmd()
                .args(["--output", "json", "schedule", "run-due"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut completed_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut busy_processes = 0;
    for (n, racer) in racers.into_iter().enumerate() {
        let out = racer.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "racer {n} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut mine = 0;
        for o in outcomes.as_array().unwrap() {
            if !o["result"].is_null() {
                *completed_by
                    .entry(o["target"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                mine += 1;
            }
        }
        busy_processes += usize::from(mine > 0);
    }
    eprintln!(
        "race: {RACERS} processes, {RACE_TARGETS} targets, {:.1}s, {busy_processes} processes rotated something",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        completed_by.len(),
        RACE_TARGETS,
        "every target was rotated by some process"
    );
    assert!(
        completed_by.values().all(|&n| n == 1),
        "no target reported completed twice: {:?}",
        completed_by.iter().filter(|(_, n)| **n != 1).collect::<Vec<_>>()
    );
    assert!(
        busy_processes >= 2,
        "the work was shared ({busy_processes} process did it all)"
    );

    // The journal and the audit log agree: one completed run and one
    // rotation_completed event per target, nothing left in flight.
    let sql = env.sql();
    let runs = sql.grouped("SELECT target, COUNT(*) FROM runs GROUP BY target");
    assert_eq!(runs.len(), RACE_TARGETS);
    assert!(runs.values().all(|&n| n == 1), "one run per target: {runs:?}");
    assert_eq!(
        sql.count("SELECT COUNT(*) FROM runs WHERE state <> 'completed'"),
        0,
        "every run completed, none left non-terminal"
    );
    let completed =
        sql.grouped("SELECT target, COUNT(*) FROM audit_events WHERE event = 'rotation_completed' GROUP BY target");
    let started_events =
        sql.grouped("SELECT target, COUNT(*) FROM audit_events WHERE event = 'rotation_started' GROUP BY target");
    let run_targets: HashSet<&String> = runs.keys().collect();
    assert_eq!(
        completed.keys().collect::<HashSet<_>>(),
        run_targets,
        "audit and journal name the same targets"
    );
    assert!(
        completed.values().all(|&n| n == 1),
        "one rotation_completed per target: {completed:?}"
    );
    assert!(
        started_events.values().all(|&n| n == 1),
        "one rotation_started per target"
    );
    assert_eq!(
        sql.count("SELECT COUNT(*) FROM schedules WHERE state <> 'done'"),
        0,
        "every schedule done"
    );
    let keys = sql.grouped("SELECT authority_id, COUNT(*) FROM signing_keys GROUP BY authority_id");
    assert!(
        keys.values().all(|&n| n == 2),
        "each authority has its old and one new key: {keys:?}"
    );

    let verified = env.json(&["audit", "verify"]);
    assert_eq!(verified["valid"], true, "{verified}");
    // Running again finds nothing to do.
    assert!(env.json(&["schedule", "run-due"]).as_array().unwrap().is_empty());
}

/// Records issued so that a rotation takes long enough to be caught in flight.
const RECORDS: usize = 40_000;

/// Creates `org-acme` with RECORDS trust-chain records through the library.
fn seed_chains(env: &PgEnv) {
    block_on(async {
        let engine = env.engine(None).await;
        let id = AuthorityId::parse("org-acme").unwrap();
        engine
            .create_authority(NewAuthority {
                id: id.clone(),
                name: None,
                rotation_period_days: None,
                grace_period_hours: None,
            })
            .await
            .unwrap();
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
    });
}

/// Starts `authority rotate org-acme` and returns once its run is in progress.
fn start_rotation_in_flight(env: &PgEnv) -> Child {
    let mut child = env
        .cmd()
        .args(["--output", "json", "authority", "rotate", "org-acme"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = env.json(&["authority", "status", "org-acme"]);
        if status["status"] == "in_progress" {
            return child;
        }
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("the rotation finished ({exit}) before it was seen in progress; raise RECORDS");
        }
        assert!(Instant::now() < deadline, "rotation never showed as in progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_rotation_killed_mid_way_is_resumed_by_another_process() {
    let mut env = PgEnv::init();
    seed_chains(&env);
    let before = env.json(&["authority", "show", "org-acme"]);
    let mut first = start_rotation_in_flight(&env);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // While the lease (60 s) holds, nobody else may drive the run.
    let status = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(status["status"], "in_progress");
    let (reason, _) = env.fails(&["authority", "rotate", "org-acme"]);
    assert_eq!(reason, "concurrent_rotation");
    assert_eq!(
        env.sql().count(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        0,
        "the killed process holds no lock"
    );

    // After it expires, the next rotate resumes and finishes that run.
    env.now = Some(hours_from_now(1));
    let resumed = env.json(&["authority", "rotate", "org-acme"]);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["rotation_id"], status["active_rotation_id"]);
    assert_eq!(resumed["old_key_id"], before["current_key_id"]);
    assert_eq!(resumed["chains_updated"], (RECORDS / 2) as u64);
    let shown = env.json(&["authority", "show", "org-acme"]);
    let keys = shown["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "no key lost or left over: {keys:?}");
    assert_eq!(shown["current_key_id"], resumed["new_key_id"]);
    let verdicts = env.json(&["chain", "verify", "--all"]);
    assert_eq!(verdicts.as_array().unwrap().len(), RECORDS / 2);
    assert!(verdicts.as_array().unwrap().iter().all(|v| v["valid"] == true));
    assert_eq!(
        env.sql()
            .count("SELECT COUNT(*) FROM trust_records WHERE key_id <> (SELECT current_key_id FROM authorities)"),
        0,
        "every record is signed by the new key"
    );
    assert_eq!(
        env.sql()
            .count("SELECT COUNT(*) FROM runs WHERE state NOT IN ('completed', 'rolled_back', 'failed')"),
        0,
        "no run left non-terminal"
    );
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    let events = env.json(&["audit", "list", "--limit", "5"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"rotation_resumed"), "{kinds:?}");
}

/// Checks that the interrupted rotation of `org-acme` is finished by a
/// rotate after its lease expired, and that everything verifies.
fn resume_and_verify(env: &mut PgEnv, before: &Value, active_rotation: &Value) {
    env.now = Some(hours_from_now(1));
    let resumed = env.json(&["authority", "rotate", "org-acme"]);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(&resumed["rotation_id"], active_rotation);
    assert_eq!(resumed["old_key_id"], before["current_key_id"]);
    assert_eq!(resumed["chains_updated"], (RECORDS / 2) as u64);
    let verdicts = env.json(&["chain", "verify", "--all"]);
    assert_eq!(verdicts.as_array().unwrap().len(), RECORDS / 2);
    assert!(verdicts.as_array().unwrap().iter().all(|v| v["valid"] == true));
    assert_eq!(
        env.sql()
            .count("SELECT COUNT(*) FROM runs WHERE state NOT IN ('completed', 'rolled_back', 'failed')"),
        0,
        "no run left non-terminal"
    );
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
}

#[test]
fn a_server_that_goes_away_mid_rotation_is_backend_unavailable_and_the_run_resumes() {
    let mut env = PgEnv::init();
    seed_chains(&env);
    let before = env.json(&["authority", "show", "org-acme"]);
    let rotation = start_rotation_in_flight(&env);
    let status = env.json(&["authority", "status", "org-acme"]);

    // The database goes away under the running process: no new sessions,
    // and every open one is ended (as a restart or a failover would).
    let admin_sql = |statement: String| {
        let server = server_url();
        block_on(async move {
            let mut admin = PgConnection::connect(&server).await.unwrap();
            admin.execute(sqlx::AssertSqlSafe(statement)).await.unwrap();
            let _ = admin.close().await;
        })
    };
    admin_sql(format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false", env.name));
    admin_sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        env.name
    ));
    let out = rotation.wait_with_output().unwrap();
    admin_sql(format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true", env.name));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the rotation cannot finish without its database");
    eprintln!("rotation while its database went away: {}", stderr.trim());
    assert!(stderr.contains("error[backend_unavailable]: "), "{stderr}");
    assert!(stderr.contains("PostgreSQL store"), "says which store: {stderr}");
    assert!(!stderr.contains(&password_of(&env.url)), "no password: {stderr}");

    // Nothing half-written: the run waits, journaled, for its lease to end.
    let after = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(after["status"], "in_progress", "{after}");
    assert_eq!(after["active_rotation_id"], status["active_rotation_id"]);
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    resume_and_verify(&mut env, &before, &status["active_rotation_id"]);
}

/// A keyring migration on PostgreSQL killed with SIGKILL part-way: every
/// value still decrypts (old or new version), and running it again in
/// another process finishes the job.
#[test]
fn a_migration_killed_mid_way_on_postgres_finishes_when_run_again() {
    const VALUES: usize = 40_000;
    let env = PgEnv::init();
    env.ok(&["keyring", "create", "payments"]);
    let input = env.dir.path().join("values.jsonl");
    let lines: Vec<String> = (0..VALUES)
        .map(|i| serde_json::json!({"id": format!("v-{i:07}"), "value": format!("secret {i}")}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    env.ok(&["value", "import", "--keyring", "payments", input.to_str().unwrap()]);
    env.ok(&["keyring", "rotate", "payments"]);

    let mut child = env
        .cmd()
        .args(["keyring", "migrate", "payments", "--batch-size", "50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let on_new = || {
        env.sql()
            .count("SELECT COUNT(*) FROM sealed_values WHERE key_version = 2")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while on_new() == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration finished before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "the migration never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let moved = on_new();
    assert!(
        moved > 0 && moved < VALUES as i64,
        "killed part-way: {moved} of {VALUES}"
    );
    assert_eq!(
        env.sql().count("SELECT COUNT(*) FROM sealed_values"),
        VALUES as i64,
        "no value lost"
    );

    let report = env.json(&["keyring", "migrate", "payments", "--batch-size", "1000"]);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["total"], VALUES as u64);
    assert_eq!(on_new(), VALUES as i64, "every value on the new version");
    let exported = env.dir.path().join("out.jsonl");
    env.ok(&[
        "value",
        "export",
        "--keyring",
        "payments",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap(),
        std::fs::read_to_string(&input).unwrap()
    );
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
}

/// The day-2 commands on PostgreSQL: quickstart, master-key rotation,
/// report, imported keys, retirement, history, backup into a file and
/// restore into another PostgreSQL database.
#[test]
fn day_two_commands_work_on_postgres() {
    let env = PgEnv::init();
    env.ok(&["quickstart"]);
    env.ok(&["keyring", "create", "payments"]);
    env.ok(&[
        "value",
        "encrypt",
        "--keyring",
        "payments",
        "db/password",
        "--value",
        "s3cret",
    ]);
    let key_file = env.dir.path().join("imported.hex");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    env.ok(&[
        "keyring",
        "import-key",
        "payments",
        "--key-file",
        key_file.to_str().unwrap(),
        "--version",
        "7",
    ]);
    env.ok(&["keyring", "migrate", "payments", "--retire-old"]);
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 7);
    assert!(
        !env.json(&["keyring", "history", "payments"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let report = env.run(&["--output", "json", "report"]);
    assert_eq!(
        report.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );

    let new_key = env.dir.path().join("new-master.key");
    let rotated = env.json(&["master-key", "rotate", "--new-key-file", new_key.to_str().unwrap()]);
    assert_eq!(rotated["generation"], 2);
    let (reason, _) = env.fails(&["value", "decrypt", "--keyring", "payments", "db/password"]);
    assert_eq!(reason, "unauthorized", "the old key file no longer opens the store");
    let with_new = |args: &[&str]| {
        let mut all = vec!["--master-key-file", new_key.to_str().unwrap()];
        all.extend_from_slice(args);
        env.ok(&all)
    };
    assert_eq!(
        with_new(&["value", "decrypt", "--keyring", "payments", "db/password"]),
        "s3cret"
    );
    with_new(&["authority", "rotate", "org-acme"]);

    let backup = env.dir.path().join("pg.backup");
    with_new(&["backup", "--out", backup.to_str().unwrap()]);
    let target = PgEnv::new();
    let mut restore = target.cmd();
    restore.args([
        "--master-key-file",
        new_key.to_str().unwrap(),
        "restore",
        "--from",
        backup.to_str().unwrap(),
    ]);
    let out = restore.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut verify = target.cmd();
    verify.args([
        "--master-key-file",
        new_key.to_str().unwrap(),
        "--output",
        "json",
        "value",
        "decrypt",
        "--keyring",
        "payments",
        "db/password",
    ]);
    let out = verify.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    let mut chains = target.cmd();
    chains.args(["chain", "verify", "--all"]);
    assert!(chains.output().unwrap().status.success());
    let mut audit = target.cmd();
    audit.args(["audit", "verify"]);
    assert!(audit.output().unwrap().status.success());
}
