//! `api_key` secrets with the dual-write strategy: old and new both valid
//! until the grace period ends, then the old one is disabled.

use chrono::TimeDelta;
use rotation_core::secret::{SecretConfig, SecretType, SecretValue, Stage, Strategy};

use crate::support::{Env, at_stage, put, random, rotate, set_policy};

#[tokio::test]
async fn dual_write_accepts_both_until_the_grace_period_ends() {
    let env = Env::new().await;
    let engine = env.engine();
    set_policy(&engine, "keys", |p| {
        p.strategy = Some(Strategy::DualWrite);
        p.grace_period_hours = Some(24);
        p.notify = vec!["log".into()];
    })
    .await;
    let old = random("key");
    put(
        &engine,
        "svc/api-key",
        SecretType::ApiKey,
        &old,
        Some("keys"),
        SecretConfig::default(),
    )
    .await;

    let result = engine.rotate_secret(rotate("svc/api-key")).await.unwrap();
    assert_eq!(result.strategy, Strategy::DualWrite);
    assert_eq!(result.grace_period_end, Some(engine.now() + TimeDelta::hours(24)));
    let (_, new) = at_stage(&engine, "svc/api-key", Stage::Current).await;
    assert_ne!(new, old);

    let validate = |v: &str| {
        let engine = engine.clone();
        let v = SecretValue::new(v);
        async move { engine.validate_secret("svc/api-key", &v).await.unwrap() }
    };
    let check = validate(&old).await;
    assert!(check.valid && check.stage == Some(Stage::Previous), "{check:?}");
    let check = validate(&new).await;
    assert!(check.valid && check.stage == Some(Stage::Current), "{check:?}");
    assert!(!validate(&random("nope")).await.valid);

    // One hour before the end nothing is disabled.
    env.clock.advance(TimeDelta::hours(23));
    engine.process_scheduled_rotations().await.unwrap();
    assert!(validate(&old).await.valid, "still in grace");

    env.clock.advance(TimeDelta::hours(2));
    let outcomes = engine.process_scheduled_rotations().await.unwrap();
    let disabled: Vec<_> = outcomes.iter().filter_map(|o| o.result.clone()).collect();
    assert_eq!(disabled, [serde_json::json!({"disabled_version": 1})], "{outcomes:?}");
    assert!(
        !validate(&old).await.valid,
        "the old key is refused after the grace period"
    );
    assert!(validate(&new).await.valid);
    assert!(
        engine.process_scheduled_rotations().await.unwrap().is_empty(),
        "disabled once"
    );

    let outbox = engine.list_outbox(false, 100).await.unwrap();
    let events: Vec<(&str, &str)> = outbox
        .iter()
        .map(|m| (m.notification.event.as_str(), m.notification.target.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("rotated", "secret:svc/api-key"),
            ("grace_period_ended", "secret:svc/api-key")
        ]
    );
    assert_eq!(outbox[1].notification.details["version"], 1);
}
