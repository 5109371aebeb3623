//! `--secret-backend vault` and `--custody vault` against the Vault/OpenBao
//! server of `VAULT_ADDR`/`VAULT_TOKEN` (set by `cargo xtask test`; these
//! tests fail without them, they never skip).

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::support::Env;

fn server() -> (String, String) {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("{k} is not set: run these tests with `cargo xtask test`, which starts OpenBao"))
    };
    (get("VAULT_ADDR"), get("VAULT_TOKEN"))
}

/// `GET /v1/<path>` over a plain socket (HTTP/1.0), no Vault client involved.
fn plain_get(path: &str) -> (u16, Value) {
    let (addr, token) = server();
    let host = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /v1/{path} HTTP/1.0\r\nHost: {host}\r\nX-Vault-Token: {token}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn vault_args(prefix: &str) -> Vec<String> {
    let (addr, _) = server();
    vec![
        "--vault-addr".into(),
        addr,
        "--vault-kv-prefix".into(),
        prefix.into(),
        "--secret-backend".into(),
        "vault".into(),
    ]
}

fn with<'a>(base: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    base.iter().map(String::as_str).chain(args.iter().copied()).collect()
}

#[test]
fn a_secret_rotated_staged_into_kv_v2_reads_back_over_plain_http() {
    let env = Env::init();
    let prefix = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let v = vault_args(&prefix);
    env.ok(&[
        "policy",
        "set",
        "staged",
        "--interval-days",
        "30",
        "--strategy",
        "staged",
    ]);
    env.ok(&with(
        &v,
        &[
            "secret",
            "put",
            "app/db",
            "--value",
            "first-value-123",
            "--policy",
            "staged",
        ],
    ));
    let rotated = env.json(&with(&v, &["secret", "rotate", "app/db"]));
    assert_eq!(rotated["status"], "success", "{rotated}");
    assert_eq!(rotated["strategy"], "staged");
    assert_eq!(
        (rotated["old_version"].as_u64(), rotated["new_version"].as_u64()),
        (Some(1), Some(2))
    );
    let current = env.ok(&with(&v, &["secret", "get", "app/db"])).trim().to_owned();
    assert_ne!(current, "first-value-123");

    let (status, body) = plain_get(&format!("secret/data/{prefix}/app/db"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["data"]["value"],
        current.as_str(),
        "the new value, current in Vault"
    );
    assert_eq!(body["data"]["metadata"]["version"], 2);
    let (status, body) = plain_get(&format!("secret/data/{prefix}/app/db?version=1"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["data"]["value"], "first-value-123",
        "the previous version is still readable"
    );
    let previous = env.ok(&with(&v, &["secret", "get", "app/db", "--stage", "previous"]));
    assert_eq!(previous.trim(), "first-value-123");
    // The store's own backend knows nothing of it.
    let (reason, _) = env.fails(&["secret", "get", "app/db"]);
    assert_eq!(reason, "not_found");
}

#[test]
fn vault_flags_without_credentials_fail_clearly() {
    let env = Env::init();
    let (addr, _) = server();
    let out = env
        .cmd()
        .env_remove("VAULT_TOKEN")
        .args(["--vault-addr", &addr, "--secret-backend", "vault", "secret", "get", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[unauthorized]"), "{stderr}");
}

#[test]
fn an_authority_with_transit_custody_rotates_and_its_chains_verify() {
    let env = Env::init();
    let (addr, _) = server();
    let v = ["--vault-addr", addr.as_str(), "--custody", "vault"];
    let id = format!("org-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    env.ok(&[&v[..], &["authority", "create", &id]].concat());
    env.ok(&[
        &v[..],
        &["chain", "issue", "agent-1", "--authority", &id, "--capability", "read"],
    ]
    .concat());
    let rotated = env.json(&[&v[..], &["authority", "rotate", &id]].concat());
    assert_eq!(rotated["chains_updated"], 1, "{rotated}");
    env.ok(&[&v[..], &["chain", "verify", "--all"]].concat());

    // Revoking the old key deletes its transit key: the server can no longer sign with it.
    let old = rotated["old_key_id"].as_str().unwrap();
    let transit_key = format!(
        "transit/keys/rotation-sign-{}",
        old.replace('_', "_u").replace(':', "_c")
    );
    assert_eq!(plain_get(&transit_key).0, 200);
    let revoke = ["authority", "revoke", &id, old, "--force", "--reason", "test"];
    // Without the custody that holds the key it cannot be retired: refused, nothing changes.
    let (reason, stderr) = env.fails(&revoke);
    assert_eq!(reason, "invalid_input", "{stderr}");
    assert!(stderr.contains("vault-transit"), "the custody is named: {stderr}");
    assert_eq!(plain_get(&transit_key).0, 200);
    env.ok(&[&v[..], &revoke].concat());
    assert_eq!(plain_get(&transit_key).0, 404);
    env.ok(&[&v[..], &["chain", "verify", "--all"]].concat());
}
