//! The real `ScriptTarget`: a shell script whose `test` step fails.

use rotation_core::Reason;
use rotation_core::secret::{RotationStatus, SecretConfig, SecretType, Stage, Strategy};

use crate::support::{ECHO_SCRIPT_FAILING_TEST, Env, at_stage, put, random, rotate, set_policy, version, write_script};

#[tokio::test]
async fn a_failing_test_step_rolls_back_and_the_history_keeps_redacted_output() {
    let env = Env::new().await;
    let engine = env.engine();
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "rotate.sh", ECHO_SCRIPT_FAILING_TEST);
    set_policy(&engine, "scripted", |p| p.strategy = Some(Strategy::Staged)).await;
    let old = random("scriptold");
    put(
        &engine,
        "svc/scripted",
        SecretType::Generic,
        &old,
        Some("scripted"),
        SecretConfig {
            script: Some(script.clone()),
            ..SecretConfig::default()
        },
    )
    .await;

    let e = engine.rotate_secret(rotate("svc/scripted")).await.unwrap_err();
    assert_eq!(e.reason, Reason::VerificationFailed, "{e}");
    assert!(e.message.contains("rolled back"), "{}", e.message);
    assert!(e.message.contains("exit code 3"), "{}", e.message);

    let (current, value) = at_stage(&engine, "svc/scripted", Stage::Current).await;
    assert_eq!((current.version, value.as_str()), (1, old.as_str()));
    let (rejected, new) = version(&engine, "svc/scripted", 2).await;
    assert_eq!(rejected.attr("rolled_back"), Some("true"));

    let history = engine.secret_history("svc/scripted", 10).await.unwrap();
    let run = &history[0];
    assert_eq!(run.status, RotationStatus::RolledBack);
    assert_eq!(run.error_reason.as_deref(), Some("verification_failed"));
    let steps: Vec<(&str, bool)> = run.steps.iter().map(|s| (s.step.as_str(), s.ok)).collect();
    assert_eq!(
        steps,
        [("create", true), ("set", true), ("test", false), ("rollback", true)],
        "{run:#?}"
    );
    let test = &run.steps[2].log;
    assert!(test.contains("exit code 3"), "{test}");
    assert!(
        test.contains("script step test stderr got:"),
        "the script's output: {test}"
    );
    assert!(test.contains(r#""pending":"[redacted]""#), "{test}");
    assert!(test.contains(r#""current":"[redacted]""#), "{test}");
    // Stdout is not kept by default: the log has the exit status and stderr.
    let set = &run.steps[1].log;
    assert!(
        set.starts_with("script set: exit 0; stderr: script step set stderr got:"),
        "{set}"
    );
    assert!(!set.contains("script step set got:"), "{set}");
    assert!(set.contains("[redacted]"), "{set}");
    assert!(run.steps.iter().all(|s| s.stdout.is_none()), "{run:#?}");
    let history_json = serde_json::to_string(&history).unwrap();
    for secret in [&old, &new] {
        assert!(
            !history_json.contains(secret.as_str()),
            "history shows a value: {history_json}"
        );
        assert!(!e.message.contains(secret.as_str()), "{}", e.message);
    }
    let error = run.error.as_deref().unwrap_or_default();
    assert!(error.contains("exit code 3"), "{error}");
}
