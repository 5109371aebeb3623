//! The script target: an operator's executable run once per rotation step.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rotation_core::ports::{CredentialTarget, Step, StepContext, StepOutput, Verifier};
use rotation_core::secret::{Secret, SecretValue};
use rotation_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::text::{Redactor, step_error, tail};

/// Default time a script may run before it is killed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes kept of each of stdout and stderr (the last ones).
const CAPTURE_LIMIT: usize = 64 * 1024;
/// Most characters of stderr quoted in an error message.
const MESSAGE_TAIL: usize = 2000;
/// How long output is still read after the script ended or was killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Extra attempts to start a script whose file is busy (ETXTBSY).
const SPAWN_RETRIES: u32 = 10;
/// Environment variables every script gets from this process (none of
/// them carries a secret); everything else is removed.
const BASE_ENV: [&str; 8] = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// A rotation script (setting `script`, an executable path), run once per
/// step with the step name (`create`, `set`, `test`, `finish`, `rollback`,
/// `disable`) as its only argument.
///
/// Its stdin is one JSON document: `{"path", "step", "rotation_id",
/// "strategy", "slot", "current", "pending", "previous"}`, values as
/// strings or `null`. Values are never passed in arguments or the
/// environment; the environment is cleared except `PATH`, `HOME`, `USER`,
/// `LOGNAME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` and the names given to
/// [`ScriptTarget::with_env`].
///
/// Exit status 0 is success; any other status fails the step
/// (`verification_failed` for `test`, `rotation_failed` otherwise) with the
/// exit code and the tail of stderr in the message. On success
/// [`StepOutput::log`] is `script set: exit 0; stderr: ...` with the last
/// 2000 characters of stderr. Stdout is not kept: a script may print a
/// value in a form redaction does not know. Only when the secret's
/// `script_log` setting is on, its last 64 KiB are returned in
/// [`StepOutput::stdout`], a field of its own that servers show to admins
/// only. Every value of the step is redacted from both, as is and in its
/// common encodings (base64, hex, percent-encoding). A script still running
/// at the timeout (60 s by default) is killed with its process group and
/// fails the step.
///
/// In `create` a script may produce the new value: if its stdout is a JSON
/// object with a string `value` (and optionally `attributes`, an object of
/// strings), that becomes [`StepOutput::value`] (and its attributes);
/// otherwise the engine generates the value. A missing or non-executable
/// script is `invalid_input`.
#[derive(Debug, Clone)]
pub struct ScriptTarget {
    timeout: Duration,
    env: Vec<String>,
}

impl Default for ScriptTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// The last [`CAPTURE_LIMIT`] bytes of a stream.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    /// Whether bytes were dropped from the front.
    truncated: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > CAPTURE_LIMIT {
            let excess = self.bytes.len() - CAPTURE_LIMIT;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    /// The captured text, redacted. When the front was cut, a value may
    /// have been cut in two there; the first bytes (as many as the longest
    /// value has) are dropped too so no part of a value survives.
    fn text(&self, redactor: &Redactor) -> String {
        if self.truncated {
            let skip = redactor.longest().min(self.bytes.len());
            let rest = String::from_utf8_lossy(&self.bytes[skip..]);
            format!("[… truncated] {}", redactor.apply(&rest))
        } else {
            redactor.apply(&String::from_utf8_lossy(&self.bytes))
        }
    }
}

/// How the script ended.
enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl ScriptTarget {
    /// A script target with the default timeout of 60 s.
    pub fn new() -> Self {
        ScriptTarget {
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }

    /// The same target with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same target passing these environment variables (when set) to
    /// scripts too, e.g. `VAULT_ADDR`. Never name one holding a secret.
    pub fn with_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env.extend(names.into_iter().map(Into::into));
        self
    }

    /// Runs the script for `step`.
    async fn exec(&self, ctx: &StepContext, step: Step) -> Result<StepOutput> {
        let path = ctx.secret.config.script.as_deref().ok_or_else(|| {
            Error::invalid_input(format!(
                "secret {}: the setting `script` is missing: name the rotation script to run",
                ctx.secret.path
            ))
        })?;
        let not_runnable = || Error::invalid_input(format!("rotation script not found / not executable: {path}"));
        if !is_executable(path).await {
            return Err(not_runnable());
        }
        let mut redactor = Redactor::for_step(ctx);

        let value = |v: &Option<rotation_core::ports::VersionedValue>| v.as_ref().map(|v| v.value.expose().to_owned());
        let input = serde_json::json!({
            "path": ctx.secret.path,
            "step": step.as_str(),
            "rotation_id": ctx.rotation_id.to_string(),
            "strategy": ctx.strategy.as_str(),
            "slot": ctx.slot,
            "current": value(&ctx.current),
            "pending": value(&ctx.pending),
            "previous": value(&ctx.previous),
        });
        let input = SecretValue::new(input.to_string());

        let mut cmd = tokio::process::Command::new(path);
        cmd.arg(step.as_str())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in BASE_ENV.iter().copied().chain(self.env.iter().map(String::as_str)) {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        // Its own process group, so a timeout kills what it started too.
        #[cfg(unix)]
        cmd.process_group(0);

        tracing::debug!(script = path, step = step.as_str(), "running rotation script");
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(child) => break child,
                // ETXTBSY: the file was being written (e.g. deployed) a
                // moment ago, or another thread's fork still holds it open.
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < SPAWN_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => not_runnable(),
                        _ => step_error(step, format!("cannot run rotation script {path}: {e}")),
                    });
                }
            }
        };

        let mut stdin = child.stdin.take();
        let writer = tokio::spawn(async move {
            if let Some(stdin) = stdin.as_mut() {
                // A script that does not read its input may exit first: a
                // broken pipe is not an error.
                let _ = stdin.write_all(input.expose().as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        });
        let stdout = Arc::new(Mutex::new(Capture::default()));
        let stderr = Arc::new(Mutex::new(Capture::default()));
        let readers = [
            child.stdout.take().map(|s| spawn_reader(s, stdout.clone())),
            child.stderr.take().map(|s| spawn_reader(s, stderr.clone())),
        ];

        let ended = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => Ended::Exited(status),
            Ok(Err(e)) => {
                kill(&mut child).await;
                return Err(step_error(
                    step,
                    format!("rotation script {path}: cannot wait for it: {e}"),
                ));
            }
            Err(_) => {
                kill(&mut child).await;
                Ended::TimedOut
            }
        };
        writer.abort();
        for reader in readers.into_iter().flatten() {
            let abort = reader.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
                abort.abort();
            }
        }

        let code = match ended {
            Ended::Exited(status) => status,
            Ended::TimedOut => {
                let err = stderr.lock().map(|c| c.text(&redactor)).unwrap_or_default();
                tracing::warn!(script = path, step = step.as_str(), "rotation script timed out");
                return Err(step_error(
                    step,
                    format!(
                        "rotation script {path} step {} timed out after {} s and was killed; stderr: {}",
                        step.as_str(),
                        self.timeout.as_secs_f64(),
                        tail(&err, MESSAGE_TAIL)
                    ),
                ));
            }
        };

        let mut output = StepOutput::default();
        if code.success() && step == Step::Create {
            let (truncated, raw) = stdout
                .lock()
                .map(|c| (c.truncated, c.bytes.clone()))
                .unwrap_or_default();
            // A cut output is not a value (its front is missing).
            let produced = if truncated {
                None
            } else {
                produced_value(&raw)
                    .map_err(|m| step_error(step, format!("rotation script {path} step create: {m}")))?
            };
            if let Some((value, attributes)) = produced {
                redactor.add(value.expose());
                output.value = Some(value);
                output.attributes = attributes;
            }
        }
        let err = stderr.lock().map(|c| c.text(&redactor)).unwrap_or_default();
        if !code.success() {
            let how = describe_status(code);
            tracing::warn!(script = path, step = step.as_str(), status = %how, "rotation script failed");
            return Err(step_error(
                step,
                format!(
                    "rotation script {path} step {} failed: {how}; stderr: {}",
                    step.as_str(),
                    tail(&err, MESSAGE_TAIL)
                ),
            ));
        }
        output.log = format!("script {}: exit 0; stderr: {}", step.as_str(), tail(&err, MESSAGE_TAIL));
        if ctx.secret.config.script_log {
            let out = stdout.lock().map(|c| c.text(&redactor)).unwrap_or_default();
            output.stdout = Some(out.trim_end().to_owned());
        }
        Ok(output)
    }
}

/// Whether `path` is a regular file with an execute bit.
async fn is_executable(path: &str) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                true
            }
        }
        _ => false,
    }
}

/// Reads a stream into `capture` until it ends.
fn spawn_reader<R>(mut stream: R, capture: Arc<Mutex<Capture>>) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut c) = capture.lock() {
                        c.push(&buf[..n]);
                    }
                }
            }
        }
    })
}

/// Kills the script and its process group, and reaps it.
async fn kill(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // The group id is the script's pid (process_group(0)); `kill` is
        // used because this crate has no unsafe code to call kill(2).
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(DRAIN_GRACE, child.wait()).await;
}

/// `exit code N` or `killed by signal N`.
fn describe_status(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    "ended without an exit code".to_owned()
}

/// A value a `create` script printed, with its attributes.
type Produced = (SecretValue, BTreeMap<String, String>);

/// The value a `create` script printed: stdout that is a JSON object with
/// a string `value` (and optionally `attributes`, strings). `Ok(None)` for
/// any other stdout; `Err` for such an object with unusable fields.
fn produced_value(stdout: &[u8]) -> std::result::Result<Option<Produced>, String> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str::<serde_json::Value>(trimmed) else {
        return Ok(None);
    };
    let value = match doc.remove("value") {
        None => return Ok(None),
        Some(serde_json::Value::String(v)) if !v.is_empty() => SecretValue::new(v),
        Some(_) => return Err("`value` in its output must be a non-empty string".into()),
    };
    let mut attributes = BTreeMap::new();
    match doc.remove("attributes") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) => {
                        attributes.insert(k, s);
                    }
                    _ => return Err(format!("attribute {k:?} in its output must be a string")),
                }
            }
        }
        Some(_) => return Err("`attributes` in its output must be an object of strings".into()),
    }
    Ok(Some((value, attributes)))
}

#[async_trait]
impl CredentialTarget for ScriptTarget {
    fn describe(&self, secret: &Secret) -> String {
        match secret.config.script.as_deref() {
            Some(script) => format!("rotation script {script}"),
            None => "rotation script (no `script` set)".to_owned(),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        self.exec(ctx, ctx.step).await
    }
}

#[async_trait]
impl Verifier for ScriptTarget {
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput> {
        self.exec(ctx, Step::Test).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_tail_and_hides_cut_values() {
        let secret = "S3CRET-VALUE-XYZ";
        let mut r = Redactor::for_step_values(&[secret]);
        let mut c = Capture::default();
        c.push(secret.as_bytes());
        c.push(&vec![b'a'; CAPTURE_LIMIT - 5]);
        c.push(b"\nend");
        assert!(c.truncated);
        assert_eq!(c.bytes.len(), CAPTURE_LIMIT);
        let text = c.text(&r);
        assert!(!text.contains("XYZ"), "a cut value must not survive");
        assert!(text.ends_with("end"));
        r.add("end");
        assert!(c.text(&r).ends_with("[redacted]"));
    }

    #[test]
    fn create_output_is_parsed_only_when_it_is_a_value_object() {
        assert!(produced_value(b"hello").unwrap().is_none());
        assert!(produced_value(b"{\"other\":1}").unwrap().is_none());
        let (v, a) = produced_value(b" {\"value\":\"abc\",\"attributes\":{\"k\":\"v\"}}\n")
            .unwrap()
            .unwrap();
        assert_eq!(v.expose(), "abc");
        assert_eq!(a.get("k").map(String::as_str), Some("v"));
        assert!(produced_value(b"{\"value\":1}").is_err());
        assert!(produced_value(b"{\"value\":\"x\",\"attributes\":{\"k\":1}}").is_err());
    }
}
