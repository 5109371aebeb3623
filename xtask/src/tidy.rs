//! Tidy checks of the project's own rules, run by plain `cargo test`.

use std::path::{Path, PathBuf};

use crate::root;

/// Library crates: no printing to stdout/stderr, only `tracing`.
const LIBRARIES: &[&str] = &[
    "rotation-app",
    "rotation-core",
    "rotation-crypto",
    "rotation-store-pg",
    "rotation-store-sqlite",
    "rotation-testkit",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` doc line: {missing:?}"
    );
}

#[test]
fn library_crates_do_not_print() {
    let mut offenders = Vec::new();
    for lib in LIBRARIES {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(lib).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if ["println!", "eprintln!", "print!(", "eprint!(", "dbg!"]
                    .iter()
                    .any(|m| code.contains(m))
                {
                    offenders.push(format!("{}:{}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library crates print instead of using tracing: {offenders:?}"
    );
}

#[test]
fn core_depends_on_no_io_or_crypto_library() {
    let manifest = std::fs::read_to_string(root().join("crates/rotation-core/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    for banned in ["ring", "sqlx", "reqwest", "tokio", "argon2", "aes-gcm", "ed25519"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "rotation-core must not depend on {banned}"
        );
    }
}
