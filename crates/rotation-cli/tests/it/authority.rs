//! Authorities: rotate, status, schedule, run-due, revoke, JWKS, errors.

use serde_json::Value;

use crate::support::{Env, hours_from_now};

#[test]
fn quickstart_runs_twice_on_a_fresh_directory() {
    let env = Env::new();
    // No --store: the design's default under the working directory.
    let mut first = env.cmd();
    first.env_remove("ROTATION_STORE").arg("quickstart");
    first.assert().success();
    assert!(env.dir.path().join("rotation-data/rotation.db").exists());
    let key = env.dir.path().join("rotation-data/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let mut second = env.cmd();
    second
        .env_remove("ROTATION_STORE")
        .args(["--output", "json", "quickstart"]);
    let out = second.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["initialised"], false);
    assert_eq!(report["chains_issued"].as_array().unwrap().len(), 0);
    assert_eq!(report["rotation"]["chains_updated"], 3);
    assert!(
        report["verification"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["valid"] == true)
    );
    assert_eq!(report["verification"].as_array().unwrap().len(), 3);
}

#[test]
fn rotate_reports_the_seed_fields_and_status_follows() {
    let env = Env::init();
    env.authority_with_chains("org-acme", &["agent-1", "agent-2"]);
    let before = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(before["status"], "idle");
    let old_key = before["current_key_id"].as_str().unwrap().to_owned();

    let result = env.json(&["authority", "rotate", "org-acme", "--grace-period-hours", "48"]);
    for field in [
        "rotation_id",
        "new_key_id",
        "old_key_id",
        "chains_updated",
        "started_at",
        "completed_at",
        "grace_period_end",
    ] {
        assert!(!result[field].is_null(), "missing {field}: {result}");
    }
    assert_eq!(result["old_key_id"], old_key.as_str());
    assert_eq!(result["chains_updated"], 2);
    let new_key = result["new_key_id"].as_str().unwrap();
    assert_ne!(new_key, old_key);

    let status = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(status["status"], "grace_period");
    assert_eq!(status["current_key_id"], new_key);
    assert_eq!(status["rotation_period_days"], 90);
    assert_eq!(status["grace_period_keys"][&old_key], result["grace_period_end"]);
    assert_eq!(status["pending_revocations"].as_array().unwrap().len(), 0);
    assert!(!status["last_rotation"].is_null());
    let end = chrono::DateTime::parse_from_rfc3339(result["grace_period_end"].as_str().unwrap()).unwrap();
    let started = chrono::DateTime::parse_from_rfc3339(result["started_at"].as_str().unwrap()).unwrap();
    assert!((end - started).num_hours() >= 47);

    let verdicts = env.json(&["chain", "verify", "--all"]);
    assert!(verdicts.as_array().unwrap().iter().all(|v| v["valid"] == true));
}

#[test]
fn schedule_in_the_past_is_rejected_and_due_schedules_run_once() {
    let mut env = Env::init();
    env.authority_with_chains("org-acme", &["agent-1"]);
    let (reason, stderr) = env.fails(&["authority", "schedule", "org-acme", "--at", "2020-01-01T00:00:00Z"]);
    assert_eq!(reason, "invalid_schedule_time", "{stderr}");
    let (reason, _) = env.fails(&["authority", "schedule", "org-acme", "--at", "tomorrow"]);
    assert_eq!(reason, "invalid_input");

    let at = hours_from_now(1);
    let scheduled = env.json(&["authority", "schedule", "org-acme", "--at", &at]);
    let rotation_id = scheduled["rotation_id"].as_str().unwrap().to_owned();
    let status = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(status["status"], "pending");
    assert_eq!(status["next_scheduled"], scheduled["due_at"]);

    // Not due yet.
    let outcomes = env.json(&["schedule", "run-due"]);
    assert_eq!(outcomes.as_array().unwrap().len(), 0);

    env.now = Some(hours_from_now(2));
    let outcomes = env.json(&["schedule", "run-due"]);
    let outcomes = outcomes.as_array().unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["rotation_id"], rotation_id.as_str());
    assert_eq!(outcomes[0]["result"]["rotation_id"], rotation_id.as_str());
    assert_eq!(outcomes[0]["result"]["chains_updated"], 1);
    assert_eq!(env.json(&["schedule", "run-due"]).as_array().unwrap().len(), 0);
    let schedules = env.json(&["schedule", "list", "--all"]);
    assert_eq!(schedules[0]["state"], "done");
    let events = env.json(&["audit", "list"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"rotation_scheduled") && kinds.contains(&"rotation_completed"),
        "{kinds:?}"
    );
}

#[test]
fn revoke_waits_for_the_grace_period_unless_forced() {
    let mut env = Env::init();
    env.authority_with_chains("org-acme", &["agent-1"]);
    let first = env.json(&["authority", "rotate", "org-acme", "--grace-period-hours", "24"]);
    let old = first["old_key_id"].as_str().unwrap().to_owned();
    let current = first["new_key_id"].as_str().unwrap().to_owned();

    let (reason, stderr) = env.fails(&["authority", "revoke", "org-acme", &old]);
    assert_eq!(reason, "grace_period_not_expired");
    assert!(stderr.contains("--force"), "{stderr}");
    let (reason, _) = env.fails(&["authority", "revoke", "org-acme", &current]);
    assert_eq!(reason, "key_not_in_grace_period");
    let (reason, _) = env.fails(&["authority", "revoke", "org-acme", "org-acme.k-nope"]);
    assert_eq!(reason, "key_not_in_grace_period");
    let jwks = env.json(&["authority", "jwks", "org-acme"]);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // After the grace period: listed as pending revocation, then revoked.
    env.now = Some(hours_from_now(25));
    let status = env.json(&["authority", "status", "org-acme"]);
    assert_eq!(status["pending_revocations"][0], old.as_str());
    let revoked = env.json(&["authority", "revoke", "org-acme", &old]);
    assert_eq!(revoked["state"], "revoked");
    let jwks = env.json(&["authority", "jwks", "org-acme"]);
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![current.as_str()]);
    let (reason, _) = env.fails(&["authority", "revoke", "org-acme", &old]);
    assert_eq!(reason, "key_not_in_grace_period");

    // A forced revocation inside the grace period is audited as such.
    env.now = None;
    let second = env.json(&["authority", "rotate", "org-acme"]);
    let in_grace = second["old_key_id"].as_str().unwrap();
    env.fails(&["authority", "revoke", "org-acme", in_grace, "--force"]);
    env.ok(&[
        "authority",
        "revoke",
        "org-acme",
        in_grace,
        "--force",
        "--reason",
        "key leaked",
    ]);
    let events = env.json(&["audit", "list", "--limit", "1"]);
    assert_eq!(events[0]["event"], "key_force_revoked");
    assert_eq!(events[0]["details"]["reason"], "key leaked");
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
}

#[test]
fn unknown_authority_and_bad_input_give_stable_reasons() {
    let env = Env::init();
    for args in [
        vec!["authority", "rotate", "org-missing"],
        vec!["authority", "status", "org-missing"],
        vec!["authority", "show", "org-missing"],
        vec!["authority", "jwks", "org-missing"],
        vec!["chain", "issue", "agent-1", "--authority", "org-missing"],
        vec!["chain", "verify", "agent-none"],
    ] {
        let (reason, stderr) = env.fails(&args);
        assert_eq!(reason, "not_found", "{args:?}: {stderr}");
    }
    let (reason, _) = env.fails(&["authority", "create", "bad id"]);
    assert_eq!(reason, "invalid_input");
    env.ok(&["authority", "create", "org-acme"]);
    let (reason, _) = env.fails(&["authority", "create", "org-acme"]);
    assert_eq!(reason, "already_exists");
    let (reason, _) = env.fails(&["authority", "create", "org-b", "--rotation-period-days", "0"]);
    assert_eq!(reason, "invalid_input");
    let mut c = env.cmd();
    let out = c
        .env("ROTATION_NOW", "yesterday")
        .args(["authority", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[invalid_input]"));
    // Commands on a store that does not exist.
    let fresh = Env::new();
    let (reason, stderr) = fresh.fails(&["authority", "list"]);
    assert_eq!(reason, "not_found");
    assert!(stderr.contains("rotation init"), "{stderr}");
    let (reason, _) = env.fails(&["init"]);
    assert_eq!(reason, "already_exists");
}
