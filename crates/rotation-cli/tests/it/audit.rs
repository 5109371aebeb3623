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

// --- The transparency log: checkpoints, verifier key, rollback ----------

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rotation_core::ports::CryptoProvider;

/// The verifier key's parts, checked by hand: name, key hash, public key.
fn parse_verifier_key(text: &str) -> (String, String, [u8; 32]) {
    let mut parts = text.trim().splitn(3, '+');
    let (name, hash, key) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let key = STANDARD.decode(key).unwrap();
    assert_eq!(key[0], 0x01, "Ed25519 algorithm byte");
    let public: [u8; 32] = key[1..].try_into().unwrap();
    let mut data = name.as_bytes().to_vec();
    data.push(b'\n');
    data.push(0x01);
    data.extend_from_slice(&public);
    let digest = rotation_crypto::RingCrypto::new().sha256(&data);
    assert_eq!(
        hash,
        hex::encode(&digest[..4]),
        "key hash = SHA-256(name || 0x0A || 0x01 || key)[..4]"
    );
    (name.to_owned(), hash.to_owned(), public)
}

#[test]
fn checkpoints_are_signed_notes_verifiable_with_the_public_key() {
    let env = populated();
    let text = env.ok(&["audit", "checkpoint"]);
    let json = env.json(&["audit", "checkpoint"]);
    assert_eq!(json["checkpoint"], text, "the JSON carries exactly the note text");
    let vkey = env.ok(&["audit", "public-key"]);
    assert_eq!(env.json(&["audit", "public-key"])["verifier_key"], vkey.trim());
    let (name, hash, public) = parse_verifier_key(&vkey);

    // origin / size / root, a blank line, one signature line.
    let (body, sig_line) = text.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert_eq!(lines[0], name);
    let size: u64 = lines[1].parse().unwrap();
    let events = env.json(&["audit", "list", "--limit", "1000"]);
    assert_eq!(
        size,
        events.as_array().unwrap().len() as u64,
        "the checkpoint covers every event"
    );
    assert_eq!(STANDARD.decode(lines[2]).unwrap().len(), 32);
    let blob = sig_line
        .strip_prefix(&format!("\u{2014} {name} "))
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    let blob = STANDARD.decode(blob).unwrap();
    assert_eq!(hex::encode(&blob[..4]), hash);
    let key = VerifyingKey::from_bytes(&public).unwrap();
    key.verify_strict(body.as_bytes(), &Signature::from_bytes(&blob[4..].try_into().unwrap()))
        .expect("ed25519-dalek verifies the checkpoint");

    // The verify report covers the tree and the stored checkpoint.
    let report = env.json(&["audit", "verify"]);
    assert_eq!(report["tree_size"], size);
    assert_eq!(report["root_hash"], lines[2]);
    assert_eq!(report["checkpoints"]["stored_size"], size);
}

#[test]
fn every_writing_command_leaves_a_current_checkpoint() {
    let env = populated();
    env.ok(&["authority", "create", "org-two"]);
    env.ok(&["keyring", "create", "payments"]);
    let report = env.json(&["audit", "verify"]);
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["checkpoints"]["stored_size"], report["tree_size"],
        "no command needed `audit checkpoint` to sign: {report}"
    );
}

fn save_checkpoint(env: &Env) -> std::path::PathBuf {
    let path = env.dir.path().join(format!("cp-{}.txt", uuid_like()));
    std::fs::write(&path, env.ok(&["audit", "checkpoint"])).unwrap();
    path
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn db_files(env: &Env) -> Vec<std::path::PathBuf> {
    let db = env.db_path();
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| std::path::PathBuf::from(format!("{}{s}", db.display())))
        .collect()
}

#[test]
fn a_rolled_back_database_fails_against_a_checkpoint_saved_before() {
    let env = populated();
    let backup = env.dir.path().join("copy");
    std::fs::create_dir(&backup).unwrap();
    for (i, f) in db_files(&env).iter().enumerate() {
        if f.exists() {
            std::fs::copy(f, backup.join(i.to_string())).unwrap();
        }
    }
    env.ok(&["authority", "rotate", "org-acme"]);
    env.ok(&["authority", "create", "org-two"]);
    let cp = save_checkpoint(&env);
    let cp_arg = cp.to_str().unwrap();
    assert_eq!(env.json(&["audit", "verify", "--checkpoint", cp_arg])["valid"], true);

    // Put the old copy back: its own chain and checkpoint are intact...
    for (i, f) in db_files(&env).iter().enumerate() {
        let saved = backup.join(i.to_string());
        if saved.exists() {
            std::fs::copy(&saved, f).unwrap();
        } else if f.exists() {
            std::fs::remove_file(f).unwrap();
        }
    }
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    // ...but it does not extend the checkpoint saved before the rollback.
    let (reason, stderr) = env.fails(&["audit", "verify", "--checkpoint", cp_arg]);
    assert_eq!(reason, "tampered", "{stderr}");
    assert!(stderr.contains("diverges at index"), "{stderr}");

    // Work done on the old copy does not hide it either.
    for name in ["b1", "b2", "b3", "b4", "b5", "b6"] {
        env.ok(&["authority", "create", name]);
    }
    let (reason, stderr) = env.fails(&["audit", "verify", "--checkpoint", cp_arg]);
    assert_eq!(reason, "tampered", "{stderr}");
}

#[test]
fn truncating_the_log_and_resetting_the_head_fails_verification() {
    let env = populated();
    let cp = save_checkpoint(&env);
    let size = env.json(&["audit", "verify"])["tree_size"].as_u64().unwrap();
    tamper(
        &env,
        "DELETE FROM audit_events WHERE seq > (SELECT MAX(seq) - 2 FROM audit_events)",
    );
    tamper(
        &env,
        "UPDATE audit_head SET seq = (SELECT MAX(seq) FROM audit_events), hash = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1)",
    );
    // The stored checkpoint alone already shows it...
    let (reason, stderr) = env.fails(&["audit", "verify"]);
    assert_eq!(reason, "tampered", "{stderr}");
    assert!(stderr.contains(&format!("diverges at index {}", size - 2)), "{stderr}");
    // ...and so does the checkpoint kept elsewhere, even with the stored one removed.
    tamper(&env, "DELETE FROM meta WHERE key = 'audit.checkpoint'");
    assert_eq!(env.json(&["audit", "verify"])["valid"], true);
    let (reason, stderr) = env.fails(&["audit", "verify", "--checkpoint", cp.to_str().unwrap()]);
    assert_eq!(reason, "tampered", "{stderr}");
    assert!(stderr.contains(&format!("diverges at index {}", size - 2)), "{stderr}");
}

#[test]
fn bad_checkpoints_are_invalid_input_saying_why() {
    let env = populated();
    let text = env.ok(&["audit", "checkpoint"]);
    let file = env.dir.path().join("bad.txt");
    let check = |content: &str, says: &str| {
        std::fs::write(&file, content).unwrap();
        let (reason, stderr) = env.fails(&["audit", "verify", "--checkpoint", file.to_str().unwrap()]);
        assert_eq!(reason, "invalid_input", "{stderr}");
        assert!(stderr.contains(says), "expected {says:?} in {stderr}");
    };
    check("not a note at all\n", "not a valid signed note");
    // Another store's checkpoint: another origin.
    let other = Env::init();
    other.ok(&["authority", "create", "org-x"]);
    check(&other.ok(&["audit", "checkpoint"]), "another origin");
    // This log's body, signed by a key that is not the audit key.
    let (body, _) = text.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let name = body.lines().next().unwrap();
    let forger = SigningKey::from_bytes(&[7; 32]);
    let mut blob = vec![1, 2, 3, 4];
    blob.extend_from_slice(&forger.sign(body.as_bytes()).to_bytes());
    check(
        &format!("{body}\n\u{2014} {name} {}\n", STANDARD.encode(blob)),
        "signed by another key",
    );
}

#[test]
fn an_audit_key_that_cannot_be_unlocked_is_unauthorized() {
    let env = populated();
    tamper(&env, "DELETE FROM meta WHERE key LIKE 'audit.%'");
    std::fs::rename(env.key_file(), env.dir.path().join("elsewhere.key")).unwrap();
    for args in [&["audit", "checkpoint"][..], &["audit", "public-key"][..]] {
        let (reason, stderr) = env.fails(args);
        assert_eq!(reason, "unauthorized", "{args:?}: {stderr}");
    }
}

#[test]
fn restore_force_appends_store_restored_and_old_checkpoints_tell_the_truth() {
    let env = populated();
    let at_backup = save_checkpoint(&env);
    let backup = env.dir.path().join("store.backup");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);
    let backed_up = env.json(&["audit", "verify"])["tree_size"].as_u64().unwrap();
    env.ok(&["authority", "rotate", "org-acme"]);
    let later = save_checkpoint(&env);
    let replaced = env.json(&["audit", "verify"])["tree_size"].as_u64().unwrap();

    env.ok(&["restore", "--from", backup.to_str().unwrap(), "--force"]);
    let newest = env.json(&["audit", "list", "--limit", "1"]);
    let newest = &newest[0];
    assert_eq!(newest["event"], "store_restored", "{newest}");
    assert_eq!(newest["target"], "store");
    assert_eq!(newest["details"]["forced"], true);
    assert_eq!(newest["details"]["replaced_entries"], replaced);
    assert_eq!(newest["details"]["restored_entries"], backed_up);

    // The restored log is whole, signed afresh, and extends the checkpoint
    // taken when the backup was...
    let report = env.json(&["audit", "verify", "--checkpoint", at_backup.to_str().unwrap()]);
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["tree_size"], backed_up + 1);
    assert_eq!(report["checkpoints"]["stored_size"], backed_up + 1);
    // ...but not the one taken before the restore threw work away.
    let (reason, stderr) = env.fails(&["audit", "verify", "--checkpoint", later.to_str().unwrap()]);
    assert_eq!(reason, "tampered", "{stderr}");
}

#[test]
fn witnesses_receive_each_new_checkpoint_through_the_outbox() {
    let env = populated();
    assert_eq!(env.json(&["audit", "witnesses"])["witnesses"], serde_json::json!([]));
    let (reason, _) = env.fails(&["audit", "witnesses", "--set", "ftp://nope"]);
    assert_eq!(reason, "invalid_input");
    let set = env.json(&["audit", "witnesses", "--set", "https://witness.example/cp"]);
    assert_eq!(set["witnesses"], serde_json::json!(["https://witness.example/cp"]));
    env.ok(&["authority", "create", "org-w"]);
    let cp = env.ok(&["audit", "checkpoint"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queued: Vec<String> = rt.block_on(async {
        let pool = raw_pool(&env.db_path()).await;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT notification FROM outbox WHERE recipient = 'https://witness.example/cp'")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter().map(|r| r.0).collect()
    });
    assert!(!queued.is_empty());
    let last: serde_json::Value = serde_json::from_str(queued.last().unwrap()).unwrap();
    assert_eq!(last["event"], "audit_checkpoint", "{last}");
    assert_eq!(
        last["details"]["checkpoint"], cp,
        "the newest checkpoint is queued for the witness"
    );
    assert_eq!(
        env.json(&["audit", "witnesses", "--clear"])["witnesses"],
        serde_json::json!([])
    );
}
