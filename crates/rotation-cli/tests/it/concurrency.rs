//! Two processes: one rotation at a time, and a killed rotation resumed.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::engine::{IssueRequest, NewAuthority};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, KekParams, LocalCustody, MasterSecret, RingCrypto};
use rotation_store_sqlite::SqliteStore;
use secrecy::SecretBox;

use crate::support::{Env, hours_from_now};

/// Records issued so that a rotation takes long enough to be caught in flight.
const RECORDS: usize = 40_000;

/// Creates `org-acme` with RECORDS trust-chain records through the library,
/// unlocking the store with its key file like the CLI does.
fn seed(env: &Env) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::connect(&env.store_url(), false).await.unwrap());
        let params: KekParams = serde_json::from_slice(
            &rotation_core::ports::StateStore::get_meta(store.as_ref(), "kek")
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        let key = hex::decode(std::fs::read_to_string(env.key_file()).unwrap().trim()).unwrap();
        let kek = Kek::unlock(&MasterSecret::KeyFile(SecretBox::new(Box::new(key))), &params).unwrap();
        let engine = Engine::new(
            store,
            Arc::new(RingCrypto::new()),
            Arc::new(LocalCustody::new(kek)),
            Arc::new(SystemClock),
            EngineConfig::default(),
        );
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
fn start_rotation_in_flight(env: &Env) -> Child {
    let mut child = env
        .std_cmd()
        .args(["--output", "json", "authority", "rotate", "org-acme"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
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
fn a_second_process_gets_concurrent_rotation() {
    let env = Env::init();
    seed(&env);
    let first = start_rotation_in_flight(&env);
    let (reason, stderr) = env.fails(&["authority", "rotate", "org-acme"]);
    assert_eq!(reason, "concurrent_rotation", "{stderr}");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["chains_updated"], (RECORDS / 2) as u64);
    // Once it is done, rotating again works.
    env.ok(&["authority", "rotate", "org-acme"]);
}

#[test]
fn a_killed_rotation_is_resumed_after_its_lease_expires() {
    let mut env = Env::init();
    seed(&env);
    let before = env.json(&["authority", "show", "org-acme"]);
    let mut first = start_rotation_in_flight(&env);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // While the lease (60 s) holds, nobody else may drive the run.
    let status = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(status["status"], "in_progress");
    let (reason, _) = env.fails(&["authority", "rotate", "org-acme"]);
    assert_eq!(reason, "concurrent_rotation");

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
