//! Scheduled rotations: time checks and exactly-once processing.

use chrono::TimeDelta;
use rotation_core::Reason;
use rotation_core::engine::RotationStatus;
use rotation_core::schedule::ScheduleState;

use crate::support::Harness;

#[tokio::test]
async fn past_times_are_refused() {
    let h = Harness::new();
    let id = h.setup(1).await;
    let engine = h.engine("p");
    for at in [engine.now(), engine.now() - TimeDelta::days(1)] {
        let error = engine.schedule_rotation(&id, at).await.unwrap_err();
        assert_eq!(error.reason, Reason::InvalidScheduleTime);
    }
    let missing = rotation_core::ids::AuthorityId::parse("nope").unwrap();
    let error = engine
        .schedule_rotation(&missing, engine.now() + TimeDelta::hours(1))
        .await
        .unwrap_err();
    assert_eq!(error.reason, Reason::NotFound);
}

#[tokio::test]
async fn a_due_schedule_is_processed_once_by_competing_engines() {
    let h = Harness::new();
    let id = h.setup(6).await;
    let a = h.engine("worker-a");
    let b = h.engine("worker-b");
    let due = a.now() + TimeDelta::hours(1);
    let rotation_id = a.schedule_rotation(&id, due).await.unwrap();
    let status = a.get_rotation_status(&id).await.unwrap();
    assert_eq!(status.status, RotationStatus::Pending);
    assert_eq!(status.next_scheduled, Some(due));
    assert!(a.process_scheduled_rotations().await.unwrap().is_empty(), "not due yet");

    h.clock.advance(TimeDelta::hours(2));
    let (ra, rb) = tokio::join!(a.process_scheduled_rotations(), b.process_scheduled_rotations());
    let outcomes: Vec<_> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    let completed: Vec<_> = outcomes.iter().filter_map(|o| o.result.as_ref()).collect();
    assert_eq!(completed.len(), 1, "{outcomes:?}");
    assert_eq!(completed[0]["rotation_id"], rotation_id.to_string());
    assert_eq!(h.store.list_runs(None, 10).await.unwrap().len(), 1);
    let schedules = a.list_schedules(None, false).await.unwrap();
    assert_eq!(schedules[0].state, ScheduleState::Done);
    assert!(a.process_scheduled_rotations().await.unwrap().is_empty());
    assert!(a.verify_audit().await.unwrap().valid);
}
