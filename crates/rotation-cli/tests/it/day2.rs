//! Day-2 operations: master-key rotation (interrupted and resumed), bring
//! your own keys, explicit versions, key provider commands, the compliance
//! report, and encrypted backup and restore.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rotation_core::ports::StateStore;
use rotation_core::time::SystemClock;
use rotation_core::{Engine, EngineConfig};
use rotation_crypto::{MasterSecret, RingCrypto, master_key};
use rotation_store_sqlite::SqliteStore;
use rotation_testkit::FaultyStore;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::Env;

fn password_env(pw: &str) -> Env {
    let mut env = Env::new();
    env.password = Some(pw.into());
    env.ok(&["init"]);
    env
}

fn import_values(env: &Env, keyring: &str, n: usize) -> std::path::PathBuf {
    let path = env.dir.path().join(format!("{keyring}.jsonl"));
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("{keyring}-{i:06}"), "value": format!("value {i} of {keyring}")})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    env.ok(&["value", "import", "--keyring", keyring, path.to_str().unwrap()]);
    path
}

fn export(env: &Env, keyring: &str, name: &str) -> String {
    let out = env.dir.path().join(name);
    env.ok(&["value", "export", "--keyring", keyring, "--out", out.to_str().unwrap()]);
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn master_key_rotation_interrupted_then_finished_opens_only_with_the_new_password() {
    let mut env = password_env("old password");
    env.ok(&["authority", "create", "org-acme"]);
    for agent in ["agent-a", "agent-b"] {
        env.ok(&[
            "chain",
            "issue",
            agent,
            "--authority",
            "org-acme",
            "--capability",
            "read",
        ]);
    }
    env.ok(&["authority", "rotate", "org-acme"]);
    for k in ["payments", "tokens"] {
        env.ok(&["keyring", "create", k]);
        import_values(&env, k, 10_000);
        env.ok(&["keyring", "rotate", k]);
    }
    let before_payments = export(&env, "payments", "p0.jsonl");
    let before_tokens = export(&env, "tokens", "t0.jsonl");

    // A rotation that stops after re-wrapping two keys (a crash).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sqlite: Arc<dyn StateStore> = Arc::new(SqliteStore::connect(&env.store_url(), false).await.unwrap());
        let old = MasterSecret::Password(SecretString::from("old password".to_owned()));
        let new = MasterSecret::Password(SecretString::from("new password".to_owned()));
        let custody = master_key::begin_rotation(sqlite.as_ref(), &old, &new, rotation_crypto::Argon2Cost::LEGACY)
            .await
            .unwrap();
        // begin_rotation committed once; fail the third commit from here.
        let faulty = Arc::new(FaultyStore::new(sqlite.clone(), Some(3)));
        let engine = Engine::new(
            faulty.clone(),
            Arc::new(RingCrypto::new()),
            Arc::new(custody),
            Arc::new(SystemClock),
            EngineConfig::default(),
        );
        assert!(engine.rewrap_all_keys().await.is_err());
        assert!(faulty.crashed());
    });
    let status = env.json(&["master-key", "status"]);
    assert_eq!(status["rotation_in_progress"], true);
    assert_eq!(
        status["keys_by_generation"].as_array().unwrap().len(),
        2,
        "half moved: {status}"
    );
    // Half-way, the store still opens with the old password (wrong one refused).
    env.ok(&["chain", "verify", "--all"]);
    env.password = Some("wrong".into());
    let (reason, _) = env.fails(&["value", "decrypt", "--keyring", "payments", "payments-000001"]);
    assert_eq!(reason, "unauthorized");

    // Resume: the same command finishes the job.
    env.password = Some("old password".into());
    let mut c = env.cmd();
    c.env("NEW_PW", "new password").args([
        "--output",
        "json",
        "master-key",
        "rotate",
        "--new-password-env",
        "NEW_PW",
    ]);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["generation"], 2);
    assert!(done["rewrapped"]["already_current"].as_u64().unwrap() >= 2, "{done}");

    // The old password no longer opens anything.
    for args in [
        vec!["authority", "rotate", "org-acme"],
        vec!["value", "decrypt", "--keyring", "payments", "payments-000001"],
    ] {
        let (reason, _) = env.fails(&args);
        assert_eq!(reason, "unauthorized", "{args:?}");
    }
    env.password = Some("new password".into());
    assert_eq!(export(&env, "payments", "p1.jsonl"), before_payments);
    assert_eq!(export(&env, "tokens", "t1.jsonl"), before_tokens);
    env.ok(&["authority", "rotate", "org-acme"]);
    assert!(
        env.json(&["chain", "verify", "--all"])
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["valid"] == true)
    );
    let status = env.json(&["master-key", "status"]);
    assert_eq!(status["rotation_in_progress"], false);
    assert_eq!(status["keys_by_generation"].as_array().unwrap().len(), 1);
    let events: Vec<String> = env
        .json(&["audit", "list", "--limit", "20"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.contains(&"master_key_rotated".to_owned()), "{events:?}");
    let report = env.json(&["audit", "verify"]);
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["checkpoints"]["stored_size"], report["tree_size"],
        "the re-wrapped audit key still signs checkpoints: {report}"
    );

    // A wrong old password is refused and changes nothing.
    env.password = Some("not it".into());
    let mut c = env.cmd();
    c.env("NEW_PW", "third")
        .args(["master-key", "rotate", "--new-password-env", "NEW_PW"]);
    let out = c.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[unauthorized]"));
    env.password = Some("new password".into());
    assert_eq!(env.json(&["master-key", "status"])["generation"], 2);
}

#[test]
fn imported_keys_decrypt_with_an_independent_aes_gcm() {
    let env = Env::init();
    env.ok(&["keyring", "create", "byok"]);
    let key = [0x42u8; 32];
    let key_file = env.dir.path().join("key.hex");
    std::fs::write(&key_file, hex::encode(key)).unwrap();
    let imported = env.json(&[
        "keyring",
        "import-key",
        "byok",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(imported["new_version"], 2);
    env.ok(&[
        "value",
        "encrypt",
        "--keyring",
        "byok",
        "db/password",
        "--value",
        "correct horse",
    ]);
    let listed = env.json(&["value", "list", "--keyring", "byok"]);
    let sealed_text = listed[0]["sealed"].as_str().unwrap();
    assert!(sealed_text.starts_with("rot:v2:"));
    let sealed = URL_SAFE_NO_PAD.decode(sealed_text.rsplit(':').next().unwrap()).unwrap();
    // docs/FORMATS.md: [0x01][version u32 BE][nonce 12][ct||tag]; AAD = header || "rotation-value-v1\n" keyring "\n" id.
    let (header, rest) = sealed.split_at(5);
    let (nonce, ct) = rest.split_at(12);
    let mut aad = header.to_vec();
    aad.extend_from_slice(b"rotation-value-v1\nbyok\ndb/password");
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let nonce: [u8; 12] = nonce.try_into().unwrap();
    let plaintext = cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
        .unwrap();
    assert_eq!(plaintext, b"correct horse");
    // Base64 works too; a wrong length does not.
    std::fs::write(&key_file, base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
    env.ok(&[
        "keyring",
        "import-key",
        "byok",
        "--key-file",
        key_file.to_str().unwrap(),
        "--version",
        "9",
    ]);
    std::fs::write(&key_file, hex::encode([1u8; 16])).unwrap();
    let (reason, _) = env.fails(&[
        "keyring",
        "import-key",
        "byok",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(reason, "invalid_input");
    let history = env.json(&["keyring", "history", "byok", "--event", "key_imported"]);
    assert_eq!(history.as_array().unwrap().len(), 2);
}

#[test]
fn explicit_versions_must_exceed_every_existing_one() {
    let env = Env::init();
    env.ok(&["keyring", "create", "ring"]);
    assert_eq!(
        env.json(&["keyring", "rotate", "ring", "--new-version", "5"])["new_version"],
        5
    );
    for v in ["3", "5", "1"] {
        let (reason, stderr) = env.fails(&["keyring", "rotate", "ring", "--new-version", v]);
        assert_eq!(reason, "invalid_input", "{v}");
        assert!(stderr.contains("highest is 5"), "{stderr}");
    }
    assert_eq!(env.json(&["keyring", "rotate", "ring"])["new_version"], 6);
    let info = env.json(&["keyring", "info", "ring"]);
    let versions: Vec<u64> = info["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 5, 6]);
}

#[test]
fn a_key_provider_command_supplies_keys_and_its_failure_changes_nothing() {
    let env = Env::init();
    env.ok(&["keyring", "create", "kms"]);
    let good = format!(
        "printf '{{\"key\": \"{}\", \"version\": \"kms-2026-11\"}}'",
        hex::encode([9u8; 32])
    );
    let r = env.json(&["keyring", "rotate", "kms", "--key-provider-command", &good]);
    assert_eq!(r["new_version"], 2);
    let events = env.json(&["keyring", "history", "kms", "--event", "key_imported"]);
    assert!(events[0]["details"]["source"].as_str().unwrap().contains("kms-2026-11"));

    let before = env.json(&["keyring", "info", "kms"]);
    let runs_before = env
        .json(&["audit", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();
    for bad in [
        "echo 'kms is down' >&2; exit 3",
        "echo not-json",
        "printf '{\"key\": \"abcd\"}'",
    ] {
        let (reason, stderr) = env.fails(&["keyring", "rotate", "kms", "--key-provider-command", bad]);
        assert_eq!(reason, "rotation_failed", "{bad}: {stderr}");
        assert!(stderr.contains("nothing was changed"));
    }
    let (_, stderr) = env.fails(&[
        "keyring",
        "rotate",
        "kms",
        "--key-provider-command",
        "echo 'kms is down' >&2; exit 3",
    ]);
    assert!(
        stderr.contains("kms is down"),
        "the provider's error is shown: {stderr}"
    );
    assert_eq!(env.json(&["keyring", "info", "kms"]), before);
    assert_eq!(
        env.json(&["audit", "list", "--limit", "1000"])
            .as_array()
            .unwrap()
            .len(),
        runs_before
    );
}

#[test]
fn the_report_flags_overdue_and_stuck_work_with_exit_code_2() {
    let mut env = Env::init();
    env.ok(&["authority", "create", "org-ok"]);
    env.ok(&["keyring", "create", "stale"]);
    env.ok(&["policy", "set", "weekly", "--max-age-days", "7"]);
    env.ok(&["schedule", "add", "keyring:stale", "--policy", "weekly"]);
    let out = env.run(&["report"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // A stuck run: a rotation whose process died (injected crash), lease long expired.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sqlite: Arc<dyn StateStore> = Arc::new(SqliteStore::connect(&env.store_url(), false).await.unwrap());
        let params = master_key::current_params(sqlite.as_ref()).await.unwrap();
        let key = hex::decode(std::fs::read_to_string(env.key_file()).unwrap().trim()).unwrap();
        let kek = rotation_crypto::Kek::unlock(&MasterSecret::KeyFile(secrecy::SecretBox::new(Box::new(key))), &params)
            .unwrap();
        let faulty = Arc::new(FaultyStore::new(sqlite, Some(2)));
        let engine = Engine::new(
            faulty,
            Arc::new(RingCrypto::new()),
            Arc::new(rotation_crypto::LocalCustody::new(kek)),
            Arc::new(SystemClock),
            EngineConfig::default(),
        );
        let id = rotation_core::ids::AuthorityId::parse("org-ok").unwrap();
        assert!(
            engine
                .rotate_key(rotation_core::engine::RotateRequest::new(id))
                .await
                .is_err()
        );
    });
    env.now = Some((chrono::Utc::now() + chrono::TimeDelta::days(8)).to_rfc3339());
    let out = env.run(&["--output", "json", "report"]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["stuck_runs"].as_array().unwrap().len(), 1);
    assert_eq!(report["stuck_runs"][0]["target"], "authority:org-ok");
    let stale = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"] == "keyring:stale")
        .unwrap();
    assert_eq!(stale["overdue"], true);
    assert_eq!(stale["max_age_days"], 7);
    assert!(stale["overdue_reason"].as_str().unwrap().contains("weekly"));
    let ok = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"] == "authority:org-ok")
        .unwrap();
    assert_eq!(ok["overdue"], false);
    // Resuming the stuck run and rotating the keyring clears the report.
    env.ok(&["schedule", "run-due"]);
    let out = env.run(&["report"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn backup_and_restore_round_trip_and_refusals() {
    let env = password_env("pw-1");
    env.ok(&["quickstart"]);
    env.ok(&["keyring", "create", "payments"]);
    let input = import_values(&env, "payments", 500);
    env.ok(&["keyring", "rotate", "payments"]);
    let backup = env.dir.path().join("store.backup");
    let out = env.json(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(out["bytes"].as_u64().unwrap() > 1000);
    let raw = std::fs::read(&backup).unwrap();
    assert!(raw.starts_with(b"ROTATION-BACKUP\n"));
    assert!(
        !String::from_utf8_lossy(&raw).contains("value 1 of payments"),
        "values stay sealed"
    );
    let (reason, _) = env.fails(&["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(reason, "invalid_input", "never overwrites");

    // Round trip into a fresh store.
    let mut fresh = Env::new();
    fresh.password = Some("pw-1".into());
    fresh.ok(&["restore", "--from", backup.to_str().unwrap()]);
    assert!(
        fresh
            .json(&["chain", "verify", "--all"])
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["valid"] == true)
    );
    assert_eq!(fresh.json(&["keyring", "health-check", "payments"])["healthy"], true);
    let exported = export(&fresh, "payments", "out.jsonl");
    assert_eq!(exported, std::fs::read_to_string(&input).unwrap());
    assert_eq!(fresh.json(&["audit", "verify"])["valid"], true);
    fresh.ok(&["authority", "rotate", "org-acme"]);

    // Refusals: not empty, tampered, truncated, another master key.
    let (reason, _) = fresh.fails(&["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(reason, "already_exists");
    fresh.ok(&["restore", "--from", backup.to_str().unwrap(), "--force"]);
    let mut tampered = raw.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    let bad = env.dir.path().join("tampered.backup");
    std::fs::write(&bad, &tampered).unwrap();
    let empty = || {
        let mut e = Env::new();
        e.password = Some("pw-1".into());
        e
    };
    let target = empty();
    let (reason, _) = target.fails(&["restore", "--from", bad.to_str().unwrap()]);
    assert_eq!(reason, "tampered");
    std::fs::write(&bad, &raw[..raw.len() / 2]).unwrap();
    let (reason, _) = target.fails(&["restore", "--from", bad.to_str().unwrap()]);
    assert_eq!(reason, "tampered");
    let mut other = empty();
    other.password = Some("another master password".into());
    let (reason, stderr) = other.fails(&["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(reason, "unauthorized");
    assert!(stderr.contains("another master key"), "{stderr}");
    assert!(!target.db_path().exists() || target.fails(&["authority", "list"]).0 == "not_found");
}
