//! Key material from outside: a key file (32 bytes as hex or base64), or a
//! key provider command (seed 002's custom key provider: any KMS CLI).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use rotation_core::ports::DataKey;
use rotation_core::{Error, Reason, Result};
use zeroize::Zeroizing;

/// How long a key provider command may run.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes read from a key provider's output.
const PROVIDER_OUTPUT_LIMIT: usize = 64 * 1024;

/// Decodes 32 key bytes from hex or base64 (standard or URL-safe, padded or not).
pub(crate) fn decode_key(text: &str) -> Result<DataKey> {
    let text = text.trim();
    let bytes = Zeroizing::new(if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| Error::invalid_input("key is not valid hex"))?
    } else {
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| Error::invalid_input("key is neither 64 hex characters nor base64"))?
    });
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::invalid_input(format!("key must be exactly 32 bytes (AES-256), got {}", bytes.len())))?;
    Ok(DataKey::from_bytes(array))
}

/// Reads a key file.
pub(crate) fn from_file(path: &Path) -> Result<DataKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_input(format!("cannot read {}: {e}", path.display())))?,
    );
    decode_key(&text).map_err(|e| Error::invalid_input(format!("{}: {}", path.display(), e.message)))
}

/// Checks the names given with `--key-provider-env`: environment variable
/// names, and none of this program's own `ROTATION_*` variables (they hold
/// the master password and the store URL with its credentials).
pub(crate) fn check_provider_env(names: &[String]) -> Result<()> {
    for name in names {
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Error::invalid_input(format!(
                "--key-provider-env {name:?} is not an environment variable name"
            )));
        }
        if name.starts_with("ROTATION_") {
            return Err(Error::invalid_input(format!(
                "--key-provider-env {name}: rotation's own ROTATION_* variables are never passed to a key provider"
            )));
        }
    }
    Ok(())
}

/// Runs a key provider command (`sh -c`): it must exit 0 and print
/// `{"key": "<hex or base64>", "version": "<label>"}`. Any failure is a
/// `rotation_failed` error, before anything is changed. The command's
/// output is never echoed (it holds the key).
///
/// Its environment is cleared down to [`rotation_app::CHILD_BASE_ENV`]
/// (`PATH`, `HOME`, ...) plus the variables named in `extra_env` (checked
/// by [`check_provider_env`]), so the master password, Vault tokens and
/// other credentials of this process never reach it unless asked for.
pub(crate) async fn from_command(command: &str, extra_env: &[String]) -> Result<(DataKey, String)> {
    check_provider_env(extra_env)?;
    let failed = |why: String| {
        Error::new(
            Reason::RotationFailed,
            format!("key provider command failed: {why}; nothing was changed"),
        )
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).env_clear();
    for name in rotation_app::CHILD_BASE_ENV
        .iter()
        .copied()
        .chain(extra_env.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot start it: {e}")))?;
    let output = tokio::time::timeout(PROVIDER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {}s", PROVIDER_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(300).collect();
        return Err(failed(format!("{} ({stderr})", output.status)));
    }
    if output.stdout.len() > PROVIDER_OUTPUT_LIMIT {
        return Err(failed("its output is too large".into()));
    }
    let stdout = Zeroizing::new(output.stdout);
    #[derive(serde::Deserialize)]
    struct Provided {
        key: String,
        version: Option<String>,
    }
    let provided: Provided = serde_json::from_slice(&stdout)
        .map_err(|_| failed("its output is not {\"key\": \"...\", \"version\": \"...\"}".into()))?;
    let key = Zeroizing::new(provided.key);
    let key = decode_key(&key).map_err(|e| failed(e.message))?;
    let label = provided.version.unwrap_or_else(|| "unlabelled".into());
    // The label goes into the key history and the audit log.
    if label.is_empty() || label.len() > 128 || label.chars().any(rotation_core::ids::is_invisible) {
        return Err(failed(
            "its version label must be 1 to 128 bytes without control or invisible characters".into(),
        ));
    }
    Ok((key, label))
}
