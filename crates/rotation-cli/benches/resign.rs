//! Benchmark: rotate an authority whose trust chains hold N records (default
//! 10,000), with local custody, on the embedded SQLite store or, with
//! `ROTATION_BENCH_STORE=postgres://...`, on a fresh database created on
//! that PostgreSQL server (and dropped afterwards).
//!
//! `cargo xtask bench resign [RECORDS]` (SQLite) or
//! `cargo xtask bench resign-pg [RECORDS]` (PostgreSQL); results go to
//! `docs/BENCHMARKS.md`. After the rotation it also times the store alone:
//! reading every record in pages of 1,000 and rewriting them in re-sign
//! batches of 1,000 (no crypto), to show what bounds the rotation.

use std::sync::Arc;
use std::time::Instant;

use rotation_core::engine::{IssueRequest, NewAuthority, RotateRequest};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::ports::RecordQuery;
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use secrecy::SecretBox;
use sqlx::{Connection, PgConnection};

mod common;

/// Records per page and per re-sign batch (the engine's default batch).
const BATCH: usize = 1000;

/// CPU seconds (user + system) process `pid` has used so far, where the
/// platform says (Linux).
fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU time of this process and, for a PostgreSQL server on this machine,
/// of the server's processes: with wall time it shows whether a phase is
/// bound by this process, by the server, or by neither (waiting on I/O).
struct Meter {
    server: Option<PgConnection>,
}

/// CPU seconds at one instant: this process, the server.
type Sample = (Option<f64>, Option<f64>);

impl Meter {
    async fn sample(&mut self) -> Sample {
        let mine = cpu_seconds_of("self");
        let server = match &mut self.server {
            Some(c) => {
                let pids: Vec<i32> =
                    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
                        .fetch_all(&mut *c)
                        .await
                        .unwrap_or_default();
                pids.iter()
                    .map(|p| cpu_seconds_of(&p.to_string()))
                    .try_fold(0.0, |sum, cpu| cpu.map(|c| sum + c))
                    .filter(|_| !pids.is_empty())
            }
            None => None,
        };
        (mine, server)
    }

    /// `", this process x.xx CPU s, server y.yy CPU s"` since `start`, as far as known.
    async fn since(&mut self, start: Sample) -> String {
        let now = self.sample().await;
        let mut out = String::new();
        if let (Some(a), Some(b)) = (start.0, now.0) {
            out.push_str(&format!(", this process {:.2} CPU s", b - a));
        }
        if let (Some(a), Some(b)) = (start.1, now.1) {
            out.push_str(&format!(", server {:.2} CPU s", b - a));
        }
        out
    }
}

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
    let (store, bench_db) = common::open_store(dir.path()).await;
    let mut meter = Meter {
        server: match &bench_db {
            Some(db) => PgConnection::connect(&db.url).await.ok(),
            None => None,
        },
    };
    let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![7u8; 32])));
    let (kek, _) = Kek::create(&secret).expect("kek");
    let engine = Engine::new(
        store.clone(),
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
    let cpu = meter.sample().await;
    let mut issued = 0;
    for chunk in requests.chunks(2_000) {
        issued += engine.issue_chains(chunk).await.expect("issue").len();
    }
    let issue_secs = started.elapsed().as_secs_f64();
    let issue_cpu = meter.since(cpu).await;

    let started = Instant::now();
    let cpu = meter.sample().await;
    let result = engine
        .rotate_key(RotateRequest::new(authority.clone()))
        .await
        .expect("rotate");
    let rotate_secs = started.elapsed().as_secs_f64();
    let rotate_cpu = meter.since(cpu).await;

    let started = Instant::now();
    let cpu = meter.sample().await;
    let verdicts = engine.verify_all_chains().await.expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    let verify_cpu = meter.since(cpu).await;
    assert!(verdicts.iter().all(|v| v.valid), "every chain verifies after rotation");

    // The store alone: read everything in pages, then rewrite every record
    // (unchanged, still under the new key) in re-sign batches, no crypto.
    let started = Instant::now();
    let cpu = meter.sample().await;
    let mut all = Vec::with_capacity(issued);
    let mut query = RecordQuery {
        authority: Some(authority.clone()),
        limit: BATCH,
        ..RecordQuery::default()
    };
    loop {
        let page = store.list_records(&query).await.expect("list");
        let Some(last) = page.last() else { break };
        query.after = Some((last.agent_id.clone(), last.id));
        all.extend(page);
    }
    let read_secs = started.elapsed().as_secs_f64();
    let read_cpu = meter.since(cpu).await;
    let started = Instant::now();
    let cpu = meter.sample().await;
    let new_key = [result.new_key_id.clone()];
    let mut rewritten = 0;
    for batch in all.chunks(BATCH) {
        let mut tx = store.begin().await.expect("begin");
        rewritten += tx.resign_records(&new_key, batch).await.expect("rewrite");
        tx.commit().await.expect("commit");
    }
    let write_secs = started.elapsed().as_secs_f64();
    let write_cpu = meter.since(cpu).await;
    assert_eq!(rewritten as usize, all.len());

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
        "issue:   {issue_secs:.3} s ({:.0} records/s{issue_cpu})",
        issued as f64 / issue_secs
    );
    println!(
        "rotate:  {rotate_secs:.3} s ({:.0} records re-signed/s, chains_updated = {}{rotate_cpu})",
        issued as f64 / rotate_secs,
        result.chains_updated
    );
    println!(
        "verify:  {verify_secs:.3} s ({:.0} records/s{verify_cpu})",
        issued as f64 / verify_secs
    );
    println!(
        "store:   read {:.3} s ({:.0} records/s in pages of {BATCH}{read_cpu}), rewrite {:.3} s ({:.0} records/s \
         in committed batches of {BATCH}{write_cpu})",
        read_secs,
        all.len() as f64 / read_secs,
        write_secs,
        all.len() as f64 / write_secs
    );
    if let Some(db) = bench_db {
        if let Some(c) = meter.server.take() {
            let _ = c.close().await;
        }
        drop(engine);
        drop(store);
        db.drop_now().await;
    }
}
