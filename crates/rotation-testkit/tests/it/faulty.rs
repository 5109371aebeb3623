//! [`FaultyStore`] tests.

use std::sync::Arc;

use rotation_core::Reason;
use rotation_core::ports::StateStore;
use rotation_testkit::fixtures::{authority, authority_id};
use rotation_testkit::{FaultyStore, MemoryStore};

async fn commit_authority(store: &dyn StateStore, id: &str) -> rotation_core::Result<()> {
    let mut tx = store.begin().await?;
    tx.insert_authority(&authority(id, &format!("{id}.k1"))).await?;
    tx.commit().await
}

#[tokio::test]
async fn the_nth_commit_crashes_without_committing() {
    let inner = MemoryStore::new_shared();
    let faulty = FaultyStore::new(Arc::clone(&inner), Some(2));

    commit_authority(&faulty, "org-1").await.unwrap();
    assert_eq!(faulty.commits(), 1);
    assert!(!faulty.crashed());

    let err = commit_authority(&faulty, "org-2").await.unwrap_err();
    assert_eq!(err.reason, Reason::BackendUnavailable);
    assert!(err.message.contains("injected fault"), "{}", err.message);
    assert!(faulty.crashed());
    assert_eq!(faulty.commits(), 1, "the failed commit does not count");

    // The inner store holds exactly what was committed before the crash,
    // and is usable (its write lock was released).
    let ids: Vec<_> = inner
        .list_authorities()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec![authority_id("org-1")]);
    commit_authority(&*inner, "org-3").await.unwrap();
    assert!(Arc::ptr_eq(faulty.inner(), &inner));
}

#[tokio::test]
async fn after_the_crash_everything_fails() {
    let inner = MemoryStore::new_shared();
    let faulty = FaultyStore::new(Arc::clone(&inner), Some(1));
    commit_authority(&faulty, "org-1").await.unwrap_err();

    let unavailable = |r: rotation_core::Result<()>| assert_eq!(r.unwrap_err().reason, Reason::BackendUnavailable);
    unavailable(faulty.begin().await.map(drop));
    unavailable(faulty.get_meta("x").await.map(drop));
    unavailable(faulty.get_authority(&authority_id("org-1")).await.map(drop));
    unavailable(faulty.list_authorities().await.map(drop));
    unavailable(faulty.list_active_runs().await.map(drop));
    unavailable(faulty.list_audit(0, 10).await.map(drop));
    unavailable(faulty.audit_head().await.map(drop));
    unavailable(commit_authority(&faulty, "org-2").await);
    assert_eq!(faulty.commits(), 0);
    assert!(inner.list_authorities().await.unwrap().is_empty());
}

#[tokio::test]
async fn without_a_fault_it_only_counts() {
    let faulty = FaultyStore::new(MemoryStore::new_shared(), None);
    for i in 0..5 {
        commit_authority(&faulty, &format!("org-{i}")).await.unwrap();
    }
    // A dropped transaction is not a commit.
    drop(faulty.begin().await.unwrap());
    assert_eq!(faulty.commits(), 5);
    assert!(!faulty.crashed());
    assert_eq!(faulty.list_authorities().await.unwrap().len(), 5);
}
