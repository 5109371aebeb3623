//! Shared by the benchmarks: a fresh PostgreSQL database for one run.

use std::sync::Arc;

use rotation_core::ports::StateStore;
use rotation_store_pg::PgStore;
use rotation_store_sqlite::SqliteStore;
use sqlx::{Connection, Executor, PgConnection};

/// The store of a benchmark run: PostgreSQL when `ROTATION_BENCH_STORE`
/// names a server (on a fresh database), otherwise SQLite in `dir`.
pub(crate) async fn open_store(dir: &std::path::Path) -> (Arc<dyn StateStore>, Option<BenchDb>) {
    match std::env::var("ROTATION_BENCH_STORE") {
        Ok(server) if server.starts_with("postgres://") || server.starts_with("postgresql://") => {
            let (db, url) = BenchDb::create(&server).await;
            (Arc::new(PgStore::connect(&url).await.expect("store")), Some(db))
        }
        Ok(other) if !other.is_empty() => panic!("ROTATION_BENCH_STORE must be a postgres:// URL, got {other:?}"),
        _ => {
            let url = format!("sqlite://{}/bench.db", dir.display());
            println!("store:   SQLite (WAL, synchronous=NORMAL) in {}", dir.display());
            (Arc::new(SqliteStore::connect(&url, true).await.expect("store")), None)
        }
    }
}

/// A PostgreSQL database created for one run, dropped by [`BenchDb::drop_now`].
pub(crate) struct BenchDb {
    server: String,
    name: String,
    /// URL of the database.
    #[allow(
        dead_code,
        reason = "read by the resign benchmark only; each benchmark compiles this module"
    )]
    pub(crate) url: String,
}

impl BenchDb {
    pub(crate) async fn create(server: &str) -> (BenchDb, String) {
        let name = format!("rotation_bench_{}", std::process::id());
        let mut admin = PgConnection::connect(server)
            .await
            .expect("connect to ROTATION_BENCH_STORE");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await
            .expect("drop an old bench database");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create the bench database");
        let settings: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting FROM pg_settings WHERE name IN \
             ('server_version', 'fsync', 'synchronous_commit', 'shared_buffers', 'wal_level') ORDER BY name",
        )
        .fetch_all(&mut admin)
        .await
        .expect("server settings");
        let _ = admin.close().await;
        let settings: Vec<String> = settings.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("store:   PostgreSQL ({})", settings.join(", "));
        let start = server.find("://").map_or(0, |i| i + 3);
        let end = server[start..].find('?').map_or(server.len(), |i| start + i);
        let path = server[start..end].find('/').map_or(end, |i| start + i);
        let url = format!("{}/{name}{}", &server[..path], &server[end..]);
        (
            BenchDb {
                server: server.to_owned(),
                name,
                url: url.clone(),
            },
            url,
        )
    }

    pub(crate) async fn drop_now(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.server).await {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .await;
            let _ = admin.close().await;
        }
    }
}

/// Peak resident set size of this process, from /proc (Linux).
#[allow(dead_code, reason = "used by some of the benchmarks that compile this module")]
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
