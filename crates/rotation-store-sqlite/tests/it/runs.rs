//! The run journal: round trips, ordering and one active run per target.

use rotation_core::Reason;
use rotation_core::ids::Target;
use rotation_core::ports::StateStore;
use rotation_core::run::RunState;

use crate::support::{run, t, temp_store};

#[tokio::test]
async fn runs_round_trip_and_order() {
    let (_dir, store, _url) = temp_store().await;
    let mut minimal = run("authority:org-a", RunState::Completed, 0);
    minimal.old_key_id = None;
    minimal.new_key_id = None;
    minimal.grace_period_end = None;
    minimal.error_reason = None;
    minimal.error_message = None;
    minimal.schedule_id = None;
    let failed = run("authority:org-a", RunState::Failed, 10);
    let active_a = run("authority:org-a", RunState::Promoting, 20);
    let active_k = run("keyring:payments", RunState::Pending, 30);
    let mut tx = store.begin().await.unwrap();
    for r in [&minimal, &failed, &active_a, &active_k] {
        tx.insert_run(r).await.unwrap();
    }
    assert_eq!(tx.get_run(failed.rotation_id).await.unwrap(), Some(failed.clone()));
    tx.commit().await.unwrap();

    assert_eq!(store.get_run(minimal.rotation_id).await.unwrap(), Some(minimal.clone()));
    let all = store.list_runs(None, usize::MAX).await.unwrap();
    assert_eq!(
        all,
        vec![active_k.clone(), active_a.clone(), failed.clone(), minimal.clone()]
    );
    let a: Target = "authority:org-a".parse().unwrap();
    assert_eq!(
        store.list_runs(Some(&a), 2).await.unwrap(),
        vec![active_a.clone(), failed.clone()]
    );
    assert_eq!(
        store.list_active_runs().await.unwrap(),
        vec![active_a.clone(), active_k.clone()]
    );

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.active_run(&a).await.unwrap(), Some(active_a.clone()));
    assert_eq!(tx.active_run(&"store".parse().unwrap()).await.unwrap(), None);
    let mut updated = active_a.clone();
    updated.state = RunState::Finishing;
    updated.chains_updated = u64::from(u32::MAX) + 5;
    updated.updated_at = t(25);
    tx.update_run(&updated).await.unwrap();
    let err = tx.update_run(&run("store", RunState::Pending, 0)).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    tx.commit().await.unwrap();
    assert_eq!(store.get_run(active_a.rotation_id).await.unwrap(), Some(updated));
}

#[tokio::test]
async fn one_active_run_per_target() {
    let (_dir, store, _url) = temp_store().await;
    let mut first = run("authority:org-a", RunState::Creating, 0);
    let mut tx = store.begin().await.unwrap();
    tx.insert_run(&first).await.unwrap();
    tx.commit().await.unwrap();

    let second = run("authority:org-a", RunState::Pending, 5);
    let mut tx = store.begin().await.unwrap();
    let err = tx.insert_run(&second).await.unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation, "{err}");
    assert!(
        err.message
            .contains("another rotation of authority:org-a is in progress"),
        "{err}"
    );
    assert_eq!(err.authority_id.as_deref(), Some("org-a"));
    // Another target is independent; a taken rotation id is already_exists.
    tx.insert_run(&run("authority:org-b", RunState::Pending, 5))
        .await
        .unwrap();
    let mut same_id = first.clone();
    same_id.target = "authority:org-c".parse().unwrap();
    let err = tx.insert_run(&same_id).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    drop(tx);

    // Once the first run is terminal, a new one may start.
    first.state = RunState::RolledBack;
    let mut tx = store.begin().await.unwrap();
    tx.update_run(&first).await.unwrap();
    tx.insert_run(&second).await.unwrap();
    // Re-opening the finished run while the new one is active is refused too.
    first.state = RunState::RollingBack;
    let err = tx.update_run(&first).await.unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrentRotation, "{err}");
    tx.commit().await.unwrap();
    assert_eq!(store.list_active_runs().await.unwrap(), vec![second]);
}
