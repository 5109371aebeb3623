//! Opening stores and losing the server: every failure to reach it is
//! `backend_unavailable`, with a clear message that never shows the
//! password, and leaves consistent state behind.

use std::time::{Duration, Instant};

use rotation_core::ports::StateStore;
use rotation_core::{Error, Reason};
use rotation_store_pg::{PgStore, redact_url};
use rotation_testkit::fixtures::authority;
use sqlx::Executor;

use crate::support::{TestDb, server_url, with_database};

const SECRET: &str = "hunter2-NOT-SHOWN";

async fn connect_err(url: &str) -> Error {
    match PgStore::connect(url).await {
        Ok(_) => panic!("connecting to {} must fail", redact_url(url)),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_unavailable_without(err: &Error, secret: &str) {
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(!err.message.contains(secret), "the message shows the password: {err}");
    assert!(!err.to_string().contains(secret), "the error shows the password: {err}");
    assert!(
        !format!("{err:?}").contains(secret),
        "the debug form shows the password: {err:?}"
    );
}

/// A TCP port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_backend_unavailable() {
    for url in [
        format!("postgres://rot:{SECRET}@localhost:notaport/db"),
        format!("postgres://rot:{SECRET}@[::1/db"),
    ] {
        let err = connect_err(&url).await;
        assert_unavailable_without(&err, SECRET);
        assert!(err.message.contains("invalid PostgreSQL store URL"), "{err}");
        assert!(err.message.contains("rot:***@"), "the URL is shown redacted: {err}");
    }
}

#[tokio::test]
async fn a_url_of_another_scheme_is_backend_unavailable() {
    let err = connect_err(&format!("mysql://rot:{SECRET}@localhost/db")).await;
    assert_unavailable_without(&err, SECRET);
    assert!(err.message.contains("not a PostgreSQL URL"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_down_is_backend_unavailable() {
    let port = closed_port();
    let started = Instant::now();
    let err = connect_err(&format!("postgres://rot:{SECRET}@127.0.0.1:{port}/db")).await;
    assert_unavailable_without(&err, SECRET);
    assert!(
        err.message.contains(&format!("127.0.0.1:{port}")),
        "names the server: {err}"
    );
    assert!(err.message.contains("is the server running"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_password_is_backend_unavailable_and_not_shown() {
    let server = server_url();
    let start = server.find("://").unwrap() + 3;
    let at = server.rfind('@').expect("DATABASE_URL has user info");
    let user = server[start..at].split(':').next().unwrap();
    let url = format!("{}{user}:{SECRET}{}", &server[..start], &server[at..]);
    let err = connect_err(&url).await;
    assert_unavailable_without(&err, SECRET);
    assert!(err.message.contains("password"), "says what is wrong: {err}");
    // Nor is the real password.
    if let Some(real) = server[start..at].split(':').nth(1) {
        assert!(!err.message.contains(real), "{err}");
    }
}

#[tokio::test]
async fn a_missing_database_is_backend_unavailable_with_a_hint() {
    let url = with_database(&server_url(), "no_such_database_for_rotation");
    let err = connect_err(&url).await;
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(err.message.contains("CREATE DATABASE"), "{err}");
}

#[tokio::test]
async fn migrations_apply_once_with_concurrent_connects() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) }));
    }
    for t in tasks {
        t.await.unwrap().expect("every concurrent connect succeeds");
    }
    let store = db.store().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files, "each migration applied exactly once");
    assert_eq!(
        store.audit_head().await.unwrap(),
        None,
        "the head row reads as an empty log"
    );
}

#[tokio::test]
async fn a_malformed_stored_value_is_tampered() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let a = authority("org-acme", "org-acme.k1");
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&a).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE authorities SET current_key_id = 'not a key id'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get_authority(&a.id).await.unwrap_err();
    assert_eq!(err.reason, Reason::Tampered);
    assert!(err.message.contains("authorities row org-acme"), "{err}");
    assert!(err.message.contains("current_key_id"), "{err}");
}

/// Ends every session of the test database but the caller's, as a server
/// restart or a network cut would.
async fn kill_sessions(db: &TestDb) -> u64 {
    let mut admin = crate::support::admin(&server_url()).await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    killed.len() as u64
}

#[tokio::test]
async fn a_server_that_goes_away_mid_transaction_is_backend_unavailable_and_consistent() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let kept = authority("org-kept", "org-kept.k1");
    let lost = authority("org-lost", "org-lost.k1");
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&kept).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&lost).await.unwrap();
    assert!(kill_sessions(&db).await >= 1, "the transaction's session was ended");
    let err = tx
        .insert_authority(&authority("org-later", "org-later.k1"))
        .await
        .expect_err("the session is gone");
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(err.message.contains("PostgreSQL store"), "{err}");
    let commit = tx.commit().await.expect_err("nothing to commit on a dead session");
    assert_eq!(commit.reason, Reason::BackendUnavailable, "{commit}");

    // The pool reconnects; the half-done transaction left nothing behind.
    let names: Vec<String> = store
        .list_authorities()
        .await
        .expect("the store reconnects")
        .into_iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(names, vec!["org-kept".to_owned()]);
    let mut tx = store.begin().await.expect("writes work again");
    tx.insert_authority(&lost).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_closed_store_is_backend_unavailable() {
    let db = TestDb::create().await;
    let store = db.store().await;
    store.close().await;
    let err = store.list_authorities().await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    let err = match store.begin().await {
        Ok(_) => panic!("begin on a closed store"),
        Err(e) => e,
    };
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
}

#[tokio::test]
async fn reads_see_committed_data_only_and_the_pool_survives_dropped_transactions() {
    let db = TestDb::create().await;
    let store = db.store().await;
    // More dropped transactions than pooled connections: each must be rolled
    // back and release the write lock.
    for i in 0..20 {
        let mut tx = store.begin().await.unwrap();
        tx.insert_authority(&authority(&format!("org-{i}"), &format!("org-{i}.k1")))
            .await
            .unwrap();
        drop(tx);
    }
    assert!(store.list_authorities().await.unwrap().is_empty());
    let mut raw = db.raw().await;
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(open, 0, "no advisory lock left held");
    raw.execute("SELECT 1").await.unwrap();
}
