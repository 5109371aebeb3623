//! `--config FILE` (`ROTATION_CONFIG`): a TOML file with the same keys as
//! the flags (underscores for dashes). Precedence: flags > environment >
//! file > defaults. Unknown keys are an error naming the key. A file
//! holding a secret (`vault_token`, `vault_secret_id`, or a store URL with
//! a password) must not be readable by group or others (mode 0600).

use std::path::{Path, PathBuf};

use rotation_core::{Error, Result};
use serde::Deserialize;

/// The file's keys; every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) store: Option<String>,
    pub(crate) master_key_file: Option<PathBuf>,
    pub(crate) listen: Option<String>,
    pub(crate) scheduler_interval_seconds: Option<u64>,
    pub(crate) worker_id: Option<String>,
    pub(crate) lease_seconds: Option<u32>,
    pub(crate) body_limit_bytes: Option<usize>,
    pub(crate) request_timeout_seconds: Option<u64>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) notify_config: Option<PathBuf>,
    pub(crate) allow_plain_http: Option<bool>,
    pub(crate) unsafe_clock: Option<bool>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) rate_limit_per_second: Option<u32>,
    pub(crate) validate_per_minute: Option<u32>,
    pub(crate) secret_backend: Option<String>,
    pub(crate) custody: Option<String>,
    pub(crate) vault_addr: Option<String>,
    pub(crate) vault_token: Option<String>,
    pub(crate) vault_role_id: Option<String>,
    pub(crate) vault_secret_id: Option<String>,
    pub(crate) vault_namespace: Option<String>,
    pub(crate) vault_kv_mount: Option<String>,
    pub(crate) vault_kv_prefix: Option<String>,
    pub(crate) vault_transit_mount: Option<String>,
}

impl FileConfig {
    /// The keys holding a secret that are set.
    fn secrets(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.vault_token.is_some() {
            out.push("vault_token");
        }
        if self.vault_secret_id.is_some() {
            out.push("vault_secret_id");
        }
        if self.store.as_deref().is_some_and(url_has_password) {
            out.push("store (a URL with a password)");
        }
        out
    }
}

/// Whether `url` carries a password (`scheme://user:password@host...`).
fn url_has_password(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Reads and checks the file. Errors name the file and the key, never a value.
pub(crate) fn read(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid_input(format!("cannot read the config file {}: {e}", path.display())))?;
    let config: FileConfig = toml::from_str(&text).map_err(|e| {
        // toml's message names the key (`unknown field `x``, `invalid type`)
        // and quotes the line; keep only the first line (no value).
        let message = e.message().lines().next().unwrap_or("invalid TOML").to_owned();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        Error::invalid_input(format!("config file {}{at}: {message}", path.display()))
    })?;
    let secrets = config.secrets();
    if !secrets.is_empty() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::invalid_input(format!("cannot read the config file {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::invalid_input(format!(
                "config file {} holds a secret ({}) but is readable by others (mode {:o}): \
                 chmod 600 it, or pass the secret by environment",
                path.display(),
                secrets.join(", "),
                mode & 0o777
            )));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found() {
        assert!(url_has_password("postgres://u:p@h:5432/db"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("sqlite:///tmp/x.db"));
    }
}
