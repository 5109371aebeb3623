//! Running the binary against a private store.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// The Argon2id costs test stores are created with (`ROTATION_KDF_PARAMS`).
pub(crate) const TEST_KDF_PARAMS: &str = "m=19456,t=2,p=1";

/// A private data directory and helpers to run `rotation` against it.
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) password: Option<String>,
    pub(crate) now: Option<String>,
    /// `ROTATION_URL_ALLOWLIST` (e.g. `127.0.0.1` for local listeners).
    pub(crate) url_allowlist: Option<String>,
}

impl Env {
    /// A fresh, uninitialised environment (key-file master key).
    pub(crate) fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            password: None,
            now: None,
            url_allowlist: None,
        }
    }

    /// A fresh environment, initialised.
    pub(crate) fn init() -> Self {
        let env = Env::new();
        env.ok(&["init"]);
        env
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("rotation.db")
    }

    pub(crate) fn store_url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    pub(crate) fn key_file(&self) -> PathBuf {
        self.dir.path().join("data").join("master.key")
    }

    /// `rotation --store <private> ...` with a clean environment.
    pub(crate) fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The same as [`Env::cmd`], as a std command (to spawn and kill).
    pub(crate) fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("rotation"));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("ROTATION_") {
                c.env_remove(k);
            }
        }
        c.env("ROTATION_STORE", self.store_url());
        // Master passwords of test stores use the lowest Argon2id costs
        // allowed (the pre-256 MiB default), so the suite stays fast; tests
        // of the default costs remove this variable.
        c.env("ROTATION_KDF_PARAMS", TEST_KDF_PARAMS);
        if let Some(p) = &self.password {
            c.env("ROTATION_MASTER_PASSWORD", p);
        }
        if let Some(n) = &self.now {
            c.env("ROTATION_NOW", n);
        }
        if let Some(a) = &self.url_allowlist {
            c.env("ROTATION_URL_ALLOWLIST", a);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`rotation {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--output json` and parses stdout.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{text}"))
    }

    /// Runs, expects failure, and returns the reason of `error[<reason>]`.
    pub(crate) fn fails(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`rotation {}` succeeded unexpectedly",
            args.join(" ")
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let reason = stderr
            .lines()
            .find_map(|l| l.strip_prefix("error[").and_then(|r| r.split(']').next()))
            .unwrap_or_else(|| panic!("no error[reason] in stderr: {stderr}"))
            .to_owned();
        (reason, stderr)
    }

    /// Creates `org-acme` and issues chains for `agents`.
    pub(crate) fn authority_with_chains(&self, id: &str, agents: &[&str]) {
        self.ok(&["authority", "create", id]);
        for a in agents {
            self.ok(&["chain", "issue", a, "--authority", id, "--capability", "read:x"]);
        }
    }
}

/// RFC 3339 of now plus `hours`.
pub(crate) fn hours_from_now(hours: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::hours(hours)).to_rfc3339()
}

/// Opens the store file directly, bypassing the application.
pub(crate) async fn raw_pool(db: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", db.display());
    sqlx::SqlitePool::connect(&url).await.unwrap()
}
