//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: `cargo fmt --check`, `cargo clippy --workspace
//!   --all-targets -- -D warnings`, `cargo deny check bans licenses sources`
//!   (when cargo-deny is installed), then `cargo xtask test`.
//! - `cargo xtask test [ARGS...]`: every test of the workspace (nextest when
//!   installed, plus doc tests). Services the tests need are started here and
//!   stopped afterwards.
//! - `cargo xtask bench [NAME]`: the benchmarks recorded in `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

#[cfg(test)]
mod tidy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci | test [ARGS...] | bench [resign|keyring]>");
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

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
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

fn test(extra: &[String]) -> Result {
    // Services for adapter tests are started here (none are needed by the
    // crates of this release: SQLite is embedded).
    if has("cargo", &["nextest", "--version"]) {
        let mut nextest = cargo();
        nextest
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra);
        run("cargo nextest run", nextest)?;
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--doc"]);
        run("cargo test --doc", doc)
    } else {
        let mut t = cargo();
        t.args(["test", "--workspace", "--no-fail-fast"]).args(extra);
        run("cargo test", t)
    }
}

fn bench(args: &[String]) -> Result {
    let name = args.first().map(String::as_str).unwrap_or("resign");
    match name {
        "resign" => {
            let mut b = cargo();
            b.args(["bench", "-p", "rotation-cli", "--bench", "resign", "--"])
                .args(&args[1.min(args.len())..]);
            run("bench resign", b)
        }
        "keyring" => {
            let mut b = cargo();
            b.args(["bench", "-p", "rotation-cli", "--bench", "keyring", "--"])
                .args(&args[1.min(args.len())..]);
            run("bench keyring", b)
        }
        other => Err(format!("unknown benchmark {other:?}; available: resign, keyring")),
    }
}
