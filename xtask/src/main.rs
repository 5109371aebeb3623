//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: `cargo fmt --check`, `cargo clippy --workspace
//!   --all-targets -- -D warnings`, `cargo deny check bans licenses sources`
//!   (when cargo-deny is installed), then `cargo xtask test`; without
//!   incremental caches, printing the free disk space before and after.
//! - `cargo xtask test [ARGS...]`: every test of the workspace, or of the
//!   packages given with `-p` (ARGS go to nextest; nextest when
//!   installed, plus doc tests). Services the tests need are started here and
//!   stopped afterwards: a throwaway PostgreSQL (see [`postgres`]) unless
//!   `DATABASE_URL` is already set, in which case that server is used; and
//!   an OpenBao dev server (see [`openbao`]) unless `VAULT_ADDR` and
//!   `VAULT_TOKEN` are both set.
//! - `cargo xtask bench [NAME] [ARGS...]`: the benchmarks recorded in
//!   `docs/BENCHMARKS.md` (`resign` on SQLite, `resign-pg` on PostgreSQL:
//!   `DATABASE_URL`, or a throwaway server with durable settings; `http`:
//!   the server's API under `wrk`, see [`bench_http`]; `vault`: KV v2
//!   secret rotations and transit re-signing against `VAULT_ADDR` or a
//!   throwaway OpenBao).
//! - `cargo xtask openbao`: starts the throwaway OpenBao dev server of
//!   `cargo xtask test`, prints `export VAULT_ADDR=... VAULT_TOKEN=...` for
//!   running focused tests by hand, and stops it when stdin closes or a line is read.
//! - `cargo xtask fuzz-api [--max-examples N]`: schemathesis (from PyPI)
//!   against the server's `/openapi.json`; any 5xx fails (see [`fuzz_api`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod bench_http;
mod fuzz_api;
mod openbao;
mod postgres;
#[cfg(test)]
mod tidy;

use openbao::TestOpenBao;
use postgres::{Durability, TestPostgres};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz-api") => fuzz_api::fuzz_api(&args[1..]),
        Some("openbao") => openbao_shell(),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | test [ARGS...] | bench [resign | resign-pg | keyring | keyring-pg | http | vault] [ARGS...] | fuzz-api [--max-examples N] | openbao>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Set by `cargo xtask ci`: a one-off build from a clean clone gains nothing
/// from incremental caches, which roughly double the target directory.
static ONE_OFF_BUILD: AtomicBool = AtomicBool::new(false);

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    if ONE_OFF_BUILD.load(Ordering::Relaxed) {
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

/// Prints the free space where the build writes, so a CI log shows it when
/// a build dies of a full disk.
fn report_disk(when: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = if target.exists() { target } else { root() };
    if let Ok(out) = Command::new("df").arg("-h").arg(&dir).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().nth(1) {
            eprintln!("xtask: disk {when}: {line}");
        }
    }
}

fn run(step: &str, mut command: Command) -> Result {
    eprintln!("xtask: {step}");
    let started = Instant::now();
    let status = command.status().map_err(|e| format!("{step}: cannot start: {e}"))?;
    eprintln!("xtask: {step}: {status} in {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ci() -> Result {
    ONE_OFF_BUILD.store(true, Ordering::Relaxed);
    report_disk("before the build");
    let result = ci_steps();
    report_disk("after the tests");
    result
}

fn ci_steps() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run("cargo clippy", clippy)?;
    if has("cargo", &["deny", "--version"]) {
        let mut deny = cargo();
        deny.args(["deny", "check", "bans", "licenses", "sources"]);
        run("cargo deny", deny)?;
    } else {
        eprintln!("xtask: cargo-deny is not installed; skipping bans/licenses/sources (the GitHub workflow runs it)");
    }
    test(&[])
}

/// `DATABASE_URL` from the environment, or a throwaway server started now
/// (stopped when the returned guard is dropped).
fn database(durability: Durability) -> Result<(String, Option<TestPostgres>)> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            eprintln!(
                "xtask: using the PostgreSQL server of DATABASE_URL ({})",
                postgres::redact(&url)
            );
            Ok((url, None))
        }
        _ => {
            eprintln!("xtask: starting a throwaway PostgreSQL");
            let server = TestPostgres::start(durability)?;
            eprintln!("xtask: PostgreSQL is up at {}", server.redacted_url());
            Ok((server.url().to_owned(), Some(server)))
        }
    }
}

/// `VAULT_ADDR` and `VAULT_TOKEN` from the environment, or a throwaway
/// OpenBao dev server started now (stopped when the guard is dropped).
fn vault() -> Result<(String, String, Option<TestOpenBao>)> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    match (set("VAULT_ADDR"), set("VAULT_TOKEN")) {
        (Some(addr), Some(token)) => {
            eprintln!("xtask: using the Vault/OpenBao server of VAULT_ADDR ({addr})");
            Ok((addr, token, None))
        }
        _ => {
            eprintln!("xtask: starting a throwaway OpenBao dev server");
            let server = TestOpenBao::start().map_err(|e| format!("OpenBao: {e}"))?;
            eprintln!("xtask: OpenBao is up at {}", server.addr());
            Ok((server.addr().to_owned(), server.token().to_owned(), Some(server)))
        }
    }
}

fn openbao_shell() -> Result {
    let server = TestOpenBao::start()?;
    println!("export VAULT_ADDR={} VAULT_TOKEN={}", server.addr(), server.token());
    eprintln!("xtask: OpenBao runs until stdin closes or a line is read");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

fn test(extra: &[String]) -> Result {
    // The PostgreSQL and Vault tests need servers; the guards stop them when
    // this function returns, whether the tests passed or not.
    let (url, _server) = database(Durability::Throwaway)?;
    let (vault_addr, vault_token, _bao) = vault()?;
    let with_services = |c: &mut Command| {
        c.env("DATABASE_URL", &url)
            .env("VAULT_ADDR", &vault_addr)
            .env("VAULT_TOKEN", &vault_token);
    };
    // `-p NAME` narrows the run to packages; otherwise every package.
    let packages_given = extra
        .iter()
        .any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    if has("cargo", &["nextest", "--version"]) {
        let mut nextest = cargo();
        with_services(&mut nextest);
        nextest.args(["nextest", "run", "--no-fail-fast"]);
        if !packages_given {
            nextest.arg("--workspace");
        }
        nextest.args(extra);
        let tests = run("cargo nextest run", nextest);
        let mut doc = cargo();
        with_services(&mut doc);
        doc.args(["test", "--workspace", "--doc"]);
        let docs = run("cargo test --doc", doc);
        tests.and(docs)
    } else {
        let mut t = cargo();
        with_services(&mut t);
        t.args(["test", "--no-fail-fast"]);
        if !packages_given {
            t.arg("--workspace");
        }
        t.args(extra);
        run("cargo test", t)
    }
}

fn bench(args: &[String]) -> Result {
    let name = args.first().map(String::as_str).unwrap_or("resign");
    let rest = &args[1.min(args.len())..];
    let bench = |target: &str| {
        let mut b = cargo();
        b.args(["bench", "-p", "rotation-cli", "--bench", target, "--"])
            .args(rest);
        b
    };
    match name {
        "resign" => run("bench resign (SQLite)", bench("resign")),
        "resign-pg" => {
            // DATABASE_URL, or a throwaway server with PostgreSQL's durable defaults.
            let (url, _server) = database(Durability::Durable)?;
            let mut b = bench("resign");
            b.env("ROTATION_BENCH_STORE", &url);
            run("bench resign (PostgreSQL)", b)
        }
        "http" => bench_http::bench_http(rest),
        "keyring" => run("bench keyring (SQLite)", bench("keyring")),
        "vault" => {
            // VAULT_ADDR/VAULT_TOKEN, or a throwaway OpenBao dev server.
            let (addr, token, _bao) = vault()?;
            let mut b = cargo();
            b.env("VAULT_ADDR", &addr)
                .env("VAULT_TOKEN", &token)
                .args(["bench", "-p", "rotation-store-vault", "--bench", "vault", "--"])
                .args(rest);
            run("bench vault (OpenBao: KV v2 secrets, transit re-signing)", b)
        }
        "keyring-pg" => {
            let (url, _server) = database(Durability::Durable)?;
            let mut b = bench("keyring");
            b.env("ROTATION_BENCH_STORE", &url);
            run("bench keyring (PostgreSQL)", b)
        }
        other => Err(format!(
            "unknown benchmark {other:?}; available: resign, resign-pg, keyring, keyring-pg, http, vault"
        )),
    }
}
