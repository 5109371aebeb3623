//! The audit log detects edited, deleted and inserted events.

use crate::support::{Env, raw_pool};

fn populated() -> Env {
    let env = Env::init();
    env.authority_with_chains("org-acme", &["agent-a"]);
    env.ok(&["authority", "rotate", "org-acme"]);
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    env
}

fn tamper(env: &Env, sql: &'static str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = raw_pool(&env.db_path()).await;
        let done = sqlx::query(sql).execute(&pool).await.unwrap();
        assert!(done.rows_affected() > 0, "{sql} changed nothing");
        pool.close().await;
    });
}

fn assert_tampered(env: &Env) {
    let (reason, stderr) = env.fails(&["audit", "verify"]);
    assert_eq!(reason, "tampered", "{stderr}");
}

#[test]
fn seed_events_are_recorded() {
    let env = populated();
    let events = env.json(&["audit", "list", "--limit", "100"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in [
        "store_initialised",
        "authority_created",
        "key_created",
        "chain_issued",
        "rotation_started",
        "rotation_completed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let completed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "rotation_completed")
        .unwrap();
    assert!(!completed["rotation_id"].is_null());
    assert_eq!(completed["target"], "authority:org-acme");
    assert_eq!(completed["details"]["chains_updated"], 1);
}

#[test]
fn an_edited_event_is_detected() {
    let env = populated();
    tamper(
        &env,
        "UPDATE audit_events SET details = '{\"chains_updated\":0}' WHERE event = 'rotation_completed'",
    );
    assert_tampered(&env);
}

#[test]
fn a_deleted_event_is_detected_in_the_middle_and_at_the_end() {
    let env = populated();
    tamper(&env, "DELETE FROM audit_events WHERE seq = 3");
    assert_tampered(&env);
    let env = populated();
    tamper(
        &env,
        "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)",
    );
    assert_tampered(&env);
}

#[test]
fn an_inserted_event_is_detected() {
    let env = populated();
    tamper(
        &env,
        "INSERT INTO audit_events (seq, id, at, event, target, rotation_id, actor, details, prev_hash, hash)
         SELECT seq + 1000, id || 'x', at, 'key_revoked', target, rotation_id, actor, details, hash, hash
         FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)",
    );
    assert_tampered(&env);
}
