//! [`MemoryStore`]: the conformance suite and its own constraints.

use std::sync::Arc;

use rotation_core::Reason;
use rotation_core::authority::KeyState;
use rotation_core::ports::{RecordQuery, StateStore};
use rotation_core::run::RunState;
use rotation_testkit::conformance::state_store_suite;
use rotation_testkit::fixtures::{at, audit_event, key, record, run, schedule, t0, target};
use rotation_testkit::{FaultyStore, MemoryStore};

#[tokio::test]
async fn memory_store_conforms() {
    state_store_suite(|| async { MemoryStore::new_shared() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms_on_a_multi_thread_runtime() {
    state_store_suite(|| async { Arc::new(MemoryStore::new()) as Arc<dyn StateStore> }).await;
}

#[tokio::test]
async fn faulty_store_without_a_fault_conforms() {
    state_store_suite(|| async { Arc::new(FaultyStore::new(MemoryStore::new_shared(), None)) as Arc<dyn StateStore> })
        .await;
}

#[tokio::test]
async fn concurrent_rotation_names_the_target_and_the_active_run() {
    let store = MemoryStore::new();
    let first = run(target("org-a"), RunState::Verifying, t0());
    let mut tx = store.begin().await.unwrap();
    tx.insert_run(&first).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let err = tx
        .insert_run(&run(target("org-a"), RunState::Pending, at(1)))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation);
    assert_eq!(err.message, "another rotation of authority:org-a is in progress");
    assert_eq!(err.rotation_id, Some(first.rotation_id.to_string()));
    assert_eq!(err.authority_id.as_deref(), Some("org-a"));
}

#[tokio::test]
async fn update_run_cannot_create_a_second_active_run() {
    let store = MemoryStore::new();
    let failed = run(target("org-a"), RunState::Failed, at(-60));
    let active = run(target("org-a"), RunState::Creating, t0());
    let mut tx = store.begin().await.unwrap();
    tx.insert_run(&failed).await.unwrap();
    tx.insert_run(&active).await.unwrap();
    let mut revived = failed.clone();
    revived.state = RunState::Pending;
    let err = tx.update_run(&revived).await.unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation);
    // The active run itself may move between non-terminal states.
    let mut next = active.clone();
    next.state = RunState::Verifying;
    tx.update_run(&next).await.unwrap();
}

#[tokio::test]
async fn duplicate_schedules_and_audit_sequences_are_rejected() {
    let store = MemoryStore::new();
    let s = schedule(target("org-a"), t0());
    let mut tx = store.begin().await.unwrap();
    tx.insert_schedule(&s).await.unwrap();
    tx.append_audit(&audit_event(1, t0())).await.unwrap();
    assert_eq!(tx.insert_schedule(&s).await.unwrap_err().reason, Reason::AlreadyExists);
    assert_eq!(
        tx.append_audit(&audit_event(1, t0())).await.unwrap_err().reason,
        Reason::AlreadyExists
    );
    // A failed operation leaves the transaction usable.
    tx.commit().await.unwrap();
    assert_eq!(store.list_schedules(None, false).await.unwrap(), vec![s]);
    assert_eq!(store.audit_head().await.unwrap().map(|h| h.seq), Some(1));
}

#[tokio::test]
async fn a_failed_batch_insert_changes_nothing() {
    let store = MemoryStore::new();
    let a = record("agent-1", "org-a", "org-a.k1");
    let b = record("agent-2", "org-a", "org-a.k1");
    let mut tx = store.begin().await.unwrap();
    let err = tx.insert_records(&[a.clone(), b, a.clone()]).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "a duplicate within the batch");
    tx.insert_records(std::slice::from_ref(&a)).await.unwrap();
    tx.commit().await.unwrap();
    let all = store
        .list_records(&RecordQuery {
            limit: usize::MAX,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all, vec![a]);
}

#[tokio::test]
async fn transactions_copy_on_write_without_leaking_into_the_committed_state() {
    let store = MemoryStore::new();
    let k = key("org-a", "org-a.k1", KeyState::Active, t0());
    let mut tx = store.begin().await.unwrap();
    tx.insert_key(&k).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let mut changed = k.clone();
    changed.state = KeyState::Revoked;
    tx.update_key(&changed).await.unwrap();
    assert_eq!(store.get_key(&k.key_id).await.unwrap(), Some(k.clone()));
    drop(tx);
    assert_eq!(store.get_key(&k.key_id).await.unwrap(), Some(k));
    assert!(format!("{store:?}").starts_with("MemoryStore"));
}
