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

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn database_wal_and_shm_are_private_in_an_open_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("rotation.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()), true)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&authority("org-acme", "k1")).await.unwrap();
    tx.commit().await.unwrap();
    for file in ["rotation.db", "rotation.db-wal", "rotation.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data), 0o755, "an existing directory keeps its mode");
    store.close().await;

    // Sidecars left readable (e.g. by an older version) are tightened on open.
    let wal = data.join("rotation.db-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()), false)
        .await
        .unwrap();
    assert_eq!(mode(&wal), 0o600);
    store.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_missing_store_directory_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new/sub/rotation.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()), true)
        .await
        .unwrap();
    assert_eq!(mode(&dir.path().join("new/sub")), 0o700);
    assert_eq!(mode(&db), 0o600);
    store.close().await;
}
