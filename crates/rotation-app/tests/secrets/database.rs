//! `database` secrets: the real `PostgresRoleTarget` changes a role's
//! password on the server of `DATABASE_URL`; every check logs in afresh
//! (psql, scram-sha-256 over TCP).

use rotation_core::Reason;
use rotation_core::secret::{RotationStatus, SecretConfig, SecretType, Stage, Strategy};

use crate::support::{
    Env, at_stage, can_login, create_role, database_url, drop_roles, http_receiver, put, random, rotate, set_policy,
    unique_role, version,
};

const ADMIN: &str = "db/admin";
const APP: &str = "db/app";

/// Stores the admin secret (the superuser URL) and the `database` secret
/// of `role` holding `password`, under `policy`.
async fn put_database(env: &Env, role: &str, password: &str, policy: &str) {
    let engine = env.engine();
    put(
        &engine,
        ADMIN,
        SecretType::Generic,
        &database_url(),
        None,
        SecretConfig::default(),
    )
    .await;
    put(
        &engine,
        APP,
        SecretType::Database,
        password,
        Some(policy),
        SecretConfig {
            role: Some(role.to_owned()),
            admin_secret: Some(ADMIN.to_owned()),
            ..SecretConfig::default()
        },
    )
    .await;
}

/// Rotates with `strategy`; afterwards the role logs in with the CURRENT
/// password (as the CURRENT version's `username`) and not with the old one.
async fn rotation_changes_the_password(strategy: Strategy) {
    let env = Env::new().await;
    let engine = env.engine();
    let role = unique_role();
    let old = random("old");
    create_role(&role, &old).await;
    assert!(can_login(&role, &old).await, "the fixture role logs in");
    set_policy(&engine, "db", |p| {
        p.strategy = Some(strategy);
        p.verification_tests = vec!["login".into()];
    })
    .await;
    put_database(&env, &role, &old, "db").await;

    let result = engine.rotate_secret(rotate(APP)).await.unwrap();
    assert_eq!(result.status, RotationStatus::Success);
    assert_eq!(result.strategy, strategy);
    assert_eq!((result.old_version, result.new_version), (Some(1), Some(2)));

    let (current, password) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(current.version, 2);
    assert_ne!(password, old);
    let username = current.attr("username").expect("CURRENT names its username");
    assert_eq!(username, role);
    assert!(can_login(username, &password).await, "{strategy}: new password works");
    assert!(!can_login(&role, &old).await, "{strategy}: old password is refused");
    let (previous, previous_value) = at_stage(&engine, APP, Stage::Previous).await;
    assert_eq!((previous.version, previous_value.as_str()), (1, old.as_str()));

    let history = engine.secret_history(APP, 10).await.unwrap();
    let steps: Vec<&str> = history[0].steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["create", "set", "test", "test:login", "finish"], "{strategy}");
    drop_roles(&[&role]).await;
}

#[tokio::test]
async fn immediate_rotation_changes_the_role_password() {
    rotation_changes_the_password(Strategy::Immediate).await;
}

#[tokio::test]
async fn staged_rotation_changes_the_role_password() {
    rotation_changes_the_password(Strategy::Staged).await;
}

#[tokio::test]
async fn blue_green_rotates_the_idle_role_and_keeps_the_active_one() {
    let env = Env::new().await;
    let engine = env.engine();
    let role = unique_role();
    let (blue, green) = (format!("{role}_blue"), format!("{role}_green"));
    let blue_old = random("blue");
    let green_old = random("green");
    create_role(&blue, &blue_old).await;
    create_role(&green, &green_old).await;
    set_policy(&engine, "bg", |p| p.strategy = Some(Strategy::BlueGreen)).await;
    put_database(&env, &role, &blue_old, "bg").await;
    let (first, _) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(
        first.attr("username"),
        Some(blue.as_str()),
        "the first value belongs to _blue"
    );

    // First rotation: the idle slot (green) gets the new password.
    let result = engine.rotate_secret(rotate(APP)).await.unwrap();
    assert_eq!(result.strategy, Strategy::BlueGreen);
    let (current, green_new) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(current.attr("username"), Some(green.as_str()));
    assert_eq!(current.attr("slot"), Some("green"));
    assert!(can_login(&green, &green_new).await, "green has the CURRENT password");
    assert!(!can_login(&green, &green_old).await, "green's old password is gone");
    assert!(can_login(&blue, &blue_old).await, "blue still logs in with its old one");
    let history = engine.secret_history(APP, 10).await.unwrap();
    let run = &history[0];
    assert_eq!(run.status, RotationStatus::Success);
    let steps: Vec<(&str, bool)> = run.steps.iter().map(|s| (s.step.as_str(), s.ok)).collect();
    assert_eq!(
        steps,
        [("create", true), ("set", true), ("test", true), ("finish", true)],
        "blue-green: {run:#?}"
    );
    let log = |name: &str| &run.steps.iter().find(|s| s.step == name).unwrap().log;
    assert!(
        log("set").contains(&format!("ALTER ROLE {green} PASSWORD [redacted]")),
        "only the idle slot is changed: {}",
        log("set")
    );
    assert!(log("test").contains(&format!("login as {green}")), "{}", log("test"));

    // Second rotation: back to blue; green keeps working meanwhile.
    engine.rotate_secret(rotate(APP)).await.unwrap();
    let (current, blue_new) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(current.version, 3);
    assert_eq!(current.attr("username"), Some(blue.as_str()));
    assert!(can_login(&blue, &blue_new).await);
    assert!(!can_login(&blue, &blue_old).await);
    assert!(can_login(&green, &green_new).await, "the other slot is untouched");
    drop_roles(&[&blue, &green]).await;
}

/// A verification test answering 503 fails the rotation; it is rolled back
/// at the server (the old password logs in again) and in the store.
async fn forced_verification_failure_rolls_back(strategy: Strategy) {
    let env = Env::new().await;
    let engine = env.engine();
    let role = unique_role();
    let old = random("old");
    create_role(&role, &old).await;
    let (addr, requests) = http_receiver(503).await;
    let test = format!("http:http://{addr}/check");
    set_policy(&engine, "db", |p| {
        p.strategy = Some(strategy);
        p.verification_tests = vec![test.clone()];
    })
    .await;
    put_database(&env, &role, &old, "db").await;

    let e = engine.rotate_secret(rotate(APP)).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{strategy}: {e}");
    assert!(e.message.contains("rolled back"), "{}", e.message);
    assert!(can_login(&role, &old).await, "{strategy}: the old password works again");

    let (current, value) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!((current.version, value.as_str()), (1, old.as_str()));
    let (rejected, rejected_value) = version(&engine, APP, 2).await;
    assert_eq!(rejected.attr("rolled_back"), Some("true"));
    assert!(
        !can_login(&role, &rejected_value).await,
        "the rejected password is gone"
    );
    assert!(
        engine
            .get_secret(APP, rotation_core::secret::VersionSelector::Stage(Stage::Pending))
            .await
            .is_err(),
        "no PENDING left"
    );

    // The listener was really asked, with the new value as bearer token.
    let seen = requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/check");
    assert_eq!(seen[0].header("authorization"), format!("Bearer {rejected_value}"));

    let history = engine.secret_history(APP, 10).await.unwrap();
    let run = &history[0];
    assert_eq!(run.status, RotationStatus::RolledBack);
    assert_eq!(run.error_reason.as_deref(), Some("verification_failed"));
    let http_step = assert_rolled_back_after_http_test(run, &test, &strategy.to_string());
    let log = |name: &str| &run.steps.iter().find(|s| s.step == name).unwrap().log;
    assert!(
        log("set").contains(&format!("ALTER ROLE {role} PASSWORD [redacted]")),
        "{}",
        log("set")
    );
    assert!(log("test").contains(&format!("login as {role}")), "{}", log("test"));
    assert!(log(&http_step).contains("503"), "{}", log(&http_step));
    assert!(
        log("rollback").contains(&format!("ALTER ROLE {role} PASSWORD [redacted]")),
        "{}",
        log("rollback")
    );
    for step in &run.steps {
        assert!(!step.log.is_empty(), "{step:?}");
        for secret in [&old, &rejected_value] {
            assert!(!step.log.contains(secret.as_str()), "{step:?}");
        }
    }
    drop_roles(&[&role]).await;
}

#[tokio::test]
async fn immediate_rotation_failing_verification_is_rolled_back() {
    forced_verification_failure_rolls_back(Strategy::Immediate).await;
}

#[tokio::test]
async fn staged_rotation_failing_verification_is_rolled_back() {
    forced_verification_failure_rolls_back(Strategy::Staged).await;
}

/// Blue-green with a verification test answering 503: the idle slot's
/// change is rolled back, the slot in use keeps working with the CURRENT
/// password, and CURRENT (version, value, `username`) does not move.
async fn blue_green_failure(env: &Env, idle: &str, in_use: &str, test: &str) {
    let engine = env.engine();
    let (before, before_value) = at_stage(&engine, APP, Stage::Current).await;
    let e = engine.rotate_secret(rotate(APP)).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    assert!(e.message.contains("rolled back"), "{}", e.message);

    let (current, value) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(current.version, before.version, "CURRENT did not move");
    assert_eq!(value, before_value);
    assert_eq!(
        current.attr("username"),
        Some(in_use),
        "CURRENT still names the slot in use"
    );
    assert!(
        can_login(in_use, &value).await,
        "the role in use logs in with the CURRENT password"
    );
    let rejected_version = before.version + 1;
    let (rejected, rejected_value) = version(&engine, APP, rejected_version).await;
    assert_eq!(rejected.attr("rolled_back"), Some("true"));
    assert_eq!(
        rejected.attr("username"),
        Some(idle),
        "the idle slot was the one rotated"
    );
    assert!(
        !can_login(idle, &rejected_value).await,
        "the rejected password of the idle slot is gone"
    );
    assert!(!can_login(in_use, &rejected_value).await);
    assert!(
        engine
            .get_secret(APP, rotation_core::secret::VersionSelector::Stage(Stage::Pending))
            .await
            .is_err(),
        "no PENDING left"
    );

    let history = engine.secret_history(APP, 10).await.unwrap();
    let run = &history[0];
    assert_eq!(run.status, RotationStatus::RolledBack);
    assert_eq!(run.error_reason.as_deref(), Some("verification_failed"));
    assert_eq!(
        (run.old_version, run.new_version),
        (Some(before.version), Some(rejected_version))
    );
    assert_rolled_back_after_http_test(run, test, "blue-green");
    let log = |name: &str| &run.steps.iter().find(|s| s.step == name).unwrap().log;
    assert!(
        log("set").contains(&format!("ALTER ROLE {idle} PASSWORD")),
        "{}",
        log("set")
    );
    assert!(
        log("rollback").contains(&format!("ALTER ROLE {idle} PASSWORD")),
        "the rollback acts on the idle slot: {}",
        log("rollback")
    );
    for step in &run.steps {
        assert!(!step.log.contains(&format!("ALTER ROLE {in_use} ")), "{step:?}");
        assert!(!step.log.contains(rejected_value.as_str()), "{step:?}");
        assert!(!step.log.contains(before_value.as_str()), "{step:?}");
    }
}

#[tokio::test]
async fn blue_green_failing_verification_rolls_back_the_idle_role() {
    let env = Env::new().await;
    let engine = env.engine();
    let role = unique_role();
    let (blue, green) = (format!("{role}_blue"), format!("{role}_green"));
    let blue_old = random("blue");
    let green_old = random("green");
    create_role(&blue, &blue_old).await;
    create_role(&green, &green_old).await;
    let (addr, requests) = http_receiver(503).await;
    let test = format!("http:http://{addr}/check");
    set_policy(&engine, "bg", |p| {
        p.strategy = Some(Strategy::BlueGreen);
        p.verification_tests = vec![test.clone()];
    })
    .await;
    put_database(&env, &role, &blue_old, "bg").await;

    // The first rotation would move to green; green fails verification.
    blue_green_failure(&env, &green, &blue, &test).await;
    assert!(can_login(&blue, &blue_old).await, "blue (in use) is untouched");
    assert_eq!(requests.lock().unwrap().len(), 1, "the HTTP test was asked once");
    drop_roles(&[&blue, &green]).await;
}

/// The rolled-back slot had a known value of its own (blue's first
/// password, version 1): after a successful flip to green, a failed
/// rotation of blue restores blue's last password there.
#[tokio::test]
async fn blue_green_failing_verification_restores_the_idle_roles_last_password() {
    let env = Env::new().await;
    let engine = env.engine();
    let role = unique_role();
    let (blue, green) = (format!("{role}_blue"), format!("{role}_green"));
    let blue_old = random("blue");
    let green_old = random("green");
    create_role(&blue, &blue_old).await;
    create_role(&green, &green_old).await;
    let (ok_addr, _) = http_receiver(200).await;
    let (bad_addr, _) = http_receiver(503).await;
    let ok_test = format!("http:http://{ok_addr}/check");
    let bad_test = format!("http:http://{bad_addr}/check");
    set_policy(&engine, "bg", |p| {
        p.strategy = Some(Strategy::BlueGreen);
        p.verification_tests = vec![ok_test.clone()];
    })
    .await;
    put_database(&env, &role, &blue_old, "bg").await;
    engine.rotate_secret(rotate(APP)).await.unwrap();
    let (current, green_new) = at_stage(&engine, APP, Stage::Current).await;
    assert_eq!(current.attr("username"), Some(green.as_str()));
    assert!(can_login(&green, &green_new).await);

    set_policy(&engine, "bg", |p| {
        p.strategy = Some(Strategy::BlueGreen);
        p.verification_tests = vec![bad_test.clone()];
    })
    .await;
    blue_green_failure(&env, &blue, &green, &bad_test).await;
    assert!(can_login(&green, &green_new).await, "green (in use) is untouched");
    let history = engine.secret_history(APP, 10).await.unwrap();
    let rollback = history[0].steps.iter().find(|s| s.step == "rollback").unwrap();
    assert!(
        can_login(&blue, &blue_old).await,
        "blue's rolled-back change restores blue's last password (version 1, `username` {blue}); rollback: {}",
        rollback.log
    );
    drop_roles(&[&blue, &green]).await;
}

/// Checks that `run` went create, set, test, then failed the HTTP test
/// `test` and rolled back; returns that test's step name.
fn assert_rolled_back_after_http_test(run: &rotation_core::engine::HistoryEntry, test: &str, context: &str) -> String {
    let steps: Vec<(&str, bool)> = run.steps.iter().map(|s| (s.step.as_str(), s.ok)).collect();
    let http_step = format!("test:{test}");
    assert_eq!(
        steps,
        [
            ("create", true),
            ("set", true),
            ("test", true),
            (http_step.as_str(), false),
            ("rollback", true)
        ],
        "{context}: {run:#?}"
    );
    http_step
}
