//! Opening stores: missing files, pragmas, migrations, tampered rows.

use rotation_core::Reason;
use rotation_core::ports::StateStore;
use rotation_store_sqlite::SqliteStore;

use crate::support::{authority, temp_store};

#[tokio::test]
async fn missing_file_without_create_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nope/rotation.db").display());
    let err = SqliteStore::connect(&url, false).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    assert!(err.message.contains("rotation init"), "{err}");
    assert!(!dir.path().join("nope").exists(), "nothing is created");
}

#[tokio::test]
async fn creates_then_reopens_with_pragmas() {
    let (_dir, store, url) = temp_store().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&authority("org-acme", "k1")).await.unwrap();
    tx.commit().await.unwrap();
    store.close().await;

    // Reopening applies no migration twice and finds the data.
    let store = SqliteStore::connect(&url, false).await.unwrap();
    assert!(
        store
            .get_authority(&authority("org-acme", "k1").id)
            .await
            .unwrap()
            .is_some()
    );
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
}

#[tokio::test]
async fn plain_path_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotation.db");
    SqliteStore::connect(path.to_str().unwrap(), true).await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn malformed_stored_value_is_tampered() {
    let (_dir, store, _url) = temp_store().await;
    let a = authority("org-acme", "k1");
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
