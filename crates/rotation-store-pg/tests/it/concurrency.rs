//! Coordination between processes through the database: serialised
//! writers, a linear audit chain, disjoint schedule and outbox claims, lock
//! timeouts and the release of a crashed writer's lock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::Reason;
use rotation_core::audit::AuditEvent;
use rotation_core::audit::GENESIS_HASH;
use rotation_core::ports::{Notification, OutboxMessage, StateStore};
use rotation_store_pg::{PgStore, WRITER_LOCK};
use rotation_testkit::fixtures::{at, audit_event, authority, schedule, t0, target};
use sqlx::Executor;

use crate::support::TestDb;

/// Appends one event chained to the head this transaction locked.
async fn append_next(store: &PgStore, writer: usize) -> i64 {
    let mut tx = store.begin().await.expect("begin");
    let head = tx.audit_head().await.expect("head");
    let (seq, prev) = head.map_or((1, GENESIS_HASH.to_owned()), |h| (h.seq + 1, h.hash));
    // Give the other writers a chance to interleave if nothing stopped them.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut event: AuditEvent = audit_event(seq, t0());
    event.prev_hash = prev;
    event.hash = format!("{:032x}{:032x}", writer, seq);
    tx.append_audit(&event).await.expect("append");
    tx.commit().await.expect("commit");
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_appends_from_two_pools_stay_linear() {
    let db = TestDb::create().await;
    let stores = [db.store().await, db.store().await];
    const WRITERS: usize = 8;
    const EACH: usize = 15;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                append_next(&store, w).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let events = stores[0].list_audit(0, usize::MAX).await.unwrap();
    assert_eq!(events.len(), WRITERS * EACH, "no append lost");
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "sequence numbers are contiguous");
        assert_eq!(e.prev_hash, prev, "event {} chains to its predecessor", e.seq);
        prev = e.hash.clone();
    }
    let head = stores[1].audit_head().await.unwrap().unwrap();
    assert_eq!(
        (head.seq, head.hash),
        (events.len() as i64, prev),
        "the head is the last event"
    );
}

#[tokio::test]
async fn audit_head_in_a_transaction_locks_the_head_row() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.audit_head().await.unwrap(), None, "empty log");
    let mut raw = db.raw().await;
    let err = raw
        .execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE NOWAIT")
        .await
        .expect_err("the head row is locked by the open transaction");
    assert!(err.to_string().contains("could not obtain lock"), "{err}");
    tx.commit().await.unwrap();
    // Released with the transaction.
    raw.execute("BEGIN").await.unwrap();
    raw.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE NOWAIT")
        .await
        .expect("the lock is released with the transaction");
    raw.execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_are_disjoint_and_complete() {
    let db = TestDb::create().await;
    let stores = [db.store().await, db.store().await];
    const SCHEDULES: usize = 200;
    let mut tx = stores[0].begin().await.unwrap();
    let mut all = HashSet::new();
    for i in 0..SCHEDULES {
        let s = schedule(target(&format!("org-{i:03}")), at(-(i as i64)));
        all.insert(s.id);
        tx.insert_schedule(&s).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut mine = Vec::new();
            loop {
                let mut tx = store.begin().await.unwrap();
                let claimed = tx.claim_due_schedules(t0(), &owner, at(600), 7).await.unwrap();
                tx.commit().await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                assert!(claimed.iter().all(|s| s.claimed_by.as_deref() == Some(owner.as_str())));
                mine.extend(claimed.into_iter().map(|s| s.id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "schedule {id} was claimed twice");
        }
    }
    assert_eq!(seen, all, "every due schedule was claimed");
}

#[tokio::test]
async fn claims_skip_rows_locked_by_another_transaction() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let mut tx = store.begin().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let s = schedule(target(&format!("org-{i}")), at(-100 + i));
        ids.push(s.id);
        tx.insert_schedule(&s).await.unwrap();
    }
    tx.commit().await.unwrap();

    // Another session (which does not take the store's write lock) is in
    // the middle of claiming the two soonest schedules.
    let mut other = db.raw().await;
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM schedules WHERE id = ANY($1) FOR UPDATE")
        .bind(vec![ids[0].to_string(), ids[1].to_string()])
        .fetch_all(&mut other)
        .await
        .unwrap();

    let started = Instant::now();
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim_due_schedules(t0(), "me", at(60), 10).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "claiming did not wait for the locked rows"
    );
    let claimed: Vec<_> = claimed.into_iter().map(|s| s.id).collect();
    assert_eq!(
        claimed,
        ids[2..].to_vec(),
        "locked rows are skipped, the others claimed"
    );
    other.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn outbox_claims_skip_rows_locked_by_another_transaction() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let messages: Vec<OutboxMessage> = (0..4)
        .map(|i| OutboxMessage {
            id: uuid::Uuid::now_v7(),
            dedup_key: None,
            recipient: "log".to_owned(),
            notification: Notification {
                event: "secret_rotated".to_owned(),
                target: format!("secret:app/{i}"),
                rotation_id: None,
                details: serde_json::json!({}),
            },
            created_at: at(-100 + i),
            attempts: 0,
            next_attempt_at: at(-100 + i),
            delivered_at: None,
            last_error: None,
            claimed_by: None,
            claim_expires_at: None,
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.enqueue_outbox(&messages).await.unwrap(), 4);
    tx.commit().await.unwrap();

    // Another session (which does not take the store's write lock) is in
    // the middle of delivering the two oldest messages.
    let mut other = db.raw().await;
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM outbox WHERE id = ANY($1) FOR UPDATE")
        .bind(vec![messages[0].id.to_string(), messages[1].id.to_string()])
        .fetch_all(&mut other)
        .await
        .unwrap();

    let started = Instant::now();
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim_outbox(t0(), "me", at(60), 10).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "claiming did not wait for the locked rows"
    );
    let claimed: Vec<_> = claimed.into_iter().map(|m| m.id).collect();
    assert_eq!(
        claimed,
        vec![messages[2].id, messages[3].id],
        "locked rows are skipped, the others claimed"
    );
    other.execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_stores_serialise() {
    let db = TestDb::create().await;
    let first = db.store().await;
    let second = db.store().await;
    const HOLD: Duration = Duration::from_millis(400);

    let mut tx = first.begin().await.unwrap();
    tx.insert_authority(&authority("org-a", "org-a.k1")).await.unwrap();
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        let mut tx = second.begin().await.expect("the second writer waits");
        let waited = started.elapsed();
        let seen = tx.get_authority(&authority("org-a", "org-a.k1").id).await.unwrap();
        tx.insert_authority(&authority("org-b", "org-b.k1")).await.unwrap();
        tx.commit().await.unwrap();
        (waited, seen.is_some())
    });
    tokio::time::sleep(HOLD).await;
    // Reads go on while a writer holds the lock.
    assert!(first.list_authorities().await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let (waited, seen) = waiter.await.unwrap();
    assert!(waited >= HOLD, "second writer began after {waited:?}");
    assert!(seen, "the second writer sees the first one's commit");
    assert_eq!(first.list_authorities().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_update_across_stores() {
    let db = TestDb::create().await;
    let stores = [db.store().await, db.store().await];
    let counter = authority("counter", "counter.k1");
    let mut tx = stores[0].begin().await.unwrap();
    tx.insert_authority(&counter).await.unwrap();
    tx.commit().await.unwrap();
    // More writers than pooled connections, each a read-modify-write.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = stores[i % 2].clone();
        let id = counter.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let mut a = tx.get_authority(&id).await.unwrap().unwrap();
            a.rotation_period_days += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.update_authority(&a).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a = stores[1].get_authority(&counter.id).await.unwrap().unwrap();
    assert_eq!(
        a.rotation_period_days,
        counter.rotation_period_days + 12,
        "no lost update"
    );
}

#[tokio::test]
async fn waiting_for_the_write_lock_times_out_as_backend_unavailable() {
    let db = TestDb::create().await;
    let holder = db.store().await;
    let waiter = db.store().await.with_write_lock_timeout(Duration::from_millis(300));
    let tx = holder.begin().await.unwrap();
    let started = Instant::now();
    let err = match waiter.begin().await {
        Ok(_) => panic!("a second writer must not begin while the first holds the lock"),
        Err(e) => e,
    };
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(err.message.contains("another write transaction"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    tx.commit().await.unwrap();
    // Once released, the waiter's store works: the connection that timed
    // out was not returned to the pool inside its failed transaction.
    for i in 0..8 {
        let mut tx = waiter.begin().await.expect("begin after a lock timeout");
        tx.put_meta(&format!("after-{i}"), b"1")
            .await
            .expect("write after a lock timeout");
        tx.commit().await.expect("commit after a lock timeout");
    }
    assert_eq!(holder.get_meta("after-7").await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn a_crashed_writer_releases_the_write_lock() {
    let db = TestDb::create().await;
    let store = db.store().await;
    // A "process" takes the write lock and dies without committing.
    let mut dying = db.raw().await;
    dying.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITER_LOCK)
        .execute(&mut dying)
        .await
        .unwrap();
    sqlx::query("INSERT INTO meta (key, value) VALUES ('half', '\\x00')")
        .execute(&mut dying)
        .await
        .unwrap();
    let store2 = Arc::new(store.clone().with_write_lock_timeout(Duration::from_secs(20)));
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let tx = store2.begin().await.expect("begins once the dead writer is gone");
        drop(tx);
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the lock is held while the writer lives");
    // The connection drops without COMMIT or ROLLBACK, like a killed process.
    drop(dying);
    let waited = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    assert_eq!(
        store.get_meta("half").await.unwrap(),
        None,
        "its writes were rolled back"
    );
}
