//! Keyrings and values through the CLI: round trips, rotation, migration
//! killed and resumed, dry runs, retirement, tampering, policies.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Env, raw_pool};

fn keyring_env() -> Env {
    let env = Env::init();
    env.ok(&["keyring", "create", "payments"]);
    env
}

fn import(env: &Env, n: usize) -> std::path::PathBuf {
    let path = env.dir.path().join("values.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        writeln!(
            f,
            "{}",
            serde_json::json!({"id": format!("v-{i:07}"), "value": format!("secret-{i}-{}", "x".repeat(40))})
        )
        .unwrap();
    }
    drop(f);
    let out = env.json(&["value", "import", "--keyring", "payments", path.to_str().unwrap()]);
    assert_eq!(out["imported"], n as u64);
    path
}

fn distribution(env: &Env) -> Vec<(u64, u64)> {
    let report = env.json(&["keyring", "report", "payments"]);
    report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["values"].as_u64().unwrap()))
        .collect()
}

fn sql(env: &Env, statement: &'static str) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = raw_pool(&env.db_path()).await;
        let n = sqlx::query(statement).execute(&pool).await.unwrap().rows_affected();
        pool.close().await;
        n
    })
}

#[test]
fn encrypt_decrypt_rotate_and_old_values_still_decrypt() {
    let env = keyring_env();
    let mut c = env.cmd();
    c.args([
        "--output",
        "json",
        "value",
        "encrypt",
        "--keyring",
        "payments",
        "db/password",
    ])
    .write_stdin("hunter2");
    let out = c.output().unwrap();
    assert!(out.status.success());
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored["key_version"], 1);
    assert!(stored["sealed"].as_str().unwrap().starts_with("rot:v1:"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
    assert_eq!(
        env.ok(&["value", "decrypt", "--keyring", "payments", "db/password"]),
        "hunter2"
    );

    let rotated = env.json(&["keyring", "rotate", "payments"]);
    assert_eq!(rotated["previous_version"], 1);
    assert_eq!(rotated["new_version"], 2);
    assert_eq!(
        env.ok(&["value", "decrypt", "--keyring", "payments", "db/password"]),
        "hunter2"
    );
    env.ok(&["value", "encrypt", "--keyring", "payments", "api/key", "--value", "k-2"]);
    let listed = env.json(&["value", "list", "--keyring", "payments"]);
    let versions: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key_version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1], "api/key on v2, db/password still on v1");
    let reads = env.json(&["keyring", "history", "payments", "--event", "secret_read"]);
    assert_eq!(reads.as_array().unwrap().len(), 2, "every plaintext read is audited");
    let (reason, _) = env.fails(&["value", "decrypt", "--keyring", "payments", "nope"]);
    assert_eq!(reason, "not_found");
    let (reason, _) = env.fails(&["value", "decrypt", "--keyring", "nope", "db/password"]);
    assert_eq!(reason, "not_found");
}

#[test]
fn a_migration_killed_midway_finishes_when_run_again() {
    const N: usize = 60_000;
    let env = keyring_env();
    let input = import(&env, N);
    env.ok(&["keyring", "rotate", "payments"]);
    let mut child = env
        .std_cmd()
        .args(["keyring", "migrate", "payments", "--batch-size", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = distribution(&env);
        let moved = d.iter().find(|(v, _)| *v == 2).map(|(_, n)| *n).unwrap_or(0);
        if moved > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the migration never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let d = distribution(&env);
    assert!(d.contains(&(1, d[0].1)) && d[0].1 > 0, "killed part-way: {d:?}");
    assert_eq!(d.iter().map(|(_, n)| n).sum::<u64>(), N as u64, "no value lost: {d:?}");

    let report = env.json(&["keyring", "migrate", "payments", "--batch-size", "1000"]);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["total"], N as u64);
    assert_eq!(
        report["migrated"].as_u64().unwrap() + report["already_current"].as_u64().unwrap(),
        N as u64
    );
    assert_eq!(distribution(&env), vec![(1, 0), (2, N as u64)]);

    // Every value decrypts to what was imported.
    let exported = env.dir.path().join("out.jsonl");
    env.ok(&[
        "value",
        "export",
        "--keyring",
        "payments",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap(),
        std::fs::read_to_string(&input).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn dry_runs_change_nothing_and_retire_waits_for_migration() {
    let env = keyring_env();
    import(&env, 300);
    let before_events = env
        .json(&["audit", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();
    let dry = env.json(&["keyring", "rotate", "payments", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["new_version"], 2);
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 1);
    env.ok(&["keyring", "rotate", "payments"]);
    let before = distribution(&env);
    let events = env
        .json(&["audit", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();
    let dry = env.json(&["keyring", "migrate", "payments", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["migrated"], 0);
    assert_eq!(dry["total"], 300);
    assert_eq!(distribution(&env), before, "dry run moved nothing");
    assert_eq!(
        env.json(&["audit", "list", "--limit", "1000"])
            .as_array()
            .unwrap()
            .len(),
        events
    );
    assert!(events > before_events);

    let (reason, stderr) = env.fails(&["keyring", "retire", "payments", "--version", "1"]);
    assert_eq!(reason, "invalid_input");
    assert!(stderr.contains("300 values"), "{stderr}");
    let (reason, _) = env.fails(&["keyring", "retire", "payments", "--version", "2"]);
    assert_eq!(reason, "invalid_input", "the current version cannot retire");
    env.ok(&["keyring", "migrate", "payments"]);
    let retired = env.json(&["keyring", "retire", "payments", "--version", "1"]);
    assert_eq!(retired["state"], "retired");
    // Full rotation with --retire-old keeps only the current version alive.
    let full = env.json(&["keyring", "full-rotation", "payments", "--retire-old"]);
    assert_eq!(full["rotation"]["new_version"], 3);
    assert_eq!(full["migration"]["migrated"], 300);
    assert_eq!(full["migration"]["retired_versions"], serde_json::json!([2]));
    let health = env.json(&["keyring", "health-check", "payments"]);
    assert_eq!(health["healthy"], true);
}

#[test]
fn moved_and_tampered_values_are_refused_and_reported_by_id() {
    let env = keyring_env();
    import(&env, 50);
    // Copy v-0000001's ciphertext onto v-0000002: bound to its id, it does not open there.
    sql(
        &env,
        "UPDATE sealed_values SET sealed = (SELECT sealed FROM sealed_values WHERE id = 'v-0000001') WHERE id = 'v-0000002'",
    );
    let (reason, _) = env.fails(&["value", "decrypt", "--keyring", "payments", "v-0000002"]);
    assert_eq!(reason, "tampered");
    assert_eq!(
        env.ok(&["value", "decrypt", "--keyring", "payments", "v-0000001"])
            .len(),
        49
    );
    // Flip a bit of another value's ciphertext.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = raw_pool(&env.db_path()).await;
        let mut sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM sealed_values WHERE id = 'v-0000007'")
            .fetch_one(&pool)
            .await
            .unwrap();
        sealed[20] ^= 0x01;
        sqlx::query("UPDATE sealed_values SET sealed = ? WHERE id = 'v-0000007'")
            .bind(sealed)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    env.ok(&["keyring", "rotate", "payments"]);
    let out = env.run(&["--output", "json", "keyring", "migrate", "payments"]);
    assert!(!out.status.success(), "a migration with failures exits non-zero");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 2);
    assert_eq!(report["migrated"], 48);
    let ids: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["v-0000002", "v-0000007"]);
    assert!(
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["reason"] == "tampered")
    );
    let health = env.run(&["keyring", "health-check", "payments"]);
    assert!(
        health.status.success(),
        "stranded values are on v1, which still decrypts"
    );
}

#[test]
fn usage_and_composite_policies_rotate_through_run_due() {
    let mut env = keyring_env();
    env.ok(&["policy", "set", "busy", "--max-uses", "5"]);
    env.ok(&["schedule", "add", "keyring:payments", "--policy", "busy"]);
    for i in 0..4 {
        env.ok(&[
            "value",
            "encrypt",
            "--keyring",
            "payments",
            &format!("k{i}"),
            "--value",
            "v",
        ]);
    }
    let outcomes = env.json(&["schedule", "run-due"]);
    assert_eq!(outcomes[0]["skipped"], true, "4 uses: not due yet: {outcomes}");
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 1);
    env.ok(&["value", "encrypt", "--keyring", "payments", "k4", "--value", "v"]);
    let outcomes = env.json(&["schedule", "run-due"]);
    assert_eq!(outcomes[0]["result"]["new_version"], 2, "{outcomes}");
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 2);
    // The new version has no uses yet: the policy is quiet again.
    assert_eq!(env.json(&["schedule", "run-due"])[0]["skipped"], true);

    // Composite: 30 days OR 1000 uses, with migration after rotation.
    env.ok(&["keyring", "create", "tokens"]);
    env.ok(&["value", "encrypt", "--keyring", "tokens", "t1", "--value", "v"]);
    env.ok(&[
        "policy",
        "set",
        "either",
        "--max-age-days",
        "30",
        "--max-uses",
        "1000",
        "--migrate",
        "--retire-old",
    ]);
    env.ok(&["schedule", "add", "keyring:tokens", "--policy", "either"]);
    let quiet = env.json(&["schedule", "run-due"]);
    assert!(
        quiet.as_array().unwrap().iter().all(|o| o["skipped"] == true),
        "{quiet}"
    );
    env.now = Some((chrono::Utc::now() + chrono::TimeDelta::days(31)).to_rfc3339());
    let fired = env.json(&["schedule", "run-due"]);
    let tokens = fired
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["target"] == "keyring:tokens")
        .unwrap();
    assert_eq!(tokens["result"]["new_version"], 2, "{fired}");
    assert_eq!(tokens["result"]["migration"]["migrated"], 1);
    assert_eq!(
        tokens["result"]["migration"]["retired_versions"],
        serde_json::json!([1])
    );

    let (reason, stderr) = env.fails(&["policy", "set", "bad", "--cron", "61 * * * *"]);
    assert_eq!(reason, "invalid_policy");
    assert!(stderr.contains("cron"), "{stderr}");
    let (reason, stderr) = env.fails(&["policy", "set", "bad", "--monthly", "32:00:00"]);
    assert_eq!(reason, "invalid_policy");
    assert!(stderr.contains("monthly.day"), "{stderr}");
    let (reason, _) = env.fails(&["schedule", "add", "keyring:payments", "--policy", "nope"]);
    assert_eq!(reason, "not_found");
}
