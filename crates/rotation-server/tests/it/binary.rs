//! The `rotation-server` binary: `token create` prints a working token
//! once, `serve` reads its key file, and SIGTERM stops it gracefully.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{KEY_BYTES, init_store};

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_then_serve_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rotation.db").display());
    init_store(&url).await;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("master.key"))
        .unwrap()
        .write_all(hex::encode(KEY_BYTES).as_bytes())
        .unwrap();

    let created = Command::new(BIN)
        .args([
            "--store",
            &url,
            "token",
            "create",
            "--role",
            "viewer",
            "--description",
            "ci",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("rot_"), "{token}");
    let listed = Command::new(BIN)
        .args(["--store", &url, "token", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("\"viewer\"") && !listed.contains(token.rsplit_once('_').unwrap().1));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["--store", &url, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("ROTATION_MASTER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            assert_eq!(r.status(), StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .get(format!("{base}/v1/authorities"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never logged");
}
