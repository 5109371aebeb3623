//! `ScriptTarget` with small shell scripts in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rotation_core::Reason;
use rotation_core::ports::{CredentialTarget, Step, StepContext, Verifier};
use rotation_core::secret::{SecretConfig, SecretType};
use rotation_targets::ScriptTarget;

use crate::support::{at, ctx, random, secret, with_values};

fn write_script(dir: &Path, name: &str, body: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn script_ctx(script: &str, step: Step) -> StepContext {
    let config = SecretConfig {
        script: Some(script.into()),
        ..SecretConfig::default()
    };
    ctx(secret("app/api-key", SecretType::ApiKey, config), step)
}

/// `script_ctx` with the `script_log` setting on (stdout kept).
fn logged_ctx(script: &str, step: Step) -> StepContext {
    let mut c = script_ctx(script, step);
    c.secret.config.script_log = true;
    c
}

#[tokio::test]
async fn a_succeeding_script_gets_the_values_on_stdin_and_its_output_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "echo.sh",
        r#"input=$(cat)
echo "arg=$1 argc=$# input=$input"
env | grep -i secret && echo "a value is in the environment"
echo "note from $1" >&2"#,
        0o755,
    );
    let (current, pending) = (random("cur-SECRET"), random("pend-SECRET"));
    let target = ScriptTarget::new();

    // By default stdout is not kept: the exit status and stderr only.
    let set = with_values(&script_ctx(&script, Step::Set), Some(&current), Some(&pending));
    let out = target.run(&set).await.unwrap();
    assert_eq!(out.log, "script set: exit 0; stderr: note from set");
    assert_eq!(out.stdout, None);

    // With `script_log`, stdout is kept (redacted) in its own field.
    let set = with_values(&logged_ctx(&script, Step::Set), Some(&current), Some(&pending));
    let out = target.run(&set).await.unwrap();
    assert_eq!(out.log, "script set: exit 0; stderr: note from set");
    let log = out.stdout.as_deref().expect("script_log keeps stdout");
    assert!(log.starts_with("arg=set argc=1 input={"), "{log}");
    for field in [
        r#""path":"app/api-key""#,
        r#""step":"set""#,
        r#""strategy":"staged""#,
        r#""slot":null"#,
        r#""previous":null"#,
        r#""current":"[redacted]""#,
        r#""pending":"[redacted]""#,
    ] {
        assert!(log.contains(field), "{field} missing in {log}");
    }
    assert!(
        log.contains(&format!(r#""rotation_id":"{}""#, set.rotation_id)),
        "{log}"
    );
    assert!(!log.contains("in the environment"), "{log}");
    assert!(!log.contains(&current) && !log.contains(&pending), "{log}");
    assert!(out.value.is_none());

    // Every step is passed by name.
    for step in [Step::Create, Step::Test, Step::Finish, Step::Rollback, Step::Disable] {
        let out = target.run(&at(&set, step)).await.unwrap();
        let stdout = out.stdout.unwrap_or_default();
        assert!(stdout.contains(&format!("arg={} ", step.as_str())), "{stdout}");
    }
}

#[tokio::test]
async fn a_failing_test_step_is_verification_failed_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "fail-test.sh",
        r#"input=$(cat)
case "$1" in
  test) echo "login refused for $input" >&2; exit 3 ;;
  set) exit 0 ;;
  *) echo "cannot $1" >&2; exit 4 ;;
esac"#,
        0o755,
    );
    let pending = random("pend-SECRET");
    let target = ScriptTarget::new();
    let base = with_values(&script_ctx(&script, Step::Set), None, Some(&pending));
    target.run(&base).await.unwrap();

    let e = target.run(&at(&base, Step::Test)).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
    assert!(e.message.contains("exit code 3"), "{}", e.message);
    assert!(e.message.contains("login refused for"), "{}", e.message);
    assert!(!e.message.contains(&pending), "{}", e.message);

    let e = target.verify(&at(&base, Step::Set)).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "verify runs the test step");

    let e = target.run(&at(&base, Step::Finish)).await.unwrap_err();
    assert_eq!(e.reason, Reason::RotationFailed);
    assert!(
        e.message.contains("exit code 4") && e.message.contains("cannot finish"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_script_past_its_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "slow.sh", "echo started >&2\nsleep 30\necho done", 0o755);
    let target = ScriptTarget::new().with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let e = target.run(&script_ctx(&script, Step::Set)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.reason, Reason::RotationFailed);
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert!(e.message.contains("started"), "{}", e.message);
    let e = target.run(&script_ctx(&script, Step::Test)).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed);
}

#[tokio::test]
async fn missing_or_not_executable_scripts_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptTarget::new();
    let missing = dir.path().join("nope.sh");
    let missing = missing.to_str().unwrap();
    let e = target.run(&script_ctx(missing, Step::Set)).await.unwrap_err();
    assert_eq!(e.reason, Reason::InvalidInput);
    assert_eq!(
        e.message,
        format!("rotation script not found / not executable: {missing}")
    );

    let plain = write_script(dir.path(), "plain.sh", "exit 0", 0o644);
    let e = target.run(&script_ctx(&plain, Step::Set)).await.unwrap_err();
    assert_eq!(e.reason, Reason::InvalidInput);
    assert!(e.message.contains("not executable"), "{}", e.message);

    let dir_path = dir.path().to_str().unwrap();
    assert_eq!(
        target.run(&script_ctx(dir_path, Step::Set)).await.unwrap_err().reason,
        Reason::InvalidInput
    );

    let mut unset = script_ctx(&plain, Step::Set);
    unset.secret.config.script = None;
    assert_eq!(target.run(&unset).await.unwrap_err().reason, Reason::InvalidInput);
}

#[tokio::test]
async fn create_may_produce_the_value_and_output_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "create.sh",
        r#"cat >/dev/null
case "$1" in
  create) echo '{"value":"made-by-script-XYZ","attributes":{"key_id":"k1"}}' ;;
  set) head -c 300000 /dev/zero | tr '\0' 'a'; echo ' tail-marker' ;;
esac"#,
        0o755,
    );
    let target = ScriptTarget::new();
    let out = target.run(&script_ctx(&script, Step::Create)).await.unwrap();
    assert_eq!(out.value.as_ref().map(|v| v.expose()), Some("made-by-script-XYZ"));
    assert_eq!(out.attributes.get("key_id").map(String::as_str), Some("k1"));
    assert!(!out.log.contains("made-by-script-XYZ"), "{}", out.log);
    assert_eq!(out.stdout, None);
    let out = target.run(&logged_ctx(&script, Step::Create)).await.unwrap();
    assert_eq!(out.value.as_ref().map(|v| v.expose()), Some("made-by-script-XYZ"));
    let stdout = out.stdout.unwrap();
    assert!(
        stdout.contains("[redacted]") && !stdout.contains("made-by-script-XYZ"),
        "{stdout}"
    );

    let out = target.run(&logged_ctx(&script, Step::Set)).await.unwrap();
    let stdout = out.stdout.unwrap();
    assert!(stdout.len() < 70 * 1024, "stdout is {} bytes", stdout.len());
    assert!(stdout.contains("[… truncated]") && stdout.contains("tail-marker"));
    assert!(out.value.is_none(), "only create produces a value");
}

#[tokio::test]
async fn encodings_of_the_values_never_leak_and_stderr_is_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    // Prints the new value in base64 (padded, unpadded, URL-safe, inside
    // a JSON document), hex and percent-encoded, on stdout and stderr.
    let script = write_script(
        dir.path(),
        "encode.sh",
        r#"value=$(sed -e 's/.*"pending":"\([^"]*\)".*/\1/')
head -c 5000 /dev/zero | tr '\0' 'e' >&2
echo >&2
for fd in 1 2; do
  {
    printf 'b64=%s\n' "$(printf '%s' "$value" | base64 -w0)"
    printf 'b64nopad=%s\n' "$(printf '%s' "$value" | base64 -w0 | tr -d '=')"
    printf 'b64url=%s\n' "$(printf '%s' "$value" | base64 -w0 | tr '+/' '-_')"
    printf 'doc=%s\n' "$(printf '{"password":"%s"}' "$value" | base64 -w0)"
    printf 'hex=%s\n' "$(printf '%s' "$value" | od -An -tx1 | tr -d ' \n')"
    printf 'HEX=%s\n' "$(printf '%s' "$value" | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F')"
    printf 'pct=%s\n' "$(printf '%s' "$value" | sed -e 's|/|%2F|g; s|+|%2B|g; s|?|%3F|g')"
  } >&$fd
done
echo 'stderr-end' >&2"#,
        0o755,
    );
    let pending = format!("{}/+?x", random("pend-SECRET"));
    let current = random("cur-SECRET");
    let target = ScriptTarget::new();
    let encodings = |v: &str| {
        let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
        [
            v.to_owned(),
            hex.clone(),
            hex.to_uppercase(),
            v.replace('/', "%2F").replace('+', "%2B").replace('?', "%3F"),
        ]
    };
    for logged in [false, true] {
        let base = if logged {
            logged_ctx(&script, Step::Set)
        } else {
            script_ctx(&script, Step::Set)
        };
        let set = with_values(&base, Some(&current), Some(&pending));
        let out = target.run(&set).await.unwrap();
        let stdout = out.stdout.clone().unwrap_or_default();
        assert_eq!(out.stdout.is_some(), logged);
        for text in [&out.log, &stdout] {
            for form in encodings(&pending) {
                assert!(!text.contains(&form), "{form} in {text}");
            }
            // No line keeps more than the few characters at a base64 edge.
            for line in text.lines().filter(|l| l.contains('=')) {
                let shown = line.split_once('=').map_or("", |(_, v)| v).replace("[redacted]", "");
                assert!(shown.trim_end_matches('=').len() <= 28, "{line}");
            }
        }
        if logged {
            assert!(stdout.starts_with("b64=[redacted]"), "{stdout}");
            assert!(
                stdout.contains("hex=[redacted]") && stdout.contains("pct=[redacted]"),
                "{stdout}"
            );
        }
        // stderr: its last 2000 characters only.
        assert!(out.log.ends_with("stderr-end"), "{}", out.log);
        assert!(out.log.chars().count() < 2100, "{} chars", out.log.chars().count());
        assert!(
            out.log.contains("stderr: …e") && out.log.contains("b64=[redacted]"),
            "{}",
            out.log
        );
    }
}
