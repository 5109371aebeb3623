//! `rotation secret ...` and `rotation stats`.

use std::io::Read as _;

use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::secret::{Generator, SecretConfig, SecretType, SecretValue, Stage, VersionSelector};
use rotation_core::{Error, Reason, Result};
use serde_json::json;

use crate::app::Context;
use crate::cli::{Output, SecretCommand};
use crate::output::{self, time};

/// A value from `--value`, or standard input with `--value-stdin` (one
/// trailing newline dropped).
fn read_value(value: Option<String>, stdin: bool) -> Result<Option<SecretValue>> {
    if stdin {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::invalid_input(format!("cannot read the value from standard input: {e}")))?;
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        return Ok(Some(SecretValue::new(trimmed)));
    }
    Ok(value.map(SecretValue::new))
}

pub(crate) async fn run(ctx: &Context, command: SecretCommand) -> Result<()> {
    let out = ctx.global.output;
    let engine = ctx.engine(true).await?;
    match command {
        SecretCommand::Put {
            path,
            secret_type,
            value,
            value_stdin,
            generate,
            policy,
            admin_secret,
            role,
            script,
            script_log,
            verify,
            ca,
            ca_secret,
            common_name,
            validity_days,
            renew_before_days,
        } => {
            let secret_type = secret_type.as_deref().map(str::parse::<SecretType>).transpose()?;
            let generator = generate
                .as_deref()
                .map(Generator::parse)
                .transpose()
                .map_err(|e| Error::invalid_input(e.message))?;
            let existing = engine.store().get_secret(&path).await?;
            let settings_given = admin_secret.is_some()
                || role.is_some()
                || script.is_some()
                || script_log
                || !verify.is_empty()
                || ca
                || ca_secret.is_some()
                || common_name.is_some()
                || validity_days.is_some()
                || renew_before_days.is_some();
            let config = settings_given.then(|| {
                let mut c = existing.as_ref().map(|s| s.config.clone()).unwrap_or_default();
                let merge = |slot: &mut Option<String>, v: Option<String>| {
                    if v.is_some() {
                        *slot = v;
                    }
                };
                merge(&mut c.admin_secret, admin_secret);
                merge(&mut c.role, role);
                merge(&mut c.script, script);
                merge(&mut c.ca_secret, ca_secret);
                merge(&mut c.common_name, common_name);
                if !verify.is_empty() {
                    c.verify = verify;
                }
                c.ca |= ca;
                c.script_log |= script_log;
                c.validity_days = validity_days.or(c.validity_days);
                c.renew_before_days = renew_before_days.or(c.renew_before_days);
                SecretConfig { ..c }
            });
            if let Some(c) = &config {
                // http: tests may not point at internal addresses.
                rotation_app::check_verify_urls(&c.verify, &rotation_app::url_allowlist_from_env()?).await?;
            }
            let (secret, version) = engine
                .put_secret(PutSecret {
                    path,
                    secret_type,
                    value: read_value(value, value_stdin)?,
                    generator,
                    policy,
                    config,
                })
                .await?;
            let rows = [
                ("path", secret.path.clone()),
                ("type", secret.secret_type.to_string()),
                ("version", version.version.to_string()),
                ("stages", stages(&version.stages)),
                ("policy", secret.policy.clone().unwrap_or_else(|| "-".into())),
            ];
            output::record(out, &json!({"secret": secret, "version": version}), &rows)
        }
        SecretCommand::Get { path, version, stage } => {
            let selector = match (version, stage) {
                (Some(n), _) => VersionSelector::Version(n),
                (None, Some(s)) => VersionSelector::Stage(s.parse()?),
                (None, None) => VersionSelector::Stage(Stage::Current),
            };
            let (v, value) = engine.get_secret(&path, selector).await?;
            match out {
                Output::Json => output::json(&json!({
                    "path": path, "version": v.version, "stages": v.stages,
                    "created_at": v.created_at, "attributes": v.attributes, "value": value.expose(),
                })),
                // The value alone, so `$(rotation secret get PATH)` works.
                Output::Table => output::line(value.expose()),
            }
        }
        SecretCommand::Rotate {
            path,
            policy,
            value,
            value_stdin,
            rotation_id,
        } => {
            let value = read_value(value, value_stdin)?;
            let rotation_id = rotation_id.as_deref().map(str::parse).transpose()?;
            let notifier = rotation_app::notifier_from_env(engine.crypto().clone())?;
            let engine = engine.with_notifier(notifier);
            let result = engine
                .rotate_secret(SecretRotateRequest {
                    path,
                    policy,
                    value,
                    rotation_id,
                    schedule_id: None,
                })
                .await;
            // Failures queue notifications too: deliver them before reporting.
            if let Err(e) = engine.dispatch_outbox().await {
                tracing::warn!(error = %e, "notifications not dispatched; `schedule run-due` retries them");
            }
            let r = result?;
            let rows = [
                ("rotation id", r.rotation_id.to_string()),
                ("secret", r.secret_path.clone()),
                ("status", r.status.as_str().to_owned()),
                ("strategy", r.strategy.as_str().to_owned()),
                (
                    "versions",
                    format!(
                        "{} -> {}",
                        r.old_version.map_or("-".into(), |v| v.to_string()),
                        r.new_version.map_or("-".into(), |v| v.to_string())
                    ),
                ),
                ("duration", format!("{} ms", r.duration_ms)),
                ("old value valid until", time(r.grace_period_end)),
            ];
            output::record(out, &r, &rows)
        }
        SecretCommand::List { prefix } => {
            let prefix = prefix.as_deref().map(|p| p.trim_end_matches('/'));
            let secrets: Vec<_> = engine
                .list_secrets()
                .await?
                .into_iter()
                .filter(|s| {
                    prefix
                        .is_none_or(|p| s.path == p || s.path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
                })
                .collect();
            match out {
                Output::Json => output::json(&secrets),
                Output::Table => {
                    let mut t = output::table(&["path", "type", "current", "policy", "last rotated"]);
                    for s in &secrets {
                        t.add_row(vec![
                            s.path.clone(),
                            s.secret_type.to_string(),
                            s.current_version.map_or("-".into(), |v| v.to_string()),
                            s.policy.clone().unwrap_or_else(|| "-".into()),
                            time(s.last_rotated_at),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        SecretCommand::History { path, limit } => {
            let history = engine.secret_history(&path, limit).await?;
            match out {
                Output::Json => output::json(&history),
                Output::Table => {
                    let mut t = output::table(&["started", "status", "versions", "duration", "error / steps"]);
                    for h in &history {
                        let steps: Vec<String> = h
                            .steps
                            .iter()
                            .map(|s| format!("{}{}", s.step, if s.ok { "" } else { " (failed)" }))
                            .collect();
                        t.add_row(vec![
                            time(Some(h.timestamp)),
                            h.status.as_str().to_owned(),
                            format!(
                                "{} -> {}",
                                h.old_version.map_or("-".into(), |v| v.to_string()),
                                h.new_version.map_or("-".into(), |v| v.to_string())
                            ),
                            format!("{} ms", h.duration_ms),
                            match &h.error {
                                Some(e) => format!("{e}\n{}", steps.join(", ")),
                                None => steps.join(", "),
                            },
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        SecretCommand::Status { path } => {
            let s = engine.secret_status(&path).await?;
            let v = |n: Option<u32>| n.map_or("-".into(), |v| v.to_string());
            let rows = [
                ("path", s.path.clone()),
                ("type", s.secret_type.to_string()),
                ("backend", s.backend.clone()),
                ("policy", s.policy.clone().unwrap_or_else(|| "-".into())),
                ("scheduled", s.scheduled.to_string()),
                ("last rotated", time(s.last_rotated)),
                ("next rotation", time(s.next_rotation)),
                ("current version", v(s.current_version)),
                ("pending version", v(s.pending_version)),
                ("previous version", v(s.previous_version)),
                (
                    "previous valid until",
                    s.previous_valid_until.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "last rotation",
                    s.last_status.map_or("-".into(), |x| x.as_str().to_owned()),
                ),
            ];
            output::record(out, &s, &rows)
        }
        SecretCommand::Validate {
            path,
            value,
            value_stdin,
        } => {
            let value =
                read_value(value, value_stdin)?.ok_or_else(|| Error::invalid_input("give --value or --value-stdin"))?;
            let v = engine.validate_secret(&path, &value).await?;
            let rows = [
                ("valid", v.valid.to_string()),
                ("version", v.version.map_or("-".into(), |n| n.to_string())),
                ("stage", v.stage.map_or("-".into(), |s| s.as_str().to_owned())),
            ];
            output::record(out, &v, &rows)?;
            if v.valid {
                Ok(())
            } else {
                Err(Error::new(Reason::VerificationFailed, "the value is not accepted"))
            }
        }
    }
}

fn stages(stages: &[Stage]) -> String {
    stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// `rotation stats [--reset]`.
pub(crate) async fn stats(ctx: &Context, reset: bool) -> Result<()> {
    let out = ctx.global.output;
    let engine = ctx.engine(false).await?;
    if reset {
        let at = engine.reset_stats().await?;
        return output::record(
            out,
            &json!({"reset_at": at}),
            &[("statistics reset at", time(Some(at)))],
        );
    }
    let s = engine.stats().await?;
    let rows = [
        ("total rotations", s.total_rotations.to_string()),
        ("successful", s.successful_rotations.to_string()),
        ("failed", s.failed_rotations.to_string()),
        ("rollbacks", s.rollbacks.to_string()),
        ("success rate", format!("{:.1} %", s.success_rate * 100.0)),
        ("average duration", format!("{:.3} s", s.avg_duration_seconds)),
        ("p95 duration", format!("{:.3} s", s.p95_duration_seconds)),
        ("active schedules", s.active_schedules.to_string()),
        ("active rotations", s.active_rotations.to_string()),
        ("since", s.since.map_or("the beginning".into(), |t| time(Some(t)))),
    ];
    output::record(out, &s, &rows)
}
