//! Rotation outcomes: success, rollback before promotion, failure after it.

use std::sync::Arc;

use rotation_core::Reason;
use rotation_core::audit::event;
use rotation_core::authority::KeyState;
use rotation_core::engine::RotationStatus;
use rotation_core::run::RunState;

use crate::support::{Harness, MisbehavingCustody, rotate};

#[tokio::test]
async fn rotation_re_signs_every_chain_and_starts_the_grace_period() {
    let h = Harness::new();
    let id = h.setup(10).await;
    let engine = h.engine("p");
    let before = engine.authority(&id).await.unwrap();
    let mut request = rotate(&id);
    request.grace_period_hours = Some(48);
    let result = engine.rotate_key(request).await.unwrap();
    assert_eq!(result.old_key_id, before.current_key_id);
    assert_eq!(result.chains_updated, 10);
    assert!(result.started_at <= result.completed_at);
    // The settable clock does not move during the rotation.
    assert_eq!(
        result.grace_period_end.unwrap() - result.started_at,
        chrono::TimeDelta::hours(48)
    );
    h.assert_rotated_cleanly(&before.current_key_id, 10).await;
    let status = engine.get_rotation_status(&id).await.unwrap();
    assert_eq!(status.status, RotationStatus::GracePeriod);
    assert_eq!(
        status.grace_period_keys.get(&before.current_key_id),
        result.grace_period_end.as_ref()
    );
    assert_eq!(status.current_key_id, result.new_key_id);
}

#[tokio::test]
async fn a_key_that_fails_verification_is_rolled_back() {
    let h = Harness::new();
    let id = h.setup(3).await;
    let broken = Arc::new(MisbehavingCustody {
        inner: h.custody.clone(),
        corrupt_probe: true,
        fail_batches: false,
        fail_retire: false,
    });
    let engine = h.engine_with(h.store.clone(), broken, "p");
    let before = engine.authority(&id).await.unwrap();
    let error = engine.rotate_key(rotate(&id)).await.unwrap_err();
    assert_eq!(error.reason, Reason::VerificationFailed);
    assert!(error.message.contains("rolled back"), "{}", error.message);
    assert!(error.rotation_id.is_some());

    let after = engine.authority(&id).await.unwrap();
    assert_eq!(after.current_key_id, before.current_key_id);
    let keys = engine.keys(&id).await.unwrap();
    assert_eq!(keys.len(), 1, "the unpromoted key is removed");
    let run = &h.store.list_runs(None, 1).await.unwrap()[0];
    assert_eq!(run.state, RunState::RolledBack);
    assert_eq!(run.error_reason.as_deref(), Some("verification_failed"));
    let events: Vec<String> = engine
        .audit_events(3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(events.contains(&event::ROTATION_FAILED.to_string()));
    assert!(events.contains(&event::ROTATION_ROLLED_BACK.to_string()));
    assert_eq!(
        engine.get_rotation_status(&id).await.unwrap().status,
        RotationStatus::Failed
    );
    assert!(engine.verify_all_chains().await.unwrap().iter().all(|v| v.valid));

    // With a working custody the next rotation succeeds.
    h.engine("p2").rotate_key(rotate(&id)).await.unwrap();
    assert!(engine.verify_audit().await.unwrap().valid);
}

#[tokio::test]
async fn a_failure_after_promotion_keeps_chains_valid_and_the_next_rotation_finishes_them() {
    let h = Harness::new();
    let id = h.setup(5).await;
    let original = h.engine("r").authority(&id).await.unwrap().current_key_id;
    let failing = Arc::new(MisbehavingCustody {
        inner: h.custody.clone(),
        corrupt_probe: false,
        fail_batches: true,
        fail_retire: false,
    });
    let engine = h.engine_with(h.store.clone(), failing, "p");
    let error = engine.rotate_key(rotate(&id)).await.unwrap_err();
    assert_eq!(error.reason, Reason::RotationFailed);
    let run = &h.store.list_runs(None, 1).await.unwrap()[0];
    assert_eq!(run.state, RunState::Failed);
    // Promoted: the new key signs, the old one is in grace, chains still verify.
    let keys = engine.keys(&id).await.unwrap();
    assert_eq!(
        keys.iter().find(|k| k.key_id == original).unwrap().state,
        KeyState::Grace
    );
    assert!(engine.verify_all_chains().await.unwrap().iter().all(|v| v.valid));

    let good = h.engine("p2");
    let result = good.rotate_key(rotate(&id)).await.unwrap();
    assert_eq!(result.chains_updated, 5);
    let records = good.list_records(&Default::default()).await.unwrap();
    assert!(records.iter().all(|r| r.key_id == result.new_key_id));
}

#[tokio::test]
async fn unknown_authority_and_bad_grace_are_refused() {
    let h = Harness::new();
    let engine = h.engine("p");
    let missing = rotation_core::ids::AuthorityId::parse("org-missing").unwrap();
    let error = engine.rotate_key(rotate(&missing)).await.unwrap_err();
    assert_eq!(error.reason, Reason::NotFound);
    assert_eq!(error.authority_id.as_deref(), Some("org-missing"));
    let id = h.setup(1).await;
    let mut request = rotate(&id);
    request.grace_period_hours = Some(100_000);
    assert_eq!(
        engine.rotate_key(request).await.unwrap_err().reason,
        Reason::InvalidInput
    );
    assert!(h.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn authority_names_refuse_invisible_characters() {
    use rotation_core::engine::NewAuthority;
    use rotation_core::ids::AuthorityId;
    let h = Harness::new();
    let engine = h.engine("p");
    for bad in ["Acme\u{202e}moc", "Ac\u{200b}me", "Acme\n"] {
        let e = engine
            .create_authority(NewAuthority {
                id: AuthorityId::parse("org-acme").unwrap(),
                name: Some(bad.into()),
                rotation_period_days: None,
                grace_period_hours: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidInput, "{bad:?}");
    }
    assert!(engine.list_authorities().await.unwrap().is_empty());
}
