//! Trust chains checked by an independent Ed25519 implementation over the
//! bytes documented in docs/FORMATS.md.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

use crate::support::Env;

/// `"rotation-record-v1\n" || JCS(body)`. For bodies of ASCII keys, strings
/// and arrays (what records hold), JCS equals serde_json's compact output
/// with sorted keys — an encoder independent of the application's.
fn documented_bytes(body: &Value) -> Vec<u8> {
    let mut out = b"rotation-record-v1\n".to_vec();
    out.extend_from_slice(serde_json::to_string(body).unwrap().as_bytes());
    out
}

fn jwks_keys(env: &Env, authority: &str) -> HashMap<String, VerifyingKey> {
    let jwks = env.json(&["authority", "jwks", authority]);
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["kty"], "OKP");
            assert_eq!(k["crv"], "Ed25519");
            let x: [u8; 32] = URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            (
                k["kid"].as_str().unwrap().to_owned(),
                VerifyingKey::from_bytes(&x).unwrap(),
            )
        })
        .collect()
}

fn check_all_records(env: &Env, authority: &str) -> usize {
    let keys = jwks_keys(env, authority);
    let records = env.json(&["chain", "list", "--authority", authority]);
    let records = records.as_array().unwrap();
    for r in records {
        let kid = r["key_id"].as_str().unwrap();
        assert_eq!(r["body"]["key_id"], kid, "the body names its key");
        let key = keys.get(kid).unwrap_or_else(|| panic!("{kid} not in JWKS"));
        let sig = URL_SAFE_NO_PAD.decode(r["signature"].as_str().unwrap()).unwrap();
        key.verify(&documented_bytes(&r["body"]), &Signature::from_slice(&sig).unwrap())
            .unwrap_or_else(|e| panic!("record {} does not verify: {e}", r["id"]));
    }
    records.len()
}

#[test]
fn every_record_verifies_with_dalek_before_and_after_rotation() {
    let env = Env::init();
    env.ok(&["authority", "create", "org-acme"]);
    env.ok(&[
        "chain",
        "issue",
        "agent-a",
        "--authority",
        "org-acme",
        "--capability",
        "read:€uro",
    ]);
    env.ok(&[
        "chain",
        "issue",
        "agent-b",
        "--authority",
        "org-acme",
        "--capability",
        "deploy",
        "--capability",
        "audit",
        "--delegate-to",
        "agent-c",
    ]);
    let records = env.json(&["chain", "list", "--agent", "agent-b"]);
    let kinds: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "genesis").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "capability").count(), 2);
    let delegation = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "delegation")
        .unwrap();
    assert_eq!(delegation["body"]["delegator"], "org-acme");
    assert_eq!(delegation["body"]["delegatee"], "agent-c");

    assert_eq!(check_all_records(&env, "org-acme"), 6);
    let rotated = env.json(&["authority", "rotate", "org-acme"]);
    assert_eq!(rotated["chains_updated"], 2);
    assert_eq!(check_all_records(&env, "org-acme"), 6);
    let records = env.json(&["chain", "list"]);
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["key_id"] == rotated["new_key_id"])
    );
}

#[test]
fn a_tampered_record_fails_verification() {
    let env = Env::init();
    env.authority_with_chains("org-acme", &["agent-a", "agent-b"]);
    env.ok(&["chain", "verify", "agent-a"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = crate::support::raw_pool(&env.db_path()).await;
        sqlx::query("UPDATE trust_records SET body = replace(body, 'read:x', 'admin:all') WHERE agent_id = 'agent-a'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let (reason, _) = env.fails(&["chain", "verify", "agent-a"]);
    assert_eq!(reason, "verification_failed");
    let out = env.run(&["--output", "json", "chain", "verify", "--all"]);
    assert!(!out.status.success());
    let verdicts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = verdicts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["agent_id"] == "agent-a")
        .unwrap();
    assert_eq!(a["valid"], false);
    assert_eq!(a["reason"], "signature_invalid");
    let b = verdicts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["agent_id"] == "agent-b")
        .unwrap();
    assert_eq!(b["valid"], true);
}
