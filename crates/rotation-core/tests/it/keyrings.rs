//! Keyring rotation through the run state machine: resumable after a crash
//! at any step; one run per keyring.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::Reason;
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::VersionState;
use rotation_core::ports::StateStore;
use rotation_testkit::FaultyStore;
use zeroize::Zeroizing;

use crate::support::Harness;

async fn keyring_with_values(h: &Harness, n: usize) -> KeyringName {
    let engine = h.engine("setup");
    let name = KeyringName::parse("payments").unwrap();
    engine.create_keyring(&name).await.unwrap();
    let values: Vec<(ValueId, Zeroizing<Vec<u8>>)> = (0..n)
        .map(|i| {
            (
                ValueId::parse(format!("v{i}")).unwrap(),
                Zeroizing::new(format!("secret {i}").into_bytes()),
            )
        })
        .collect();
    engine.import_batch(&name, &values).await.unwrap();
    name
}

#[tokio::test]
async fn a_keyring_rotation_stopped_after_any_step_is_finished_by_a_fresh_engine() {
    let mut crash_points = 0;
    for fail_at in 1.. {
        let h = Harness::new();
        let name = keyring_with_values(&h, 5).await;
        let faulty = Arc::new(FaultyStore::new(h.store.clone(), Some(fail_at)));
        let first = h.engine_with(faulty.clone() as Arc<dyn StateStore>, h.custody.clone(), "process-1");
        let outcome = first.rotate_keyring(&name, false, None).await;
        if !faulty.crashed() {
            assert_eq!(outcome.unwrap().new_version, 2);
            break;
        }
        crash_points += 1;
        assert_eq!(outcome.unwrap_err().reason, Reason::BackendUnavailable);
        h.clock.advance(TimeDelta::minutes(2));
        let second = h.engine("process-2");
        let result = second.rotate_keyring(&name, false, None).await.unwrap();
        assert_eq!(result.new_version, 2, "fault at commit {fail_at}");
        let versions = second.key_versions(&name).await.unwrap();
        let states: Vec<(u32, VersionState)> = versions.iter().map(|v| (v.version, v.state)).collect();
        assert_eq!(
            states,
            vec![(1, VersionState::Active), (2, VersionState::Current)],
            "fault at commit {fail_at}"
        );
        for i in 0..5 {
            let id = ValueId::parse(format!("v{i}")).unwrap();
            assert_eq!(
                second.decrypt_value(&name, &id).await.unwrap().as_slice(),
                format!("secret {i}").as_bytes()
            );
        }
        assert!(h.store.list_active_runs().await.unwrap().is_empty());
        assert!(second.verify_audit().await.unwrap().valid);
    }
    assert!(crash_points >= 5, "only {crash_points} crash points");
}

#[tokio::test]
async fn one_rotation_per_keyring_and_a_new_key_per_version() {
    let h = Harness::new();
    let name = keyring_with_values(&h, 3).await;
    let faulty = Arc::new(FaultyStore::new(h.store.clone(), Some(3)));
    let first = h.engine_with(faulty as Arc<dyn StateStore>, h.custody.clone(), "process-1");
    first.rotate_keyring(&name, false, None).await.unwrap_err();
    let second = h.engine("process-2");
    let error = second.rotate_keyring(&name, false, None).await.unwrap_err();
    assert_eq!(error.reason, Reason::ConcurrentRotation);
    h.clock.advance(TimeDelta::minutes(2));
    second.rotate_keyring(&name, false, None).await.unwrap();
    let third = second.rotate_keyring(&name, false, None).await.unwrap();
    assert_eq!((third.previous_version, third.new_version), (2, 3));
    // Each version has its own key: a value sealed under v1 does not open with v3's key.
    let report = second.keyring_report(&name).await.unwrap();
    assert_eq!(report.needing_migration, 3);
    let migrated = second
        .migrate_keyring(&name, &Default::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(migrated.migrated, 3);
    let values = second.list_values(&name, None, 10).await.unwrap();
    assert!(
        values
            .iter()
            .all(|v| v.key_version == 3 && v.sealed[1..5] == 3u32.to_be_bytes())
    );
}
