//! A process stopped after any committed step leaves a run that a fresh
//! engine finishes, with every chain verifying and no key lost.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::Reason;
use rotation_core::ports::StateStore;
use rotation_testkit::FaultyStore;

use crate::support::{Harness, rotate};

const AGENTS: usize = 7;

#[tokio::test]
async fn a_rotation_stopped_after_any_step_is_finished_by_a_fresh_engine() {
    let mut crash_points = 0;
    for fail_at in 1.. {
        let h = Harness::new();
        let id = h.setup(AGENTS).await;
        let original = h.engine("reader").authority(&id).await.unwrap().current_key_id;
        let faulty = Arc::new(FaultyStore::new(h.store.clone(), Some(fail_at)));
        let first = h.engine_with(faulty.clone() as Arc<dyn StateStore>, h.custody.clone(), "process-1");
        let outcome = first.rotate_key(rotate(&id)).await;
        if !faulty.crashed() {
            let result = outcome.expect("no fault injected: the rotation completes");
            assert_eq!(result.chains_updated, AGENTS as u64);
            h.assert_rotated_cleanly(&original, AGENTS).await;
            break;
        }
        crash_points += 1;
        let error = outcome.expect_err("the injected fault stops the rotation");
        assert_eq!(
            error.reason,
            Reason::BackendUnavailable,
            "fault at commit {fail_at}: {error:?}"
        );

        // The lease of process-1 expires; process-2 picks the run up.
        h.clock.advance(TimeDelta::minutes(2));
        let second = h.engine("process-2");
        let result = second
            .rotate_key(rotate(&id))
            .await
            .unwrap_or_else(|e| panic!("resume after a fault at commit {fail_at} failed: {e:?}"));
        assert_eq!(result.old_key_id, original, "fault at commit {fail_at}");
        assert_eq!(result.chains_updated, AGENTS as u64, "fault at commit {fail_at}");
        // A fault at the first commit leaves no run: process-2 starts its own.
        assert_eq!(result.resumed, fail_at > 1, "fault at commit {fail_at}");
        h.assert_rotated_cleanly(&original, AGENTS).await;
    }
    // pending, creating, verifying, promoting, several re-sign batches, completion.
    assert!(crash_points >= 8, "only {crash_points} crash points exercised");
}

#[tokio::test]
async fn a_live_lease_blocks_other_processes_until_it_expires() {
    let h = Harness::new();
    let id = h.setup(4).await;
    let faulty = Arc::new(FaultyStore::new(h.store.clone(), Some(3)));
    let first = h.engine_with(faulty.clone() as Arc<dyn StateStore>, h.custody.clone(), "process-1");
    first.rotate_key(rotate(&id)).await.unwrap_err();
    assert!(faulty.crashed());

    let second = h.engine("process-2");
    let error = second.rotate_key(rotate(&id)).await.unwrap_err();
    assert_eq!(error.reason, Reason::ConcurrentRotation);
    assert!(error.rotation_id.is_some());
    assert_eq!(error.authority_id.as_deref(), Some("org-acme"));
    let status = second.get_rotation_status(&id).await.unwrap();
    assert_eq!(status.status, rotation_core::engine::RotationStatus::InProgress);

    h.clock.advance(TimeDelta::seconds(61));
    let result = second.rotate_key(rotate(&id)).await.unwrap();
    assert!(result.resumed);
    // Scheduled processing also resumes stale runs: nothing is left.
    assert!(second.resume_stale_runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_finished_run_is_reported_not_repeated() {
    let h = Harness::new();
    let id = h.setup(4).await;
    // process-1 stops after recording the run; process-2 takes it over and finishes.
    let faulty = Arc::new(FaultyStore::new(h.store.clone(), Some(2)));
    let first = h.engine_with(faulty.clone() as Arc<dyn StateStore>, h.custody.clone(), "process-1");
    first.rotate_key(rotate(&id)).await.unwrap_err();
    h.clock.advance(TimeDelta::minutes(5));
    let done = h.engine("process-2").rotate_key(rotate(&id)).await.unwrap();
    // process-1 comes back (on the healthy store) and retries the same run id.
    let again = h.engine("process-1");
    let mut request = rotate(&id);
    request.rotation_id = Some(done.rotation_id);
    let replay = again.rotate_key(request).await.unwrap();
    assert_eq!(replay.rotation_id, done.rotation_id);
    assert_eq!(replay.new_key_id, done.new_key_id);
    assert_eq!(replay.completed_at, done.completed_at);
    assert_eq!(
        h.store.list_runs(None, 10).await.unwrap().len(),
        1,
        "a finished run is never repeated"
    );
}
