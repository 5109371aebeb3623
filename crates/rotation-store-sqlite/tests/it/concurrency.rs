//! Transactions: rollback on drop, isolation, serialisation across stores.

use std::time::{Duration, Instant};

use rotation_core::ports::StateStore;
use rotation_store_sqlite::SqliteStore;

use crate::support::{authority, temp_store};

#[tokio::test]
async fn dropped_transaction_rolls_back() {
    let (_dir, store, _url) = temp_store().await;
    let a = authority("org-a", "k1");
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&a).await.unwrap();
    tx.put_meta("m", b"v").await.unwrap();
    assert!(
        store.get_authority(&a.id).await.unwrap().is_none(),
        "uncommitted writes are invisible"
    );
    drop(tx);
    assert!(store.get_authority(&a.id).await.unwrap().is_none());
    assert_eq!(store.get_meta("m").await.unwrap(), None);

    // The store is usable again at once.
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&a).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.get_authority(&a.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_stores_on_one_file_serialise() {
    let (_dir, first, url) = temp_store().await;
    let second = SqliteStore::connect(&url, false).await.unwrap();
    const HOLD: Duration = Duration::from_millis(400);

    let mut tx = first.begin().await.unwrap();
    tx.insert_authority(&authority("org-a", "k1")).await.unwrap();
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        let mut tx = second.begin().await.expect("second writer waits, no SQLITE_BUSY");
        let waited = started.elapsed();
        // It sees the first writer's commit.
        let seen = tx.get_authority(&authority("org-a", "k1").id).await.unwrap();
        tx.insert_authority(&authority("org-b", "k1")).await.unwrap();
        tx.commit().await.unwrap();
        (waited, seen.is_some())
    });
    tokio::time::sleep(HOLD).await;
    // Reads go on while a writer holds the lock.
    assert!(first.list_authorities().await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let (waited, seen) = waiter.await.unwrap();
    assert!(waited >= HOLD, "second writer began after {waited:?}");
    assert!(seen, "second writer sees the first one's commit");
    assert_eq!(first.list_authorities().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_one_store_serialise() {
    let (_dir, store, _url) = temp_store().await;
    let counter = authority("counter", "k");
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&counter).await.unwrap();
    tx.commit().await.unwrap();
    // More writers than pooled connections, each a read-modify-write.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let id = counter.id.clone();
        handles.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let mut a = tx.get_authority(&id).await.unwrap().unwrap();
            a.rotation_period_days += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.update_authority(&a).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let a = store.get_authority(&counter.id).await.unwrap().unwrap();
    assert_eq!(
        a.rotation_period_days,
        counter.rotation_period_days + 8,
        "no lost update"
    );
}
