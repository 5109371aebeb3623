//! Revocation after the grace period, forced revocation, and what a revoked
//! key means for verification.

use std::collections::HashMap;

use chrono::TimeDelta;
use rotation_core::Reason;
use rotation_core::audit::event;
use rotation_core::chain::verify_chain;
use rotation_core::engine::RevokeOptions;
use rotation_core::ids::AgentId;
use rotation_core::ports::RecordQuery;
use rotation_crypto::RingCrypto;

use crate::support::{Harness, rotate};

#[tokio::test]
async fn revocation_waits_for_the_grace_period() {
    let h = Harness::new();
    let id = h.setup(2).await;
    let engine = h.engine("p");
    let agent = AgentId::parse("agent-1").unwrap();
    let old_records = engine
        .list_records(&RecordQuery {
            agent: Some(agent.clone()),
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    let result = engine.rotate_key(rotate(&id)).await.unwrap();

    let error = engine
        .revoke_old_key(&id, &result.old_key_id, RevokeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.reason, Reason::GracePeriodNotExpired);
    assert!(error.message.contains("--force"));
    let error = engine
        .revoke_old_key(&id, &result.new_key_id, RevokeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.reason, Reason::KeyNotInGracePeriod);

    // Records still signed by the old key verify during the grace period...
    let keys: HashMap<_, _> = engine
        .keys(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key_id.clone(), k))
        .collect();
    let crypto = RingCrypto::new();
    assert!(verify_chain(&agent, &old_records, &keys, &crypto, engine.now()).valid);

    h.clock.advance(TimeDelta::hours(25));
    let status = engine.get_rotation_status(&id).await.unwrap();
    assert_eq!(status.pending_revocations, vec![result.old_key_id.clone()]);
    // ...not after it ends, even before revocation...
    let verdict = verify_chain(&agent, &old_records, &keys, &crypto, engine.now());
    assert_eq!(verdict.reason.as_deref(), Some("key_expired"));

    engine
        .revoke_old_key(&id, &result.old_key_id, RevokeOptions::default())
        .await
        .unwrap();
    // ...and never after revocation.
    let keys: HashMap<_, _> = engine
        .keys(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key_id.clone(), k))
        .collect();
    let verdict = verify_chain(&agent, &old_records, &keys, &crypto, engine.now());
    assert_eq!(verdict.reason.as_deref(), Some("key_revoked"));
    // The re-signed chains are unaffected.
    assert!(engine.verify_all_chains().await.unwrap().iter().all(|v| v.valid));
    assert_eq!(engine.audit_events(1).await.unwrap()[0].event, event::KEY_REVOKED);
    let jwks = engine.jwks(&id).await.unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kid, result.new_key_id.to_string());
}

#[tokio::test]
async fn forced_revocation_needs_a_reason_and_is_audited() {
    let h = Harness::new();
    let id = h.setup(1).await;
    let engine = h.engine("p");
    let result = engine.rotate_key(rotate(&id)).await.unwrap();
    let no_reason = RevokeOptions {
        force: true,
        reason: None,
    };
    assert_eq!(
        engine
            .revoke_old_key(&id, &result.old_key_id, no_reason)
            .await
            .unwrap_err()
            .reason,
        Reason::InvalidInput
    );
    let forced = RevokeOptions {
        force: true,
        reason: Some("compromised".into()),
    };
    let key = engine.revoke_old_key(&id, &result.old_key_id, forced).await.unwrap();
    assert_eq!(key.revocation_reason.as_deref(), Some("compromised"));
    let last = &engine.audit_events(1).await.unwrap()[0];
    assert_eq!(last.event, event::KEY_FORCE_REVOKED);
    assert_eq!(last.details["forced"], true);
    let again = engine
        .revoke_old_key(&id, &result.old_key_id, RevokeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(again.reason, Reason::KeyNotInGracePeriod);
}

#[tokio::test]
async fn a_custody_that_cannot_retire_the_key_leaves_it_in_grace_and_the_revocation_can_be_retried() {
    use rotation_core::authority::KeyState;
    let h = Harness::new();
    let id = h.setup(1).await;
    let engine = h.engine("p");
    let result = engine.rotate_key(rotate(&id)).await.unwrap();
    h.clock.advance(TimeDelta::hours(25));
    let unreachable = std::sync::Arc::new(crate::support::MisbehavingCustody {
        inner: h.custody.clone(),
        corrupt_probe: false,
        fail_batches: false,
        fail_retire: true,
    });
    let failing = h.engine_with(h.store.clone(), unreachable, "p");
    let events_before = engine.audit_events(1000).await.unwrap().len();
    let error = failing
        .revoke_old_key(&id, &result.old_key_id, RevokeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.reason, Reason::BackendUnavailable);
    assert_eq!(error.authority_id.as_deref(), Some(id.as_str()));
    let old = h.store.get_key(&result.old_key_id).await.unwrap().unwrap();
    assert_eq!(old.state, KeyState::Grace, "nothing changed");
    assert_eq!(engine.audit_events(1000).await.unwrap().len(), events_before);

    let key = engine
        .revoke_old_key(&id, &result.old_key_id, RevokeOptions::default())
        .await
        .unwrap();
    assert_eq!(key.state, KeyState::Revoked);
}

#[tokio::test]
async fn keys_past_grace_are_revoked_automatically_only_where_the_policy_says_so() {
    use rotation_core::authority::KeyState;
    use rotation_core::ids::Target;
    use rotation_core::policy::{Policy, Procedure, Trigger};
    for auto_revoke in [false, true] {
        let h = Harness::new();
        let id = h.setup(1).await;
        let engine = h.engine("p");
        engine
            .set_policy(Policy {
                name: "yearly".into(),
                trigger: Trigger::MaxAgeDays(365),
                migrate: false,
                retire_old: false,
                updated_at: engine.now(),
                procedure: Procedure {
                    auto_revoke,
                    ..Procedure::default()
                },
            })
            .await
            .unwrap();
        engine
            .add_policy_schedule(Target::Authority(id.clone()), "yearly", 0)
            .await
            .unwrap();
        let result = engine.rotate_key(rotate(&id)).await.unwrap();
        h.clock.advance(TimeDelta::hours(23));
        engine.process_scheduled_rotations().await.unwrap();
        let old = engine.store().get_key(&result.old_key_id).await.unwrap().unwrap();
        assert_eq!(old.state, KeyState::Grace, "still in grace");
        h.clock.advance(TimeDelta::hours(2));
        engine.process_scheduled_rotations().await.unwrap();
        let old = engine.store().get_key(&result.old_key_id).await.unwrap().unwrap();
        if auto_revoke {
            assert_eq!(old.state, KeyState::Revoked);
            let events = engine.store().list_audit_newest(20).await.unwrap();
            assert!(events.iter().any(|e| e.event == event::KEY_REVOKED));
        } else {
            assert_eq!(old.state, KeyState::Grace, "waits for an operator");
        }
    }
}
