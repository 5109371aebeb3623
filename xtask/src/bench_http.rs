//! `cargo xtask bench http [SECONDS] [CONNECTIONS]`: the HTTP API under
//! load on loopback. Builds the release binaries, initialises a SQLite store
//! in a temp directory, creates an operator token and one authority with a
//! few trust chains, starts `rotation-server` on a free port, and runs `wrk`
//! against `GET /v1/authorities/{id}/status` (CONNECTIONS connections) and
//! `POST /v1/authorities/{id}/rotate` (one connection: rotations of one
//! authority are serialised, concurrent ones are 409). Prints requests/s,
//! p50/p99 latency and the server's peak RSS (`VmHWM`), then stops the
//! server by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

const AUTHORITY: &str = "org-bench";
const CHAINS: usize = 5;

/// Runs the benchmark: `args` are the duration of each phase in seconds
/// (default 10) and the connections of the status phase (default 16).
pub(crate) fn bench_http(args: &[String]) -> Result {
    let seconds: u64 = parse_arg(args.first(), 10, "SECONDS")?;
    let connections: u64 = parse_arg(args.get(1), 16, "CONNECTIONS")?;
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("`wrk` is not installed: the HTTP benchmark needs it. Install it with \
             `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"
            .into());
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "rotation-server", "-p", "rotation-cli"]);
    run("cargo build --release (rotation-server, rotation)", build)?;
    let bin = release_dir();
    let (cli, server_bin) = (bin.join("rotation"), bin.join("rotation-server"));

    let dir = std::env::temp_dir().join(format!("rotation-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = with_dir(&dir, &cli, &server_bin, seconds, connections);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn parse_arg(arg: Option<&String>, default: u64, name: &str) -> Result<u64> {
    arg.map_or(Ok(default), |a| {
        a.parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} must be a positive integer, not {a:?}"))
    })
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("release")
}

fn with_dir(dir: &Path, cli: &Path, server_bin: &Path, seconds: u64, connections: u64) -> Result {
    let store = format!("sqlite://{}", dir.join("rotation.db").display());
    let rotation = |args: &[&str]| {
        let mut c = Command::new(cli);
        c.args(["--store", &store])
            .args(args)
            .env_remove("ROTATION_MASTER_PASSWORD");
        c
    };
    checked("rotation init", rotation(&["init"]))?;
    checked(
        "rotation authority create",
        rotation(&["authority", "create", AUTHORITY]),
    )?;
    for i in 0..CHAINS {
        let agent = format!("agent-{i}");
        checked(
            "rotation chain issue",
            rotation(&[
                "chain",
                "issue",
                &agent,
                "--authority",
                AUTHORITY,
                "--capability",
                "read",
            ]),
        )?;
    }
    let mut create = Command::new(server_bin);
    create.args([
        "--store",
        &store,
        "token",
        "create",
        "--role",
        "operator",
        "--description",
        "bench",
    ]);
    let token = String::from_utf8_lossy(&checked("rotation-server token create", create)?.stdout)
        .trim()
        .to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let child = Command::new(server_bin)
        .args(["--store", &store, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--scheduler-interval-seconds", "0"])
        // The benchmark measures the server, not the per-token limit.
        .args(["--rate-limit-per-second", "0"])
        .env("ROTATION_LOG", "warn")
        .env_remove("ROTATION_MASTER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rotation-server: {e}"))?;
    let mut server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(port)?;

    let header = format!("Authorization: Bearer {token}");
    let script = dir.join("rotate.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = \"{}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let duration = format!("{seconds}s");
    let status_url = format!("{base}/v1/authorities/{AUTHORITY}/status");
    let rotate_url = format!("{base}/v1/authorities/{AUTHORITY}/rotate");
    let conns = connections.to_string();
    let threads = connections.min(2).to_string();

    let mut status = Command::new("wrk");
    status.args([
        "-t",
        &threads,
        "-c",
        &conns,
        "-d",
        &duration,
        "--latency",
        "-H",
        &header,
        &status_url,
    ]);
    let status = wrk("GET status", status)?;
    let mut rotate = Command::new("wrk");
    rotate.args(["-t", "1", "-c", "1", "-d", &duration, "--latency", "-H", &header, "-s"]);
    rotate.arg(&script).arg(&rotate_url);
    let rotate = wrk("POST rotate", rotate)?;
    let hwm = peak_rss(server.0.id())?;
    server.stop()?;

    println!();
    println!("HTTP benchmark on loopback (SQLite store, {CHAINS} chains, {seconds} s per phase)");
    println!(
        "{:<12} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "endpoint", "conns", "requests/s", "p50", "p99", "non-2xx"
    );
    for (name, c, r) in [("GET status", conns.as_str(), &status), ("POST rotate", "1", &rotate)] {
        println!(
            "{name:<12} {c:>6} {:>12} {:>10} {:>10} {:>8}",
            r.requests_per_sec, r.p50, r.p99, r.non_2xx
        );
    }
    println!("server peak RSS (VmHWM): {hwm}");
    Ok(())
}

/// Figures from one `wrk --latency` run.
struct WrkResult {
    requests_per_sec: String,
    p50: String,
    p99: String,
    non_2xx: String,
}

fn wrk(step: &str, command: Command) -> Result<WrkResult> {
    let output = checked(&format!("wrk {step}"), command)?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // The token is in the command line only; wrk does not print headers.
    println!("{text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    Ok(WrkResult {
        requests_per_sec: field("Requests/sec:").ok_or_else(|| format!("wrk {step}: no Requests/sec"))?,
        p50: field("50%").ok_or_else(|| format!("wrk {step}: no 50% latency"))?,
        p99: field("99%").ok_or_else(|| format!("wrk {step}: no 99% latency"))?,
        non_2xx: field("Non-2xx or 3xx responses:").unwrap_or_else(|| "0".into()),
    })
}

fn checked(step: &str, mut command: Command) -> Result<Output> {
    eprintln!("xtask: {step}");
    let output = command.output().map_err(|e| format!("{step}: cannot start: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{step}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn wait_ready(port: u16) -> Result {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The server binds its port once the store is open and unlocked.
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("rotation-server did not start listening within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `VmHWM` of `pid` from `/proc/PID/status`.
fn peak_rss(pid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))
}

/// The server process, stopped with SIGTERM by its PID (SIGKILL if dropped).
struct Server(Child);

impl Server {
    fn stop(&mut self) -> Result {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().map_err(|e| e.to_string())?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("rotation-server (pid {pid}) did not stop on SIGTERM"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
