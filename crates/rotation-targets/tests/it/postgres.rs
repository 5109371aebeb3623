//! `PostgresRoleTarget` against the server of `DATABASE_URL` (required:
//! these tests fail without it rather than pass without checking anything).

use std::str::FromStr;

use rotation_core::Reason;
use rotation_core::ports::{CredentialTarget, Step, StepContext, Verifier};
use rotation_core::secret::{SecretConfig, SecretType, SecretValue, Strategy};
use rotation_targets::PostgresRoleTarget;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::support::{at, ctx, random, secret, with_values};

const ADMIN: &str = "db/admin";

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a PostgreSQL superuser URL (postgres://user:pw@127.0.0.1:port/db); \
         `cargo xtask test` starts a throwaway server and sets it",
    )
}

fn admin_password() -> String {
    url::Url::parse(&database_url())
        .expect("DATABASE_URL is a URL")
        .password()
        .unwrap_or_default()
        .to_owned()
}

async fn admin() -> PgConnection {
    PgConnection::connect(&database_url())
        .await
        .expect("connect as DATABASE_URL")
}

/// Creates a LOGIN role with `password`; returns its name.
async fn create_role(name: &str, password: &str) {
    let mut conn = admin().await;
    let sql: String = sqlx::query_scalar("SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)")
        .bind(name)
        .bind(password)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn drop_role(name: &str) {
    let mut conn = admin().await;
    let sql: String = sqlx::query_scalar("SELECT format('DROP ROLE IF EXISTS %I', $1::text)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
}

/// Whether `role` can log in with `password` on a fresh connection.
async fn can_login(role: &str, password: &str) -> bool {
    let options = PgConnectOptions::from_str(&database_url())
        .unwrap()
        .username(role)
        .password(password);
    match options.connect().await {
        Ok(conn) => {
            conn.close().await.unwrap();
            true
        }
        Err(sqlx::Error::Database(e)) => {
            assert_eq!(e.code().as_deref(), Some("28P01"), "unexpected refusal: {e}");
            false
        }
        Err(e) => panic!("cannot reach the test server: {e}"),
    }
}

/// The role's stored password (`pg_authid.rolpassword`, superuser only).
async fn stored_password(role: &str) -> Option<String> {
    let mut conn = admin().await;
    let stored = sqlx::query_scalar("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    stored
}

fn role_ctx(role: &str, step: Step) -> StepContext {
    let config = SecretConfig {
        admin_secret: Some(ADMIN.into()),
        role: Some(role.into()),
        ..SecretConfig::default()
    };
    let mut c = ctx(secret("db/app", SecretType::Database, config), step);
    c.references.insert(ADMIN.into(), SecretValue::new(database_url()));
    c
}

fn unique_role() -> String {
    format!("rt_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Asserts no secret of the test shows in `text`.
fn assert_clean(text: &str, secrets: &[&str]) {
    for s in secrets.iter().chain([&admin_password().as_str()]) {
        assert!(s.is_empty() || !text.contains(s), "a secret leaked into {text:?}");
    }
}

#[tokio::test]
async fn set_test_rollback_change_the_role_password() {
    let role = unique_role();
    // Quotes and backslashes must be quoted correctly by the target.
    let old = format!("{}'o\"ld\\", random("old"));
    let new = format!("{}'n\"ew\\ $$", random("new"));
    create_role(&role, &old).await;
    let target = PostgresRoleTarget::new();
    let base = role_ctx(&role, Step::Create);
    let secrets = [old.as_str(), new.as_str()];

    let out = target.run(&with_values(&base, Some(&old), None)).await.unwrap();
    assert!(out.value.is_none(), "the engine generates database passwords");

    let set = with_values(&at(&base, Step::Set), Some(&old), Some(&new));
    let out = target.run(&set).await.unwrap();
    assert!(out.log.contains(&format!("ALTER ROLE {role}")), "{}", out.log);
    assert_clean(&out.log, &secrets);
    // Idempotent: a resumed run repeats it.
    target.run(&set).await.unwrap();
    assert!(can_login(&role, &new).await, "the new password works");
    assert!(!can_login(&role, &old).await, "the old password is refused");
    let stored = stored_password(&role).await.unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    let test = with_values(&at(&base, Step::Test), Some(&old), Some(&new));
    let out = target.run(&test).await.unwrap();
    assert_clean(&out.log, &secrets);
    target.verify(&test).await.unwrap();

    let wrong = with_values(&at(&base, Step::Test), Some(&old), Some("not-the-password"));
    let e = target.run(&wrong).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{}", e.message);
    assert_clean(&e.message, &[old.as_str(), new.as_str(), "not-the-password"]);
    assert_eq!(
        target.verify(&wrong).await.unwrap_err().reason,
        Reason::VerificationFailed
    );

    let rollback = with_values(&at(&base, Step::Rollback), Some(&old), Some(&new));
    let out = target.run(&rollback).await.unwrap();
    assert_clean(&out.log, &secrets);
    target.run(&rollback).await.unwrap();
    assert!(can_login(&role, &old).await, "rollback restores the old password");
    assert!(
        !can_login(&role, &new).await,
        "after rollback the new password is refused"
    );

    // Finish and disable change nothing.
    target.run(&at(&test, Step::Finish)).await.unwrap();
    target.run(&at(&test, Step::Disable)).await.unwrap();
    assert!(can_login(&role, &old).await);

    // Rollback without a current value: no password at all.
    let none = with_values(&at(&base, Step::Rollback), None, Some(&new));
    target.run(&none).await.unwrap();
    assert!(!can_login(&role, &old).await);
    assert!(!can_login(&role, &new).await);

    drop_role(&role).await;
}

#[tokio::test]
async fn the_server_is_sent_a_scram_verifier_not_the_password() {
    let role = unique_role();
    let (old, new) = (random("old"), random("new"));
    create_role(&role, &old).await;
    // A session that would store an MD5 hash of a plaintext password: the
    // statement carries a SCRAM verifier, which the server keeps as given.
    let mut url = url::Url::parse(&database_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("options", "-c password_encryption=md5");
    let mut set = with_values(&role_ctx(&role, Step::Set), Some(&old), Some(&new));
    set.references.insert(ADMIN.into(), SecretValue::new(url.to_string()));
    let target = PostgresRoleTarget::new();
    target.run(&set).await.unwrap();
    let stored = stored_password(&role).await.unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    assert!(can_login(&role, &new).await, "the new password works");
    assert!(!can_login(&role, &old).await, "the old password is refused");
    drop_role(&role).await;
}

#[tokio::test]
async fn blue_green_acts_on_the_named_slot_only() {
    let role = unique_role();
    let (blue, green) = (format!("{role}_blue"), format!("{role}_green"));
    let (blue_pw, green_pw, green_new) = (random("b0"), random("g0"), random("g1"));
    create_role(&blue, &blue_pw).await;
    create_role(&green, &green_pw).await;
    let target = PostgresRoleTarget::new();
    assert!(target.strategies().contains(&Strategy::BlueGreen));

    let mut base = role_ctx(&role, Step::Set);
    base.strategy = Strategy::BlueGreen;
    base.slot = Some(green.clone());
    let set = with_values(&base, Some(&blue_pw), Some(&green_new));
    let out = target.run(&set).await.unwrap();
    assert!(out.log.contains(&green), "{}", out.log);
    assert!(can_login(&green, &green_new).await);
    assert!(!can_login(&green, &green_pw).await);
    assert!(can_login(&blue, &blue_pw).await, "the other slot is untouched");

    target.run(&at(&set, Step::Test)).await.unwrap();
    // The pending value is not the blue role's password.
    let mut on_blue = at(&set, Step::Test);
    on_blue.slot = Some(blue.clone());
    let e = target.run(&on_blue).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert_clean(&e.message, &[&blue_pw, &green_pw, &green_new]);

    drop_role(&blue).await;
    drop_role(&green).await;
}

#[tokio::test]
async fn failures_have_stable_reasons_and_no_secrets() {
    let target = PostgresRoleTarget::new();
    assert!(!target.strategies().contains(&Strategy::DualWrite));
    let pw = random("pw");

    // A role that does not exist.
    let missing = unique_role();
    let set = with_values(&role_ctx(&missing, Step::Set), None, Some(&pw));
    let e = target.run(&set).await.unwrap_err();
    assert_eq!(e.reason, Reason::RotationFailed, "{}", e.message);
    assert!(e.message.contains("does not exist"), "{}", e.message);
    assert_clean(&e.message, &[&pw]);

    // Missing settings.
    let mut no_admin = set.clone();
    no_admin.secret.config.admin_secret = None;
    assert_eq!(target.run(&no_admin).await.unwrap_err().reason, Reason::InvalidInput);
    let mut no_ref = set.clone();
    no_ref.references.clear();
    assert_eq!(target.run(&no_ref).await.unwrap_err().reason, Reason::InvalidInput);
    let mut no_role = set.clone();
    no_role.secret.config.role = None;
    assert_eq!(target.run(&no_role).await.unwrap_err().reason, Reason::InvalidInput);

    // An unreachable server: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut url = url::Url::parse(&database_url()).unwrap();
    url.set_port(Some(port)).unwrap();
    let mut down = set.clone();
    down.references.insert(ADMIN.into(), SecretValue::new(url.to_string()));
    for step in [Step::Set, Step::Test, Step::Rollback] {
        let e = target.run(&at(&down, step)).await.unwrap_err();
        assert_eq!(e.reason, Reason::BackendUnavailable, "{step:?}: {}", e.message);
        assert_clean(&e.message, &[&pw]);
        assert!(!format!("{e:?}").contains(&pw));
    }

    // A wrong admin password fails the step without showing it.
    let mut bad_admin = url::Url::parse(&database_url()).unwrap();
    bad_admin.set_password(Some("wrong-admin-pw")).unwrap();
    let mut refused = set.clone();
    refused
        .references
        .insert(ADMIN.into(), SecretValue::new(bad_admin.to_string()));
    let e = target.run(&refused).await.unwrap_err();
    assert_eq!(e.reason, Reason::RotationFailed, "{}", e.message);
    assert_clean(&e.message, &[&pw, "wrong-admin-pw"]);

    let d = target.describe(&set.secret);
    assert!(d.contains(&format!("ALTER ROLE {missing}")), "{d}");
}
