//! Benchmark: import N values (default 1,000,000 of 64 bytes) into a keyring
//! on the embedded SQLite store, rotate, migrate every value to the new
//! version, and report values/s and the peak RSS of the process.
//!
//! `cargo xtask bench keyring [N] [BATCH]` (SQLite) or `cargo xtask bench
//! keyring-pg [N] [BATCH]` (PostgreSQL); results go to `docs/BENCHMARKS.md`.

use std::sync::Arc;
use std::time::Instant;

use rotation_core::engine::MigrateOptions;
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use secrecy::SecretBox;
use zeroize::Zeroizing;

mod common;

fn main() {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let n = numbers.next().unwrap_or(1_000_000);
    let batch = numbers.next().unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, batch));
}

async fn run(n: usize, batch: usize) {
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
    let name = KeyringName::parse("bench").unwrap();
    engine.create_keyring(&name).await.expect("keyring");

    let started = Instant::now();
    let mut next = 0usize;
    while next < n {
        let end = (next + batch).min(n);
        let values: Vec<(ValueId, Zeroizing<Vec<u8>>)> = (next..end)
            .map(|i| {
                let mut v = format!("value-{i:010}-").into_bytes();
                v.resize(64, b'x');
                (ValueId::parse(format!("secret/{i:010}")).unwrap(), Zeroizing::new(v))
            })
            .collect();
        engine.import_batch(&name, &values).await.expect("import");
        next = end;
    }
    let import_secs = started.elapsed().as_secs_f64();
    let rss_after_import = common::peak_rss_mib();

    let started = Instant::now();
    engine.rotate_keyring(&name, false, None).await.expect("rotate");
    let rotate_secs = started.elapsed().as_secs_f64();

    let options = MigrateOptions {
        batch_size: batch,
        ..MigrateOptions::default()
    };
    let started = Instant::now();
    let report = engine.migrate_keyring(&name, &options, &|_| {}).await.expect("migrate");
    let migrate_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.migrated, n as u64, "every value migrated");
    assert_eq!(report.failed, 0);

    let cpus = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    println!("machine: {cpus} CPUs");
    println!("values:  {n} x 64 bytes, batch {batch}");
    println!("import:  {import_secs:.2} s ({:.0} values/s)", n as f64 / import_secs);
    println!("rotate:  {:.1} ms", rotate_secs * 1000.0);
    println!("migrate: {migrate_secs:.2} s ({:.0} values/s)", n as f64 / migrate_secs);
    println!(
        "peak RSS: {:.1} MiB after import, {:.1} MiB at the end",
        rss_after_import,
        common::peak_rss_mib()
    );
    if let Some(db) = bench_db {
        db.drop_now().await;
    }
}
