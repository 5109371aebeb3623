//! Prepublished keys: the next key is in the JWKS before it signs.

use chrono::TimeDelta;
use rotation_core::authority::KeyState;
use rotation_core::ids::AgentId;
use rotation_core::ports::RecordQuery;

use crate::support::{Harness, MisbehavingCustody, rotate};

#[tokio::test]
async fn the_next_key_is_published_ahead_and_then_promoted() {
    let h = Harness::new();
    let id = h.setup(2).await;
    let engine = h.engine("p");
    engine.set_prepublish_hours(&id, 48).await.unwrap();
    // Default period 90 days: nothing until 48 hours before.
    h.clock.advance(TimeDelta::days(87));
    assert!(engine.prepublish_keys().await.unwrap().is_empty());
    assert_eq!(engine.jwks(&id).await.unwrap().keys.len(), 1);
    h.clock.advance(TimeDelta::days(1) + TimeDelta::hours(1));
    engine.process_scheduled_rotations().await.unwrap();
    let cached = engine.jwks(&id).await.unwrap();
    assert_eq!(cached.keys.len(), 2, "current + next");
    assert!(
        engine.prepublish_keys().await.unwrap().is_empty(),
        "one next key at a time"
    );
    let next = engine
        .keys(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == KeyState::Pending)
        .unwrap();

    let result = engine.rotate_key(rotate(&id)).await.unwrap();
    assert_eq!(
        result.new_key_id, next.key_id,
        "the prepublished key is the one promoted"
    );
    // Records re-signed by the new key carry a kid the cached JWKS already knows.
    let records = engine
        .list_records(&RecordQuery {
            agent: Some(AgentId::parse("agent-0").unwrap()),
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert!(records.iter().all(|r| r.key_id == next.key_id));
    assert!(cached.keys.iter().any(|k| k.kid == next.key_id.to_string()));
}

#[tokio::test]
async fn a_rolled_back_rotation_keeps_the_prepublished_key() {
    let h = Harness::new();
    let id = h.setup(1).await;
    let engine = h.engine("p");
    engine.set_prepublish_hours(&id, 24 * 100).await.unwrap();
    let created = engine.prepublish_keys().await.unwrap();
    assert_eq!(created.len(), 1);
    // A second engine whose custody cannot sign fails verification and rolls back.
    let broken = h.engine_with(
        h.store.clone(),
        std::sync::Arc::new(MisbehavingCustody {
            inner: h.custody.clone(),
            corrupt_probe: true,
            fail_batches: false,
            fail_retire: false,
        }),
        "b",
    );
    let e = broken.rotate_key(rotate(&id)).await.unwrap_err();
    assert_eq!(e.reason, rotation_core::Reason::VerificationFailed, "{e}");
    let key = engine.store().get_key(&created[0].key_id).await.unwrap().unwrap();
    assert_eq!(key.state, KeyState::Pending, "still published");
    assert_eq!(engine.jwks(&id).await.unwrap().keys.len(), 2);
    let result = engine.rotate_key(rotate(&id)).await.unwrap();
    assert_eq!(result.new_key_id, created[0].key_id);
}
