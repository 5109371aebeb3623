//! `rotation secret|policy|schedule|stats` for secrets, through the binary.

use crate::support::Env;

fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[test]
fn put_get_rotate_history_status_and_validate() {
    let env = Env::init();
    env.ok(&[
        "policy",
        "set",
        "monthly",
        "--interval-days",
        "30",
        "--strategy",
        "staged",
    ]);
    let put = env.json(&[
        "secret",
        "put",
        "app/token",
        "--value",
        "first-value-123",
        "--policy",
        "monthly",
    ]);
    assert_eq!(field(&put, &["version", "version"]), 1);
    assert_eq!(env.ok(&["secret", "get", "app/token"]).trim(), "first-value-123");
    let rotated = env.json(&["secret", "rotate", "app/token"]);
    assert_eq!(rotated["status"], "success");
    assert_eq!(rotated["strategy"], "staged");
    assert_eq!(
        (rotated["old_version"].as_u64(), rotated["new_version"].as_u64()),
        (Some(1), Some(2))
    );
    let current = env.ok(&["secret", "get", "app/token"]).trim().to_owned();
    assert_eq!(current.len(), 32);
    assert_eq!(
        env.ok(&["secret", "get", "app/token", "--stage", "previous"]).trim(),
        "first-value-123"
    );
    assert_eq!(
        env.ok(&["secret", "get", "app/token", "--version", "1"]).trim(),
        "first-value-123"
    );
    let got = env.json(&["secret", "get", "app/token", "--stage", "current"]);
    assert_eq!(got["version"], 2);
    assert_eq!(got["stages"], serde_json::json!(["CURRENT"]));

    let history = env.json(&["secret", "history", "app/token"]);
    assert_eq!(history[0]["status"], "success");
    assert_eq!(history[0]["old_version"], 1);
    assert!(history[0]["duration_ms"].is_i64());
    let status = env.json(&["secret", "status", "app/token"]);
    assert_eq!(status["current_version"], 2);
    assert_eq!(status["previous_version"], 1);
    assert_eq!(status["scheduled"], false);
    assert_eq!(status["last_status"], "success");

    let listed = env.json(&["secret", "list"]);
    assert_eq!(listed[0]["path"], "app/token");
    assert!(!listed.to_string().contains(&current), "listings never show values");

    env.ok(&["secret", "validate", "app/token", "--value", &current]);
    let (reason, _) = env.fails(&["secret", "validate", "app/token", "--value", "first-value-123"]);
    assert_eq!(reason, "verification_failed", "staged: the old value is not accepted");

    // Reads are audited.
    let audit = env.json(&["audit", "list", "--limit", "100"]);
    assert!(audit.as_array().unwrap().iter().any(|e| e["event"] == "secret_read"));
}

#[test]
fn api_keys_are_dual_write_with_a_grace_period() {
    let env = Env::init();
    env.ok(&[
        "policy",
        "set",
        "keys",
        "--interval-days",
        "30",
        "--grace-period-hours",
        "48",
    ]);
    env.ok(&[
        "secret",
        "put",
        "svc/api",
        "--type",
        "api_key",
        "--generate",
        "hex:40",
        "--policy",
        "keys",
    ]);
    let old = env.ok(&["secret", "get", "svc/api"]).trim().to_owned();
    assert_eq!(old.len(), 40);
    let rotated = env.json(&["secret", "rotate", "svc/api"]);
    assert_eq!(rotated["strategy"], "dual-write");
    assert!(rotated["grace_period_end"].is_string());
    let new = env.ok(&["secret", "get", "svc/api"]).trim().to_owned();
    let v = env.json(&["secret", "validate", "svc/api", "--value", &old]);
    assert_eq!(
        (v["valid"].as_bool(), v["stage"].as_str()),
        (Some(true), Some("PREVIOUS"))
    );
    env.json(&["secret", "validate", "svc/api", "--value", &new]);
}

#[test]
fn generators_and_caller_values() {
    let env = Env::init();
    env.ok(&["secret", "put", "gen/uuid", "--generate", "uuid"]);
    let u = env.ok(&["secret", "get", "gen/uuid"]).trim().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&u).unwrap().get_version_num(), 4);
    env.ok(&["secret", "put", "gen/rand", "--generate", "random:24:digits"]);
    let r = env.ok(&["secret", "get", "gen/rand"]).trim().to_owned();
    assert!(r.len() == 24 && r.bytes().all(|b| b.is_ascii_digit()));
    env.ok(&["secret", "rotate", "gen/rand", "--value", "custom_secret_value_123"]);
    assert_eq!(env.ok(&["secret", "get", "gen/rand"]).trim(), "custom_secret_value_123");
    let (reason, stderr) = env.fails(&["secret", "put", "gen/bad", "--generate", "dice:6"]);
    assert_eq!(reason, "invalid_input", "{stderr}");
    let (reason, _) = env.fails(&["secret", "get", "gen/none"]);
    assert_eq!(reason, "not_found");
    let (reason, _) = env.fails(&["secret", "put", "/abs/path", "--value", "x"]);
    assert_eq!(reason, "invalid_input");
    let (reason, _) = env.fails(&["secret", "put", "db/x", "--type", "database", "--value", "x"]);
    assert_eq!(
        reason, "invalid_input",
        "a database secret needs a role and an admin secret"
    );
}

#[test]
fn bad_policies_are_rejected_with_the_field_named_and_change_nothing() {
    let env = Env::init();
    let cases: &[(&[&str], &str)] = &[
        (&["--interval-days", "-5"], "interval_days"),
        (&["--interval-days", "30", "--max-retries", "-1"], "max_retries"),
        (
            &["--interval-days", "30", "--grace-period-hours", "-2"],
            "grace_period_hours",
        ),
        (&["--interval-days", "30", "--strategy", "sideways"], "strategy"),
        (&["--interval-days", "30", "--verify", "psychic"], "verification_tests"),
        (&["--interval-days", "30", "--generator", "dice"], "generator"),
        (&["--cron", "0 2 * *"], "cron"),
        (&["--cron", "0 2 31 2 * *"], "cron"),
        (&["--cron", "0 2 * * *", "--timezone", "Atlantis/Capital"], "timezone"),
        (&["--interval-days", "30", "--notify", "pigeon://home"], "notify"),
        (
            &["--interval-days", "30", "--rotation-type", "sometimes"],
            "rotation_type",
        ),
        (&["--interval-days", "30", "--window", "2h"], "window"),
        (&["--interval-days", "30", "--notify-before", "soon"], "notify_before"),
    ];
    for (args, field) in cases {
        let mut all = vec!["policy", "set", "p"];
        all.extend_from_slice(args);
        let (reason, stderr) = env.fails(&all);
        assert_eq!(reason, "invalid_policy", "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`{field}`")),
            "{args:?} should name {field}: {stderr}"
        );
    }
    assert_eq!(env.json(&["policy", "list"]), serde_json::json!([]));
    let shown = env.json(&[
        "policy",
        "set",
        "nightly",
        "--cron",
        "0 3 * * MON-FRI",
        "--timezone",
        "Europe/Berlin",
        "--window",
        "2h",
        "--strategy",
        "blue-green",
        "--verify",
        "nonempty",
        "--max-retries",
        "5",
        "--notify",
        "log",
        "--notify-before",
        "7d",
        "--notify-before",
        "1d",
    ]);
    assert_eq!(field(&shown, &["procedure", "rotation_type"]), "scheduled");
    assert_eq!(field(&shown, &["procedure", "strategy"]), "blue-green");
    assert_eq!(field(&shown, &["procedure", "window_minutes"]), 120);
    assert_eq!(
        field(&shown, &["procedure", "notify_before_hours"]),
        &serde_json::json!([168, 24])
    );
}

#[test]
fn schedules_with_offsets_plan_run_due_and_stats() {
    let mut env = Env::init();
    let t0 = chrono::Utc::now();
    env.now = Some(t0.to_rfc3339());
    env.ok(&["policy", "set", "monthly", "--interval-days", "30"]);
    env.ok(&["secret", "put", "pair/a", "--value", "value-a-0001"]);
    env.ok(&["secret", "put", "pair/b", "--value", "value-b-0001"]);
    env.ok(&["schedule", "add", "secret:pair/a", "--policy", "monthly"]);
    env.ok(&[
        "schedule",
        "add",
        "secret:pair/b",
        "--policy",
        "monthly",
        "--offset",
        "1h",
    ]);
    let audit_before = env.json(&["audit", "list", "--limit", "1"]);
    let plan = env.json(&["schedule", "plan", "--within", "40d"]);
    let plan = plan.as_array().unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!(plan[0]["target"], "secret:pair/a");
    assert_eq!(plan[1]["target"], "secret:pair/b");
    assert_eq!(plan[0]["strategy"], "staged");
    assert_eq!(plan[0]["touches"], "stored value only");
    let t = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(t(&plan[1]["at"]) - t(&plan[0]["at"]), chrono::TimeDelta::hours(1));
    assert_eq!(
        env.json(&["audit", "list", "--limit", "1"]),
        audit_before,
        "plan changes nothing"
    );
    assert!(
        env.json(&["schedule", "plan", "--within", "10d"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // 30 days and 30 minutes later: a is due, b (1 h offset) not yet.
    env.now = Some((t0 + chrono::TimeDelta::days(30) + chrono::TimeDelta::minutes(30)).to_rfc3339());
    env.ok(&["schedule", "run-due"]);
    assert_eq!(env.json(&["secret", "status", "pair/a"])["current_version"], 2);
    assert_eq!(env.json(&["secret", "status", "pair/b"])["current_version"], 1);
    env.now = Some((t0 + chrono::TimeDelta::days(30) + chrono::TimeDelta::minutes(90)).to_rfc3339());
    env.ok(&["schedule", "run-due"]);
    assert_eq!(env.json(&["secret", "status", "pair/b"])["current_version"], 2);

    let stats = env.json(&["stats"]);
    assert_eq!(stats["total_rotations"], 2);
    assert_eq!(stats["successful_rotations"], 2);
    assert_eq!(stats["success_rate"], 1.0);
    assert_eq!(stats["active_schedules"], 2);
    env.ok(&["stats", "--reset"]);
    assert_eq!(env.json(&["stats"])["total_rotations"], 0);
    let (reason, _) = env.fails(&["schedule", "resume", plan[0]["schedule_id"].as_str().unwrap()]);
    assert_eq!(reason, "invalid_input", "an active schedule cannot be resumed");
}

#[test]
fn a_failing_script_rolls_back_orphans_after_retries_and_no_value_leaks() {
    let mut env = Env::init();
    let script = env.dir.path().join("rotate.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ninput=$(cat)\necho \"step $1 got $input\"\necho \"stderr for $1: $input\" >&2\n[ \"$1\" = test ] && exit 3\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.ok(&[
        "policy",
        "set",
        "p",
        "--interval-days",
        "1",
        "--max-retries",
        "1",
        "--retry-backoff-seconds",
        "60",
    ]);
    let secret_value = "Sup3r-Secret-Value-4242";
    env.ok(&[
        "secret",
        "put",
        "svc/scripted",
        "--value",
        secret_value,
        "--script",
        script.to_str().unwrap(),
        "--policy",
        "p",
    ]);
    env.ok(&["schedule", "add", "secret:svc/scripted", "--policy", "p"]);

    let run = |env: &Env, args: &[&str]| {
        let mut cmd = env.std_cmd();
        cmd.env("ROTATION_LOG", "trace").args(args);
        cmd.output().unwrap()
    };
    let mut captured = String::new();
    let out = run(&env, &["secret", "rotate", "svc/scripted"]);
    assert!(!out.status.success());
    captured.push_str(&String::from_utf8_lossy(&out.stdout));
    captured.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(captured.contains("error[verification_failed]"), "{captured}");
    assert_eq!(
        env.ok(&["secret", "get", "svc/scripted"]).trim(),
        secret_value,
        "rolled back"
    );

    let history = env.json(&["secret", "history", "svc/scripted"]);
    assert_eq!(history[0]["status"], "rolled_back");
    let steps = history[0]["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["create", "set", "test", "rollback"]);
    let test_log = steps[2]["log"].as_str().unwrap();
    assert!(test_log.contains("exit") && test_log.contains('3'), "{test_log}");
    assert!(test_log.contains("[redacted]"), "{test_log}");

    // Scheduled attempts: two failures (one retry) orphan the schedule.
    for minutes in [2 * 24 * 60, 2 * 24 * 60 + 5] {
        env.now = Some((chrono::Utc::now() + chrono::TimeDelta::minutes(minutes)).to_rfc3339());
        let out = run(&env, &["schedule", "run-due"]);
        captured.push_str(&String::from_utf8_lossy(&out.stdout));
        captured.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let schedules = env.json(&["schedule", "list", "--all"]);
    assert_eq!(schedules[0]["state"], "orphaned", "{schedules}");
    let id = schedules[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(env.json(&["schedule", "resume", &id])["state"], "scheduled");

    let stats = env.json(&["stats"]);
    assert_eq!(stats["rollbacks"], 3);
    assert_eq!(stats["success_rate"], 0.0);

    for json in [
        env.ok(&["--output", "json", "secret", "history", "svc/scripted"]),
        env.ok(&["--output", "json", "audit", "list", "--limit", "500"]),
        env.ok(&["--output", "json", "secret", "status", "svc/scripted"]),
        captured.clone(),
    ] {
        assert!(!json.contains(secret_value), "a secret value leaked:\n{json}");
    }
    // Every generated value of the failed rotations was redacted too.
    for n in 2..=4 {
        if let Some(value) = env
            .run(&["secret", "get", "svc/scripted", "--version", &n.to_string()])
            .status
            .success()
            .then(|| env.ok(&["secret", "get", "svc/scripted", "--version", &n.to_string()]))
        {
            let value = value.trim();
            assert!(!captured.contains(value), "generated value of version {n} leaked");
            assert!(
                !env.ok(&["--output", "json", "secret", "history", "svc/scripted"])
                    .contains(value)
            );
        }
    }
}

#[test]
fn script_stdout_is_kept_only_with_script_log_and_apart_from_the_log() {
    let env = Env::init();
    let script = env.dir.path().join("encode.sh");
    // Prints the new value base64- and hex-encoded on stdout, and a note on stderr.
    std::fs::write(
        &script,
        r#"#!/bin/sh
value=$(sed -e 's/.*"pending":"\([^"]*\)".*/\1/')
printf 'step %s b64=%s hex=%s\n' "$1" "$(printf '%s' "$value" | base64 -w0)" \
  "$(printf '%s' "$value" | od -An -tx1 | tr -d ' \n')"
echo "note for $1" >&2
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    env.ok(&[
        "secret",
        "put",
        "svc/quiet",
        "--value",
        "first-value-1234",
        "--script",
        script,
    ]);
    env.ok(&[
        "secret",
        "put",
        "svc/logged",
        "--value",
        "first-value-5678",
        "--script",
        script,
        "--script-log",
    ]);
    for path in ["svc/quiet", "svc/logged"] {
        env.ok(&["secret", "rotate", path]);
        let new = env.ok(&["secret", "get", path]).trim().to_owned();
        let text = env.ok(&["--output", "json", "secret", "history", path]);
        let audit = env.ok(&["--output", "json", "audit", "list", "--limit", "500"]);
        use base64::Engine as _;
        for form in [
            new.clone(),
            base64::engine::general_purpose::STANDARD.encode(&new),
            hex::encode(&new),
        ] {
            assert!(!text.contains(&form) && !audit.contains(&form), "{path}: {form} leaked");
        }
        let history: serde_json::Value = serde_json::from_str(&text).unwrap();
        let steps = history[0]["steps"].as_array().unwrap();
        let set = steps.iter().find(|s| s["step"] == "set").unwrap();
        assert!(
            set["log"]
                .as_str()
                .unwrap()
                .starts_with("script set: exit 0; stderr: note for set"),
            "{set}"
        );
        if path == "svc/quiet" {
            // By default no step keeps stdout: the field is absent.
            assert!(steps.iter().all(|s| s.get("stdout").is_none()), "{text}");
            assert!(!text.contains("b64=") && !audit.contains("b64="), "{text}");
        } else {
            assert_eq!(set["stdout"], "step set b64=[redacted] hex=[redacted]", "{set}");
            assert!(!set["log"].as_str().unwrap().contains("b64="), "{set}");
        }
    }
    let logged = env.json(&["secret", "status", "svc/logged"]);
    assert!(logged.is_object());
}

#[test]
fn secrets_survive_master_key_rotation_and_backups_and_appear_in_the_report() {
    let mut env = Env::new();
    env.password = Some("first password".into());
    env.ok(&["init"]);
    env.ok(&["policy", "set", "p", "--interval-days", "30"]);
    env.ok(&["secret", "put", "db/app", "--value", "value-before-mk", "--policy", "p"]);
    env.ok(&["secret", "rotate", "db/app"]);
    let current = env.ok(&["secret", "get", "db/app"]);

    let mut c = env.cmd();
    c.env("NEW_PW", "second password")
        .args(["master-key", "rotate", "--new-password-env", "NEW_PW"]);
    assert!(c.output().unwrap().status.success());
    env.password = Some("second password".into());
    assert_eq!(
        env.ok(&["secret", "get", "db/app"]),
        current,
        "re-wrapped, still readable"
    );
    assert_eq!(
        env.ok(&["secret", "get", "db/app", "--stage", "previous"]).trim(),
        "value-before-mk"
    );
    env.password = Some("first password".into());
    let (reason, _) = env.fails(&["secret", "get", "db/app"]);
    assert_eq!(
        reason, "unauthorized",
        "the old master password no longer opens secrets"
    );
    env.password = Some("second password".into());

    let backup = env.dir.path().join("secrets.backup");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&std::fs::read(&backup).unwrap()).contains("value-before-mk"));
    let mut fresh = Env::new();
    fresh.password = Some("second password".into());
    fresh.ok(&["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(fresh.ok(&["secret", "get", "db/app"]), current);
    assert_eq!(fresh.json(&["secret", "history", "db/app"])[0]["status"], "success");

    // The report lists the secret, overdue once its policy fires.
    let report = env.json(&["report"]);
    let item = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"] == "secret:db/app")
        .expect("secret in the report")
        .clone();
    assert_eq!(item["current"], "v2");
    assert_eq!(item["overdue"], false);
    assert_eq!(item["max_age_days"], 30);
    env.now = Some((chrono::Utc::now() + chrono::TimeDelta::days(31)).to_rfc3339());
    let out = env.run(&["--output", "json", "report"]);
    assert_eq!(out.status.code(), Some(2), "overdue: exit 2");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["target"] == "secret:db/app" && i["overdue"] == true)
    );
}

#[test]
fn audit_list_filters_and_pages() {
    let env = Env::init();
    env.ok(&["secret", "put", "f/one", "--value", "value-one-1"]);
    env.ok(&["secret", "get", "f/one"]);
    env.ok(&["secret", "get", "f/one"]);
    env.ok(&["secret", "put", "f/two", "--value", "value-two-2"]);
    let reads = env.json(&["audit", "list", "--event", "secret_read"]);
    assert_eq!(reads.as_array().unwrap().len(), 2);
    let two = env.json(&["audit", "list", "--target", "secret:f/two"]);
    assert!(two.as_array().unwrap().iter().all(|e| e["target"] == "secret:f/two"));
    let first = env.json(&["audit", "list", "--limit", "2"]);
    let last_seq = first[1]["seq"].as_i64().unwrap();
    let next = env.json(&["audit", "list", "--limit", "2", "--before-seq", &last_seq.to_string()]);
    assert_eq!(next[0]["seq"].as_i64().unwrap(), last_seq - 1);
    let (reason, _) = env.fails(&["audit", "list", "--since", "yesterday"]);
    assert_eq!(reason, "invalid_input");
}

#[test]
fn a_manual_policy_without_a_trigger_rotates_only_on_request() {
    let env = Env::init();
    env.ok(&[
        "policy",
        "set",
        "by-hand",
        "--rotation-type",
        "manual",
        "--strategy",
        "staged",
    ]);
    let shown = env.json(&["policy", "show", "by-hand"]);
    assert_eq!(shown["procedure"]["rotation_type"], "manual", "{shown}");
    env.ok(&[
        "secret",
        "put",
        "app/manual",
        "--value",
        "manual-before",
        "--policy",
        "by-hand",
    ]);
    env.ok(&["schedule", "add", "secret:app/manual", "--policy", "by-hand"]);
    let due = env.json(&["schedule", "run-due"]);
    assert_eq!(
        env.ok(&["secret", "get", "app/manual"]).trim(),
        "manual-before",
        "{due}"
    );
    env.ok(&["secret", "rotate", "app/manual"]);
    assert_ne!(env.ok(&["secret", "get", "app/manual"]).trim(), "manual-before");
    let (reason, stderr) = env.fails(&["policy", "set", "nothing"]);
    assert_eq!(reason, "invalid_policy", "{stderr}");
    assert!(stderr.contains("--rotation-type manual"), "{stderr}");
}

#[test]
fn a_strategy_the_target_cannot_carry_out_is_refused_when_put_or_scheduled() {
    let env = Env::init();
    env.ok(&[
        "policy",
        "set",
        "dw",
        "--interval-days",
        "30",
        "--strategy",
        "dual-write",
    ]);
    env.ok(&[
        "secret",
        "put",
        "db/admin",
        "--value",
        "postgres://admin@127.0.0.1:9/db",
    ]);
    let database = [
        "secret",
        "put",
        "db/app",
        "--type",
        "database",
        "--admin-secret",
        "db/admin",
        "--role",
        "app",
        "--value",
        "the-roles-password",
    ];
    let (reason, stderr) = env.fails(&[&database[..], &["--policy", "dw"]].concat());
    assert_eq!(reason, "invalid_policy", "{stderr}");
    assert!(stderr.contains("strategy") && stderr.contains("dual-write"), "{stderr}");
    assert_eq!(env.fails(&["secret", "get", "db/app"]).0, "not_found", "nothing stored");
    env.ok(&database);
    let (reason, stderr) = env.fails(&["schedule", "add", "secret:db/app", "--policy", "dw"]);
    assert_eq!(reason, "invalid_policy", "{stderr}");
    let (reason, _) = env.fails(&[
        "secret",
        "put",
        "db/fresh",
        "--type",
        "database",
        "--admin-secret",
        "db/admin",
        "--role",
        "app",
    ]);
    assert_eq!(reason, "invalid_input", "a database secret's value must be given");
}

#[test]
fn rotate_takes_a_value_on_stdin_and_list_filters_by_prefix() {
    let env = Env::init();
    for path in ["db/prod/app", "db/prod/report", "db/production", "web/key"] {
        env.ok(&["secret", "put", path, "--generate", "hex:16"]);
    }
    let out = env
        .cmd()
        .args(["secret", "rotate", "db/prod/app", "--value-stdin"])
        .write_stdin("value-from-stdin-42\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.ok(&["secret", "get", "db/prod/app"]).trim(), "value-from-stdin-42");
    let out = env
        .cmd()
        .args(["secret", "rotate", "db/prod/app", "--value-stdin"])
        .write_stdin("\n")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty value is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_input"));
    assert_eq!(env.ok(&["secret", "get", "db/prod/app"]).trim(), "value-from-stdin-42");

    let listed = env.json(&["secret", "list", "db/prod/"]);
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["db/prod/app", "db/prod/report"],
        "db/production is not under db/prod"
    );
    assert_eq!(env.json(&["secret", "list"]).as_array().unwrap().len(), 4);
}

// ------------------------------------------------ database: a real PostgreSQL role

/// `DATABASE_URL`: a superuser URL of the test server; panics with
/// instructions without it (never skipped), like the other PostgreSQL tests.
fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: this test rotates a real PostgreSQL role. Run it with \
             `cargo xtask test` (which starts a throwaway PostgreSQL), or set \
             DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE for a superuser"
        ),
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `sql` over a fresh admin connection to `DATABASE_URL`.
fn admin_sql(sql: String) {
    use sqlx::{Connection, Executor};
    block_on(async {
        let mut admin = sqlx::PgConnection::connect(&database_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of DATABASE_URL: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|e| panic!("admin statement failed: {e}"));
        let _ = admin.close().await;
    });
}

/// Whether `role` logs in with `password` on a fresh connection (to the
/// host, port and database of `DATABASE_URL`) and runs `SELECT 1`. Only a
/// refused password (SQLSTATE 28P01) counts as "no"; anything else panics.
fn can_login(role: &str, password: &str) -> bool {
    use sqlx::{ConnectOptions, Connection};
    let options: sqlx::postgres::PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
    let options = options.username(role).password(password);
    block_on(async {
        match options.connect().await {
            Ok(mut conn) => {
                let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
                let _ = conn.close().await;
                one == 1
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28P01") => false,
            Err(e) => panic!("login as {role}: unexpected error: {e}"),
        }
    })
}

#[test]
fn a_database_role_is_rotated_through_the_cli_with_a_login_check() {
    let url = database_url();
    let env = Env::init();
    let role = format!("rot_cli_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let old = format!("old{}", uuid::Uuid::new_v4().simple());
    admin_sql(format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{old}'"));
    assert!(can_login(&role, &old), "the fixture role logs in");
    assert!(!can_login(&role, "not-the-password"), "the server checks passwords");

    env.ok(&["policy", "set", "db", "--interval-days", "30", "--strategy", "staged"]);
    env.ok(&["secret", "put", "db/admin", "--value", &url]);
    env.ok(&[
        "secret",
        "put",
        "db/app",
        "--type",
        "database",
        "--admin-secret",
        "db/admin",
        "--role",
        &role,
        "--value",
        &old,
        "--policy",
        "db",
        "--verify",
        "login",
    ]);
    let rotated = env.json(&["secret", "rotate", "db/app"]);
    assert_eq!(rotated["status"], "success", "{rotated}");
    assert_eq!(rotated["strategy"], "staged");
    assert_eq!(
        (rotated["old_version"].as_u64(), rotated["new_version"].as_u64()),
        (Some(1), Some(2))
    );

    let new = env.ok(&["secret", "get", "db/app"]).trim().to_owned();
    assert_ne!(new, old);
    let got = env.json(&["secret", "get", "db/app"]);
    assert_eq!(got["attributes"]["username"], role.as_str());
    assert!(
        can_login(&role, &new),
        "the CURRENT password logs in on a fresh connection"
    );
    assert!(!can_login(&role, &old), "the old password no longer does");
    assert_eq!(env.ok(&["secret", "get", "db/app", "--stage", "previous"]).trim(), old);

    let history = env.json(&["secret", "history", "db/app"]);
    assert_eq!(history[0]["status"], "success");
    let text = history.to_string();
    assert!(text.contains("test:login"), "the named login test ran: {text}");
    assert!(!text.contains(&new) && !text.contains(&old), "no password in history");
    admin_sql(format!("DROP ROLE IF EXISTS \"{role}\""));
}

// ------------------------------------------------ certificates, checked with openssl

/// `openssl` on PATH; this test panics without it (rotation-cli has no
/// X.509 parser among its dev-dependencies).
fn openssl() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("openssl"))
        .find(|p| p.is_file())
        .expect(
            "openssl is not on PATH: this test checks the issued certificates with `openssl x509` and `openssl verify`",
        )
}

/// The first PEM `CERTIFICATE` block of a bundle.
fn first_certificate(bundle: &str) -> String {
    let begin = bundle
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in the bundle:\n{bundle}"));
    let end_marker = "-----END CERTIFICATE-----";
    let end = begin + bundle[begin..].find(end_marker).unwrap() + end_marker.len();
    format!("{}\n", &bundle[begin..end])
}

/// Runs openssl; panics unless it succeeds; returns stdout and stderr.
fn run_openssl(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(openssl()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

/// `notBefore=` / `notAfter=` of `openssl x509 -dates`.
fn openssl_date(text: &str, key: &str) -> chrono::DateTime<chrono::Utc> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let naive = chrono::NaiveDateTime::parse_from_str(line.trim(), "%b %e %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("{key}{line}: {e}"));
    naive.and_utc()
}

#[test]
fn certificate_flags_issue_a_ca_and_a_leaf_that_rotates() {
    openssl();
    let env = Env::init();
    env.ok(&[
        "secret",
        "put",
        "ca",
        "--type",
        "certificate",
        "--ca",
        "--common-name",
        "Test CA",
        "--validity-days",
        "30",
    ]);
    env.ok(&[
        "policy",
        "set",
        "certs",
        "--interval-days",
        "30",
        "--strategy",
        "staged",
        "--verify",
        "certificate",
    ]);
    env.ok(&[
        "secret",
        "put",
        "web",
        "--type",
        "certificate",
        "--ca-secret",
        "ca",
        "--common-name",
        "web.example",
        "--validity-days",
        "10",
        "--renew-before-days",
        "5",
        "--policy",
        "certs",
    ]);
    let first = env.ok(&["secret", "get", "web"]);
    let before = chrono::Utc::now();
    let rotated = env.json(&["secret", "rotate", "web"]);
    let after = chrono::Utc::now();
    assert_eq!(rotated["status"], "success", "{rotated}");
    assert_eq!(rotated["new_version"], 2);
    let bundle = env.ok(&["secret", "get", "web"]);
    let ca_bundle = env.ok(&["secret", "get", "ca"]);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let leaf_file = dir.path().join("leaf.pem");
    let old_file = dir.path().join("old.pem");
    std::fs::write(&ca_file, first_certificate(&ca_bundle)).unwrap();
    std::fs::write(&leaf_file, first_certificate(&bundle)).unwrap();
    std::fs::write(&old_file, first_certificate(&first)).unwrap();
    assert_ne!(
        first_certificate(&bundle),
        first_certificate(&first),
        "a new certificate"
    );

    let ca_text = run_openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-nameopt".as_ref(),
        "RFC2253".as_ref(),
        "-in".as_ref(),
        ca_file.as_os_str(),
    ]);
    assert!(ca_text.contains("CN=Test CA"), "{ca_text}");
    let leaf_text = run_openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-issuer".as_ref(),
        "-dates".as_ref(),
        "-nameopt".as_ref(),
        "RFC2253".as_ref(),
        "-in".as_ref(),
        leaf_file.as_os_str(),
    ]);
    let subject = leaf_text.lines().find(|l| l.starts_with("subject=")).unwrap();
    let issuer = leaf_text.lines().find(|l| l.starts_with("issuer=")).unwrap();
    assert!(subject.contains("CN=web.example"), "{leaf_text}");
    assert!(issuer.contains("CN=Test CA"), "issued by the CA: {leaf_text}");
    let not_before = openssl_date(&leaf_text, "notBefore=");
    let not_after = openssl_date(&leaf_text, "notAfter=");
    let slack = chrono::TimeDelta::minutes(5);
    assert!(
        not_before >= before - slack && not_before <= after + slack,
        "valid from the rotation: {leaf_text}"
    );
    let validity = not_after - not_before;
    assert!(
        (validity - chrono::TimeDelta::days(10)).abs() <= chrono::TimeDelta::minutes(5),
        "valid for ~10 days, not {validity}: {leaf_text}"
    );
    let verified = run_openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        ca_file.as_os_str(),
        leaf_file.as_os_str(),
    ]);
    assert!(verified.contains(": OK"), "openssl verify: {verified}");
}

// ------------------------------------------------ http:URL verification on put

/// An HTTP listener on 127.0.0.1 answering every request with the status
/// in `status`; returns its address and the request heads it saw.
fn http_listener(
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            record.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (addr, seen)
}

#[test]
fn an_http_verification_test_given_on_put_is_used_and_a_500_rolls_back() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let mut env = Env::init();
    // The listener is on loopback, which only the allowlist opens.
    env.url_allowlist = Some("127.0.0.1".into());
    let status = std::sync::Arc::new(AtomicU16::new(200));
    let (addr, seen) = http_listener(std::sync::Arc::clone(&status));
    env.ok(&[
        "policy",
        "set",
        "checked",
        "--interval-days",
        "30",
        "--strategy",
        "staged",
    ]);
    let test = format!("http:http://{addr}/check");
    env.ok(&[
        "secret",
        "put",
        "svc/token",
        "--value",
        "first-token-0001",
        "--policy",
        "checked",
        "--verify",
        &test,
    ]);
    assert!(seen.lock().unwrap().is_empty(), "put itself tests nothing");

    let rotated = env.json(&["secret", "rotate", "svc/token"]);
    assert_eq!(rotated["status"], "success", "{rotated}");
    let second = env.ok(&["secret", "get", "svc/token"]).trim().to_owned();
    assert_ne!(second, "first-token-0001");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the listener was asked once: {seen:?}");
        assert!(seen[0].starts_with("GET /check "), "{}", seen[0]);
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains(&format!("authorization: bearer {}", second.to_ascii_lowercase())),
            "the new value is the bearer token: {}",
            seen[0]
        );
    }

    status.store(500, Ordering::SeqCst);
    let (reason, stderr) = env.fails(&["secret", "rotate", "svc/token"]);
    assert_eq!(reason, "verification_failed", "{stderr}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(
        env.ok(&["secret", "get", "svc/token"]).trim(),
        second,
        "CURRENT did not move"
    );
    let history = env.json(&["secret", "history", "svc/token"]);
    assert_eq!(history[0]["status"], "rolled_back", "{history}");
    assert_eq!(history[1]["status"], "success");
    let steps: Vec<&str> = history[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&format!("test:{test}").as_str()), "{steps:?}");
    assert_eq!(steps.last(), Some(&"rollback"), "{steps:?}");
    let status_json = env.json(&["secret", "status", "svc/token"]);
    assert_eq!(status_json["current_version"], 2);
}

#[test]
fn http_tests_and_webhooks_to_internal_addresses_are_refused_and_nothing_is_stored() {
    let mut env = Env::init();
    let (addr, seen) = http_listener(std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200)));
    for verify in [
        "http://169.254.169.254/x".to_owned(),
        "http:http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http:http://{addr}/check"),
        format!("http:http://localhost:{}/check", addr.port()),
        "http:http://[::1]/x".to_owned(),
    ] {
        let (reason, stderr) = env.fails(&["policy", "set", "p", "--interval-days", "1", "--verify", &verify]);
        assert_eq!(reason, "invalid_policy", "{verify}: {stderr}");
        assert!(stderr.contains("ROTATION_URL_ALLOWLIST"), "{verify}: {stderr}");
    }
    let (reason, stderr) = env.fails(&[
        "policy",
        "set",
        "p",
        "--interval-days",
        "1",
        "--notify",
        "http://10.0.0.1/hook",
    ]);
    assert_eq!(reason, "invalid_policy", "{stderr}");
    assert!(stderr.contains("`notify`") && stderr.contains("private"), "{stderr}");
    let (reason, stderr) = env.fails(&[
        "secret",
        "put",
        "svc/t",
        "--value",
        "v-1234567",
        "--verify",
        "http:http://169.254.169.254/x",
    ]);
    assert_eq!(reason, "invalid_policy", "{stderr}");
    // Nothing was stored, nothing was sent.
    assert_eq!(env.json(&["policy", "list"]), serde_json::json!([]));
    assert_eq!(env.json(&["secret", "list"]), serde_json::json!([]));
    assert!(seen.lock().unwrap().is_empty());

    // Allowed by the allowlist: by address, host:port or CIDR.
    for list in [
        "127.0.0.1".to_owned(),
        format!("localhost:{}", addr.port()),
        "127.0.0.0/8".to_owned(),
    ] {
        env.url_allowlist = Some(list.clone());
        env.ok(&[
            "policy",
            "set",
            "p",
            "--interval-days",
            "1",
            "--verify",
            &format!("http:http://localhost:{}/check", addr.port()),
        ]);
    }
    env.url_allowlist = Some("not a host".into());
    let (reason, stderr) = env.fails(&["policy", "set", "q", "--interval-days", "1"]);
    assert_eq!(reason, "invalid_input", "{stderr}");
    assert!(stderr.contains("ROTATION_URL_ALLOWLIST"), "{stderr}");
}
