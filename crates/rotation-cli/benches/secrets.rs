//! Benchmark: put N secrets (default 1,000) and rotate each once with the
//! staged strategy (generate, write PENDING, verify `nonempty`, move the
//! labels, journal every step) on the store's own secret backend, then
//! report rotations/s, p50/p99 latency of one rotation, and peak RSS.
//!
//! `cargo bench -p rotation-cli --bench secrets -- [N] [CONCURRENCY]`
//! (SQLite; `ROTATION_BENCH_STORE=postgres://…` for PostgreSQL).
//! Results go to `docs/BENCHMARKS.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::policy::PolicySpec;
use rotation_core::secret::SecretValue;
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use secrecy::SecretBox;

mod common;

fn main() {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let n = numbers.next().unwrap_or(1_000);
    let concurrency = numbers.next().unwrap_or(1).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, concurrency));
}

async fn run(n: usize, concurrency: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, bench_db) = common::open_store(dir.path()).await;
    let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![7u8; 32])));
    let (kek, _) = Kek::create(&secret).expect("kek");
    let engine = Engine::new(
        store,
        Arc::new(RingCrypto::new()),
        Arc::new(LocalCustody::new(kek)),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );
    let policy = PolicySpec {
        interval_days: Some(30),
        strategy: Some("staged".into()),
        verify: vec!["nonempty".into()],
        ..PolicySpec::default()
    }
    .into_policy("bench", engine.now())
    .expect("policy");
    engine.set_policy(policy).await.expect("set policy");

    let started = Instant::now();
    for i in 0..n {
        engine
            .put_secret(PutSecret {
                path: format!("bench/s{i:06}"),
                value: Some(SecretValue::new(format!("initial-value-{i:06}"))),
                policy: Some("bench".into()),
                ..PutSecret::default()
            })
            .await
            .expect("put");
    }
    let put = started.elapsed();
    println!(
        "put:     {n} secrets in {:.2} s ({:.0}/s)",
        put.as_secs_f64(),
        n as f64 / put.as_secs_f64()
    );

    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    let chunks: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(n.div_ceil(concurrency))
        .map(<[usize]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(chunk.len());
            for i in chunk {
                let t = Instant::now();
                engine
                    .rotate_secret(SecretRotateRequest {
                        path: format!("bench/s{i:06}"),
                        ..SecretRotateRequest::default()
                    })
                    .await
                    .expect("rotate");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    let rotate = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "rotate:  {n} staged rotations in {:.2} s ({:.0}/s, concurrency {concurrency}); p50 {:.1} ms, p99 {:.1} ms",
        rotate.as_secs_f64(),
        n as f64 / rotate.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    println!("rss:     peak {:.0} MiB", common::peak_rss_mib());
    if let Some(db) = bench_db {
        db.drop_now().await;
    }
}
