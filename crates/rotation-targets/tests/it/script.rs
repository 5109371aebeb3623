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
    let set = with_values(&script_ctx(&script, Step::Set), Some(&current), Some(&pending));
    let out = target.run(&set).await.unwrap();
    let log = &out.log;
    assert!(
        log.starts_with("script set: exit 0; stdout: arg=set argc=1 input={"),
        "{log}"
    );
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
    assert!(log.contains("stderr: note from set"), "{log}");
    assert!(!log.contains("in the environment"), "{log}");
    assert!(!log.contains(&current) && !log.contains(&pending), "{log}");
    assert!(out.value.is_none());

    // Every step is passed by name.
    for step in [Step::Create, Step::Test, Step::Finish, Step::Rollback, Step::Disable] {
        let out = target.run(&at(&set, step)).await.unwrap();
        assert!(out.log.contains(&format!("arg={} ", step.as_str())), "{}", out.log);
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

    let out = target.run(&script_ctx(&script, Step::Set)).await.unwrap();
    assert!(out.log.len() < 70 * 1024, "log is {} bytes", out.log.len());
    assert!(out.log.contains("[… truncated]") && out.log.contains("tail-marker"));
    assert!(out.value.is_none(), "only create produces a value");
}
