//! The binary's Vault options (`--secret-backend`, `--custody`,
//! `--vault-*`, as the CLI's): the engine it builds uses them. Vault here
//! is an address nobody listens on, so what reaches it fails with
//! `backend_unavailable` (the real round trip against OpenBao is covered
//! by rotation-app's and rotation-store-vault's tests of the same adapters).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::init_store;

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

const VAULT_ENV: [&str; 12] = [
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "ROTATION_VAULT_TOKEN",
    "ROTATION_VAULT_ROLE_ID",
    "ROTATION_VAULT_SECRET_ID",
    "ROTATION_SECRET_BACKEND",
    "ROTATION_CUSTODY",
    "ROTATION_VAULT_KV_MOUNT",
    "ROTATION_VAULT_KV_PREFIX",
    "ROTATION_VAULT_TRANSIT_MOUNT",
    "ROTATION_MASTER_PASSWORD",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for v in VAULT_ENV {
        c.env_remove(v);
    }
    c
}

#[test]
fn vault_without_an_address_fails_at_start() {
    let out = command()
        .args(["--custody", "vault", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error[invalid_input]") && stderr.contains("--vault-addr"),
        "{stderr}"
    );
    let out = command().args(["--custody", "hsm"]).output().unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_custody_and_kv_backend_are_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rotation.db").display());
    init_store(&url).await;
    // No master key file: with Transit custody the server does not need one.
    let created = command()
        .args(["--store", &url, "token", "create", "--role", "admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();

    let port = free_port();
    let vault = format!("http://127.0.0.1:{}", free_port());
    let mut child = command()
        .args(["--store", &url, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--scheduler-interval-seconds", "0"])
        .args([
            "--secret-backend",
            "vault",
            "--custody",
            "vault",
            "--vault-addr",
            &vault,
        ])
        .env("ROTATION_VAULT_TOKEN", "test-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            assert_eq!(r.status(), StatusCode::OK);
            break client.get(format!("{base}/readyz")).send().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The custody is Transit: unreachable, so not ready.
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "backend_unavailable", "{body}");
    // Secret values go to KV: unreachable too.
    let put = client
        .put(format!("{base}/v1/secrets/app/db"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"value": "s3cret-value"}))
        .send()
        .await
        .unwrap();
    let status = put.status();
    let body: serde_json::Value = put.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["reason"], "backend_unavailable", "{body}");
    // A new authority's key is made by Transit: unreachable.
    let created = client
        .post(format!("{base}/v1/authorities"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"id": "org-transit"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::SERVICE_UNAVAILABLE);
    child.kill().unwrap();
    child.wait().unwrap();
}
