//! `cargo xtask fuzz-api`: the `rotation-server` API against its own
//! `/openapi.json` under schemathesis, a property-based API fuzzer from PyPI.
//!
//! Installs schemathesis into `.cache/schemathesis-venv` (ignored by git),
//! builds the binaries, initialises a temporary SQLite store, creates an
//! admin token, starts the server on a free loopback port, validates
//! `/openapi.json` with openapi-spec-validator, runs `st run` with the
//! [`CHECKS`] twice (path parameters generated, then pinned to seeded
//! resources), and stops the server by its PID. Any 5xx, an answer the
//! document does not describe (status, content type, body schema, headers)
//! or an invalid document fails the command.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

/// What schemathesis checks on every answer: no 5xx, and conformance to
/// the document (documented status code, content type, body schema and
/// headers).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance";

/// Examples per operation unless `--max-examples N` is given.
const DEFAULT_MAX_EXAMPLES: u32 = 50;

/// A running server, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Validates an OpenAPI document at a URL (argv[1]).
const VALIDATE: &str = "import sys, json, urllib.request
from openapi_spec_validator import validate
validate(json.load(urllib.request.urlopen(sys.argv[1])))
print('xtask: the OpenAPI document is valid')";

/// Seeds an authority, keyring, value, chain, policies, a secret
/// (`fuzz/app`) and a schedule through the API
/// (argv[1]: base URL; the token in `FUZZ_TOKEN`) and writes a
/// `schemathesis.toml` that pins the path parameters to them, so the second
/// pass reaches past 404s into the handlers' logic.
const SEED: &str = r#"import json, os, sys, urllib.request
base, token = sys.argv[1], os.environ["FUZZ_TOKEN"]
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method)) as r:
        return json.load(r)
call("POST", "/v1/authorities", {"id": "org-fuzz", "grace_period_hours": 1})
call("POST", "/v1/keyrings", {"name": "fuzz-ring"})
call("POST", "/v1/keyrings/fuzz-ring/values", {"id": "org-fuzz", "value": "fuzz"})
call("POST", "/v1/chains", {"agent_id": "agent-fuzz", "authority_id": "org-fuzz", "capabilities": ["read"]})
call("PUT", "/v1/policies/fuzz-ring", {"trigger": {"max_age_days": 30}})
call("PUT", "/v1/policies/fuzz-daily", {"interval_days": 1})
call("PUT", "/v1/secrets/fuzz/app", {"value": "fuzz-value-1"})
schedule = call("POST", "/v1/schedules", {"target": "authority:org-fuzz", "policy": "fuzz-daily"})["id"]
key = call("GET", "/v1/authorities/org-fuzz")["current_key_id"]
with open("schemathesis.toml", "w") as f:
    f.write('[parameters]\n"path.id" = "org-fuzz"\n"path.name" = "fuzz-ring"\n'
            '"path.agent" = "agent-fuzz"\n"path.key_id" = "%s"\n"path.path" = "fuzz/app"\n'
            '\n[[operations]]\ninclude-path = "/v1/schedules/{id}/resume"\n'
            'parameters = { "path.id" = "%s" }\n' % (key, schedule))
print("xtask: seeded org-fuzz, fuzz-ring, agent-fuzz, secret fuzz/app, schedule " + schedule)"#;

/// The virtualenv with schemathesis and openapi-spec-validator, installed on first use.
fn schemathesis() -> Result<PathBuf> {
    let venv = root().join(".cache/schemathesis-venv");
    let ready = venv.join("bin/st").exists()
        && Command::new(venv.join("bin/python"))
            .args(["-c", "import openapi_spec_validator"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let mut venv_cmd = Command::new("python3");
        venv_cmd.args(["-m", "venv"]).arg(&venv);
        run("python3 -m venv .cache/schemathesis-venv", venv_cmd)?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--quiet", "schemathesis>=4,<5", "openapi-spec-validator"]);
        run("pip install schemathesis (4.x) openapi-spec-validator", pip)?;
    }
    Ok(venv)
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_until_listening(port: u16, server: &mut Server) -> Result {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("rotation-server exited before listening ({status})"));
        }
        if Instant::now() > deadline {
            return Err("rotation-server did not start listening within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The output of `program args` (its stdout, trimmed), failing on a non-zero exit.
fn output(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({})",
            program.display(),
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs the fuzzer. `args`: `[--max-examples N]`, then anything after `--`
/// goes to `st run` as it is.
pub(crate) fn fuzz_api(args: &[String]) -> Result {
    let (ours, theirs) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let max_examples = match ours {
        [] => DEFAULT_MAX_EXAMPLES,
        [flag, n] if flag == "--max-examples" => {
            n.parse().map_err(|_| format!("--max-examples {n:?} is not a number"))?
        }
        other => {
            return Err(format!(
                "unknown arguments {other:?}; usage: cargo xtask fuzz-api [--max-examples N] [-- ST-ARGS...]"
            ));
        }
    };
    let venv = schemathesis()?;

    let mut build = cargo();
    build.args(["build", "-p", "rotation-cli", "-p", "rotation-server"]);
    run("cargo build (rotation, rotation-server)", build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let cli = target.join("debug/rotation");
    let server_bin = target.join("debug/rotation-server");

    let dir = TempDir(std::env::temp_dir().join(format!("rotation-fuzz-api-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("cannot create {}: {e}", dir.0.display()))?;
    let store = format!("sqlite://{}", dir.0.join("rotation.db").display());
    output(&cli, &["--store", &store, "init"])?;
    // The tokens go to schemathesis' command line only, never to our output.
    // A fresh one per pass: the fuzzer may revoke its own (it lists tokens
    // and calls DELETE /v1/tokens/{id} with what it found).
    let admin_token = || {
        let args = [
            "--store",
            &store,
            "token",
            "create",
            "--role",
            "admin",
            "--description",
            "fuzz-api",
        ];
        output(&server_bin, &args)
    };
    let token = admin_token()?;

    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.0.join("server.log")).map_err(|e| format!("server log: {e}"))?;
    let child = Command::new(&server_bin)
        .args(["--store", &store, "--listen", &listen])
        // Every generated case should reach its handler, not the per-token limit.
        .args(["--rate-limit-per-second", "0", "--validate-per-minute", "0"])
        .env_remove("ROTATION_MASTER_PASSWORD")
        .env("ROTATION_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start rotation-server: {e}"))?;
    let mut server = Server(child);
    eprintln!("xtask: rotation-server (pid {}) on {listen}", server.0.id());
    wait_until_listening(port, &mut server)?;

    let document = format!("http://{listen}/openapi.json");
    let mut validate = Command::new(venv.join("bin/python"));
    validate.args(["-c", VALIDATE, &document]);
    run("openapi-spec-validator", validate)?;

    let st = |step: &str, cwd: &Path, token: &str, extra: &[&str]| {
        let mut fuzz = Command::new(venv.join("bin/st"));
        fuzz.args(["run", &document])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", CHECKS])
            .args(["--max-examples", &max_examples.to_string()])
            .args(["--seed", "1"])
            .args(extra)
            .args(theirs)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .current_dir(cwd);
        run(step, fuzz)
    };
    // Pass 1: every parameter generated (mostly 404s and 422s on ids).
    let plain = dir.0.join("plain");
    std::fs::create_dir_all(&plain).map_err(|e| format!("cannot create {}: {e}", plain.display()))?;
    let result = st("schemathesis, generated path parameters", &plain, &token, &[]).and_then(|()| {
        // Pass 2: path parameters pinned to seeded resources.
        let token = admin_token()?;
        let mut seed = Command::new(venv.join("bin/python"));
        seed.args(["-c", SEED, &format!("http://{listen}")])
            .env("FUZZ_TOKEN", &token)
            .current_dir(&dir.0);
        run("seed resources", seed)?;
        // Token revocation was covered by pass 1; here it would end the run's access.
        let extra = ["--exclude-path", "/v1/tokens/{id}"];
        st("schemathesis, seeded path parameters", &dir.0, &token, &extra)
    });
    drop(server);
    if result.is_err() {
        let log = std::fs::read_to_string(dir.0.join("server.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(20).collect();
        if !errors.is_empty() {
            eprintln!("xtask: server errors:\n{}", errors.join("\n"));
        }
    }
    result
}
