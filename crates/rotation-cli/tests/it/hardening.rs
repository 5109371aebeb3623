//! Hardening: reserved keyrings, invisible characters in ids, the key
//! provider's environment, file modes, and the master password's KDF costs.

use crate::support::{Env, raw_pool};

/// Number of audit events, to show a refused command changed nothing.
fn audit_events(env: &Env) -> usize {
    env.json(&["audit", "list", "--limit", "10000"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn keyring_and_value_commands_refuse_the_secret_backends_keyrings() {
    let env = Env::init();
    env.ok(&["secret", "put", "app/token", "--value", "first-value-123"]);
    let keyrings = env.json(&["keyring", "list"]);
    assert!(
        keyrings
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "rotation.secrets"),
        "the secret backend keeps its values in rotation.secrets: {keyrings}"
    );
    let key = env.dir.path().join("key.hex");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let lines = env.dir.path().join("in.jsonl");
    std::fs::write(&lines, "{\"id\":\"app/token@1\",\"value\":\"forged\"}\n").unwrap();
    let out = env.dir.path().join("out.jsonl");
    let events = audit_events(&env);

    let (k, l, o) = (key.to_str().unwrap(), lines.to_str().unwrap(), out.to_str().unwrap());
    let commands: Vec<Vec<&str>> = vec![
        vec!["value", "encrypt", "--keyring", "rotation.secrets", "x", "--value", "y"],
        vec![
            "value",
            "encrypt",
            "--keyring",
            "rotation.secrets",
            "app/token@1",
            "--value",
            "y",
        ],
        vec!["value", "decrypt", "--keyring", "rotation.secrets", "app/token@1"],
        vec!["value", "list", "--keyring", "rotation.secrets"],
        vec!["value", "import", "--keyring", "rotation.secrets", l],
        vec!["value", "export", "--keyring", "rotation.secrets", "--out", o],
        vec!["keyring", "create", "rotation.mine"],
        vec!["keyring", "info", "rotation.secrets"],
        vec!["keyring", "rotate", "rotation.secrets"],
        vec!["keyring", "import-key", "rotation.secrets", "--key-file", k],
        vec!["keyring", "migrate", "rotation.secrets"],
        vec!["keyring", "full-rotation", "rotation.secrets"],
        vec!["keyring", "report", "rotation.secrets"],
        vec!["keyring", "health-check", "rotation.secrets"],
        vec!["keyring", "retire", "rotation.secrets", "--version", "1"],
        vec!["keyring", "history", "rotation.secrets"],
    ];
    for args in &commands {
        let (reason, stderr) = env.fails(args);
        assert_eq!(reason, "invalid_input", "{args:?}: {stderr}");
        assert!(stderr.contains("reserved for the secret backend"), "{args:?}: {stderr}");
    }
    assert!(!out.exists(), "nothing exported");
    assert_eq!(audit_events(&env), events, "nothing audited, so nothing changed");
    assert_eq!(env.json(&["keyring", "list"]), keyrings);
    assert_eq!(env.ok(&["secret", "get", "app/token"]).trim(), "first-value-123");
    // Other names, even close ones, are ordinary keyrings.
    env.ok(&["keyring", "create", "rotation-x"]);
    env.ok(&["value", "encrypt", "--keyring", "rotation-x", "x", "--value", "y"]);
}

#[test]
fn ids_with_invisible_characters_are_refused() {
    let env = Env::init();
    env.ok(&["keyring", "create", "k"]);
    let events = audit_events(&env);
    for id in ["a\u{202e}b", "a\u{200b}b", "\u{feff}a"] {
        let (reason, stderr) = env.fails(&["value", "encrypt", "--keyring", "k", id, "--value", "y"]);
        assert_eq!(reason, "invalid_input", "{id:?}: {stderr}");
        assert!(stderr.contains("invisible"), "{stderr}");
    }
    let (reason, _) = env.fails(&["authority", "create", "org-acme", "--name", "Acme\u{202e}moc"]);
    assert_eq!(reason, "invalid_input");
    let (reason, _) = env.fails(&["schedule", "add", "secret:a\u{202e}b", "--policy", "p"]);
    assert_eq!(reason, "invalid_input");
    assert_eq!(env.json(&["value", "list", "--keyring", "k"]), serde_json::json!([]));
    assert_eq!(audit_events(&env), events);
    // Visible non-ASCII is still fine.
    env.ok(&["value", "encrypt", "--keyring", "k", "zürich/東京", "--value", "y"]);
}

#[test]
fn a_key_provider_command_sees_only_the_allowed_environment() {
    let mut env = Env::new();
    env.password = Some("master password in the environment".into());
    env.ok(&["init"]);
    env.ok(&["keyring", "create", "payments"]);
    let home = env.dir.path().display().to_string();
    // `tr` is found through PATH; the key is 32 bytes of 0xaa.
    let provider = format!(
        r#"test -z "$ROTATION_MASTER_PASSWORD" || {{ echo "saw the master password" >&2; exit 3; }}
test -z "$VAULT_TOKEN" || {{ echo "saw the Vault token" >&2; exit 3; }}
test -z "$ROTATION_STORE" || {{ echo "saw the store URL" >&2; exit 3; }}
test -z "$UNRELATED" || {{ echo "saw UNRELATED" >&2; exit 3; }}
test "$HOME" = "{home}" || {{ echo "no HOME" >&2; exit 4; }}
test "$KMS_REGION" = "eu-1" || {{ echo "no KMS_REGION" >&2; exit 4; }}
key=$(printf '%064d' 0 | tr 0 a)
printf '{{"key": "%s", "version": "kms-7"}}' "$key""#
    );
    let rotate = |extra: &[&str]| {
        let mut args = vec![
            "--output",
            "json",
            "keyring",
            "rotate",
            "payments",
            "--key-provider-command",
            provider.as_str(),
        ];
        args.extend_from_slice(extra);
        env.cmd()
            .env("VAULT_TOKEN", "s.vault-token")
            .env("UNRELATED", "x")
            .env("KMS_REGION", "eu-1")
            .env("HOME", &home)
            .args(&args)
            .output()
            .unwrap()
    };
    // Without --key-provider-env KMS_REGION the provider misses it (exit 4).
    let out = rotate(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error[rotation_failed]") && stderr.contains("no KMS_REGION"),
        "{stderr}"
    );
    assert!(!stderr.contains("saw the"), "{stderr}");
    let out = rotate(&["--key-provider-env", "KMS_REGION"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["new_version"], 2, "{rotated}");
    // Its own variables are never passed, even when asked for.
    for name in ["ROTATION_MASTER_PASSWORD", "BAD NAME"] {
        let out = rotate(&["--key-provider-env", name]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error[invalid_input]"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 2);
    // A version label with a bidi override is refused too.
    let bidi = r#"printf '{"key": "%064d", "version": "kms\u202e7"}' 0"#;
    let (reason, stderr) = env.fails(&["keyring", "rotate", "payments", "--key-provider-command", bidi]);
    assert_eq!(reason, "rotation_failed", "{stderr}");
    assert!(stderr.contains("version label"), "{stderr}");
    assert_eq!(env.json(&["keyring", "info", "payments"])["current_version"], 2);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn init_in_an_open_directory_makes_the_database_wal_and_shm_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let data = env.db_path().parent().unwrap().to_path_buf();
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["init"]);
    let db = env.db_path();
    assert_eq!(mode(&db), 0o600);
    // Keep a connection open so the WAL and shared-memory files stay while
    // the binary writes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(raw_pool(&db));
    rt.block_on(async {
        sqlx::query("SELECT count(*) FROM meta").execute(&pool).await.unwrap();
    });
    env.ok(&["authority", "create", "org-acme"]);
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&env.key_file()), 0o600);
    rt.block_on(pool.close());
}

#[cfg(unix)]
#[test]
fn restore_creates_a_private_directory_and_says_which_master_key_it_needs() {
    let mut env = Env::new();
    env.password = Some("pw-restore".into());
    env.ok(&["init"]);
    env.ok(&["authority", "create", "org-acme"]);
    let backup = env.dir.path().join("store.backup");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);

    let mut fresh = Env::new();
    fresh.password = Some("pw-restore".into());
    let restored = fresh.json(&["restore", "--from", backup.to_str().unwrap()]);
    let data = fresh.db_path().parent().unwrap().to_path_buf();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&fresh.db_path()), 0o600);
    let needs = restored["master_key"].as_str().unwrap();
    assert!(
        needs.contains("master password of the store the backup was taken from")
            && needs.contains("ROTATION_MASTER_PASSWORD"),
        "{restored}"
    );
    fresh.ok(&["authority", "rotate", "org-acme"]);

    // A key-file store: without its key file the restore says what it needs.
    let keyed = Env::init();
    keyed.ok(&["authority", "create", "org-acme"]);
    let backup = keyed.dir.path().join("keyed.backup");
    keyed.ok(&["backup", "--out", backup.to_str().unwrap()]);
    let target = Env::new();
    let (reason, stderr) = target.fails(&["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(reason, "unauthorized");
    assert!(
        stderr.contains("master key file of the store the backup was taken from"),
        "{stderr}"
    );
    let key_file = keyed.key_file();
    let key_file = key_file.to_str().unwrap();
    let text = target.ok(&[
        "--master-key-file",
        key_file,
        "restore",
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(text.contains(key_file), "{text}");
    assert_eq!(mode(target.db_path().parent().unwrap()), 0o700);
}

/// The stored KEK record.
fn kek_record(env: &Env) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = raw_pool(&env.db_path()).await;
        let raw: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'kek'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        serde_json::from_slice(&raw).unwrap()
    })
}

#[test]
fn kdf_costs_default_high_old_stores_open_and_rotation_upgrades_them() {
    let strong = serde_json::json!({"m_kib": 262144, "t": 3, "p": 1});
    let legacy = serde_json::json!({"m_kib": 19456, "t": 2, "p": 1});

    // A new store without an override records 256 MiB, t=3, p=1.
    let mut fresh = Env::new();
    fresh.password = Some("strong store".into());
    let out = fresh
        .cmd()
        .env_remove("ROTATION_KDF_PARAMS")
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ROTATION_KDF_PARAMS"));
    assert_eq!(kek_record(&fresh)["argon2"], strong);
    fresh.ok(&["authority", "create", "org-acme"]);
    assert_eq!(fresh.json(&["master-key", "status"])["argon2"], strong);

    // An override below the old costs is refused before anything is created.
    let weak = Env::new();
    let out = weak
        .cmd()
        .env("ROTATION_MASTER_PASSWORD", "weak")
        .env("ROTATION_KDF_PARAMS", "m=1024,t=1,p=1")
        .arg("init")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[invalid_input]") && stderr.contains("ROTATION_KDF_PARAMS"),
        "{stderr}"
    );
    assert!(!weak.db_path().exists());

    // A store as written before the costs were raised: its record has the
    // old costs, or none at all; it still opens.
    let mut old = Env::new();
    old.password = Some("old store".into());
    let out = old.run(&["init"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ROTATION_KDF_PARAMS sets the master password's Argon2id costs to m=19456,t=2,p=1"),
        "an override is never silent: {stderr}"
    );
    assert_eq!(kek_record(&old)["argon2"], legacy);
    let mut record = kek_record(&old);
    record.as_object_mut().unwrap().remove("argon2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = raw_pool(&old.db_path()).await;
        sqlx::query("UPDATE meta SET value = ? WHERE key = 'kek'")
            .bind(serde_json::to_vec(&record).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    old.ok(&["authority", "create", "org-acme"]);
    assert_eq!(old.json(&["master-key", "status"])["argon2"], legacy);

    // `master-key rotate` moves it to the default costs.
    let out = old
        .cmd()
        .env_remove("ROTATION_KDF_PARAMS")
        .env("NEW_MASTER_PASSWORD", "old store, new password")
        .args([
            "--output",
            "json",
            "master-key",
            "rotate",
            "--new-password-env",
            "NEW_MASTER_PASSWORD",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(kek_record(&old)["argon2"], strong);
    old.password = Some("old store, new password".into());
    assert_eq!(old.json(&["master-key", "status"])["argon2"], strong);
    old.ok(&["authority", "rotate", "org-acme"]);
}
