//! Benchmark: rotate an authority whose trust chains hold N records (default
//! 10,000) on the embedded SQLite store, with local custody.
//!
//! `cargo xtask bench resign [RECORDS]`; results go to `docs/BENCHMARKS.md`.

use std::sync::Arc;
use std::time::Instant;

use rotation_core::engine::{IssueRequest, NewAuthority, RotateRequest};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use rotation_store_sqlite::SqliteStore;
use secrecy::SecretBox;

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(records));
}

async fn run(records: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = Arc::new(SqliteStore::connect(&url, true).await.expect("store"));
    let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![7u8; 32])));
    let (kek, _) = Kek::create(&secret).expect("kek");
    let engine = Engine::new(
        store,
        Arc::new(RingCrypto::new()),
        Arc::new(LocalCustody::new(kek)),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );
    let authority = AuthorityId::parse("org-bench").unwrap();
    engine
        .create_authority(NewAuthority {
            id: authority.clone(),
            name: None,
            rotation_period_days: None,
            grace_period_hours: None,
        })
        .await
        .expect("authority");

    // Four records per agent: genesis, two capabilities, one delegation.
    let agents = records.div_ceil(4);
    let requests: Vec<IssueRequest> = (0..agents)
        .map(|i| IssueRequest {
            agent_id: AgentId::parse(format!("agent-{i:07}")).unwrap(),
            authority_id: authority.clone(),
            capabilities: vec!["read:data".into(), "write:data".into()],
            delegate_to: Some(AgentId::parse(format!("agent-{:07}", (i + 1) % agents)).unwrap()),
        })
        .collect();
    let started = Instant::now();
    let mut issued = 0;
    for chunk in requests.chunks(2_000) {
        issued += engine.issue_chains(chunk).await.expect("issue").len();
    }
    let issue_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let result = engine
        .rotate_key(RotateRequest::new(authority.clone()))
        .await
        .expect("rotate");
    let rotate_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let verdicts = engine.verify_all_chains().await.expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    assert!(verdicts.iter().all(|v| v.valid), "every chain verifies after rotation");

    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("machine: {cpus} CPUs, {model}");
    println!("records: {issued} in {} chains", result.chains_updated);
    println!(
        "issue:   {issue_secs:.3} s ({:.0} records/s)",
        issued as f64 / issue_secs
    );
    println!(
        "rotate:  {rotate_secs:.3} s ({:.0} records re-signed/s, chains_updated = {})",
        issued as f64 / rotate_secs,
        result.chains_updated
    );
    println!(
        "verify:  {verify_secs:.3} s ({:.0} records/s)",
        issued as f64 / verify_secs
    );
}
