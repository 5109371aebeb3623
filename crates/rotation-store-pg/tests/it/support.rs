//! Per-test databases on the server named by `DATABASE_URL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rotation_store_pg::PgStore;
use sqlx::{Connection, Executor, PgConnection};

/// The server URL from `DATABASE_URL`; panics with instructions without it.
pub(crate) fn server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL store tests need a server. Run them with \
             `cargo xtask test` (which starts a throwaway PostgreSQL), or set \
             DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE for a role that may create databases"
        ),
    }
}

/// `url` with its database (path) replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").expect("a URL with a scheme") + 3;
    let rest = &url[authority_start..];
    let path_start = rest.find('/').map(|i| authority_start + i);
    let query_start = url[authority_start..].find('?').map(|i| authority_start + i);
    match (path_start, query_start) {
        (Some(p), q) if q.is_none_or(|q| p < q) => {
            let end = q.unwrap_or(url.len());
            format!("{}/{database}{}", &url[..p], &url[end..])
        }
        (_, Some(q)) => format!("{}/{database}{}", &url[..q], &url[q..]),
        (_, None) => format!("{url}/{database}"),
    }
}

/// A database created for one test, dropped when this value is dropped.
pub(crate) struct TestDb {
    pub(crate) name: String,
    pub(crate) url: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// Creates `t_<uuid>` on the server.
    pub(crate) async fn create() -> TestDb {
        let server = server_url();
        let name = format!(
            "t_{}_{}",
            uuid::Uuid::new_v4().simple(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = admin(&server).await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(&server, &name),
            name,
        }
    }

    /// A store on this database (migrated).
    pub(crate) async fn store(&self) -> PgStore {
        PgStore::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the store: {e}"))
    }

    /// A plain connection to this database, bypassing the store.
    pub(crate) async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"))
    }
}

/// A connection to the server's own database (from `DATABASE_URL`).
pub(crate) async fn admin(server: &str) -> PgConnection {
    PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of DATABASE_URL: {e}"))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // Dropped from async tests: use a runtime of our own on another thread.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let done = tokio::time::timeout(Duration::from_secs(30), admin.execute(sqlx::AssertSqlSafe(sql))).await;
                let _ = admin.close().await;
                done.ok()?.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: test database {} was not dropped", self.name);
        }
    }
}

#[test]
fn database_replacement_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:1/postgres", "x"),
        "postgres://u:p@h:1/x"
    );
    assert_eq!(with_database("postgres://u:p@h:1", "x"), "postgres://u:p@h:1/x");
    assert_eq!(
        with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
}
