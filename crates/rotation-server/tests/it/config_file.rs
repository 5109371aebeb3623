//! `--config FILE` (`ROTATION_CONFIG`): TOML with the flags' keys;
//! precedence flags > environment > file > defaults; unknown keys named;
//! secrets only in a 0600 file.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::binary::store_with_key_file;

const BIN: &str = env!("CARGO_BIN_EXE_rotation-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for v in [
        "ROTATION_CONFIG",
        "ROTATION_LISTEN",
        "ROTATION_STORE",
        "ROTATION_WORKER_ID",
        "ROTATION_MASTER_PASSWORD",
        "ROTATION_NOTIFY_CONFIG",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "ROTATION_VAULT_TOKEN",
    ] {
        c.env_remove(v);
    }
    c
}

/// Waits until one of `ports` answers `/readyz` 200; returns it.
async fn serving_port(child: &mut Child, ports: &[u16]) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for port in ports {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
                assert_eq!(r.status(), StatusCode::OK);
                return *port;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited: {status}");
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_key_file(dir.path()).await;
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "# the server's settings\nstore = \"{url}\"\nlisten = \"127.0.0.1:{file_port}\"\n\
             scheduler_interval_seconds = 0\nworker_id = \"from-file\"\ncustody = \"local\"\n"
        ),
    )
    .unwrap();
    let ports = [file_port, env_port, flag_port];
    // File only (store and listen come from it).
    let mut child = command()
        .args(["--config", config.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(serving_port(&mut child, &ports).await, file_port);
    child.kill().unwrap();
    child.wait().unwrap();
    // The environment beats the file (ROTATION_CONFIG names the file).
    let mut child = command()
        .env("ROTATION_CONFIG", &config)
        .env("ROTATION_LISTEN", format!("127.0.0.1:{env_port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(serving_port(&mut child, &ports).await, env_port);
    child.kill().unwrap();
    child.wait().unwrap();
    // A flag beats both.
    let mut child = command()
        .env("ROTATION_CONFIG", &config)
        .env("ROTATION_LISTEN", format!("127.0.0.1:{env_port}"))
        .args(["--listen", &format!("127.0.0.1:{flag_port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(serving_port(&mut child, &ports).await, flag_port);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_and_readable_secrets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_key_file(dir.path()).await;
    let config = dir.path().join("server.toml");
    let fails = |expect: &'static [&'static str]| {
        let out = command()
            .args(["--config", config.to_str().unwrap(), "token", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("error[invalid_input]"), "{stderr}");
        for e in expect {
            assert!(stderr.contains(e), "{e:?} in {stderr}");
        }
        stderr
    };
    std::fs::write(&config, format!("store = \"{url}\"\nlisen = \"127.0.0.1:1\"\n")).unwrap();
    fails(&["lisen", "line 2"]);
    std::fs::write(&config, "scheduler_interval_seconds = \"soon\"\n").unwrap();
    fails(&["server.toml"]);
    std::fs::write(&config, format!("store = \"{url}\"\ncustody = \"hsm\"\n")).unwrap();
    fails(&["custody"]);

    // A secret in a file others may read: refused, naming the key, not the value.
    std::fs::write(
        &config,
        format!("store = \"{url}\"\nvault_token = \"hvs.very-secret\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = fails(&["vault_token", "chmod 600"]);
    assert!(!stderr.contains("very-secret"), "{stderr}");
    std::fs::write(&config, "store = \"postgres://u:pw@127.0.0.1:1/db\"\n").unwrap();
    fails(&["store (a URL with a password)"]);
    // In a 0600 file it is accepted (the store comes from the file).
    std::fs::write(
        &config,
        format!("store = \"{url}\"\nvault_token = \"hvs.very-secret\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = command()
        .args(["--config", config.to_str().unwrap(), "token", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A missing file is an error naming it.
    let out = command()
        .args(["--config", "/nonexistent/server.toml", "token", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/server.toml"));
}
