//! `rotation schedule ...`.

use rotation_core::{Error, Reason, Result};

use crate::app::Context;
use crate::cli::{Output, ScheduleCommand};
use crate::output::{self, time};

pub(crate) async fn run(ctx: &Context, command: ScheduleCommand) -> Result<()> {
    let out = ctx.global.output;
    match command {
        ScheduleCommand::List { all } => {
            let engine = ctx.engine(false).await?;
            let schedules = engine.list_schedules(None, !all).await?;
            match out {
                Output::Json => output::json(&schedules),
                Output::Table => {
                    let mut t = output::table(&["rotation id", "target", "due at", "policy", "state", "last error"]);
                    for s in &schedules {
                        t.add_row(vec![
                            s.id.to_string(),
                            s.target.to_string(),
                            time(Some(s.due_at)),
                            s.policy.clone().unwrap_or_else(|| "-".into()),
                            s.state.as_str().to_string(),
                            s.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        ScheduleCommand::Add { target, policy, offset } => {
            let engine = ctx.engine(true).await?;
            let target: rotation_core::ids::Target = target.parse()?;
            let offset_seconds = match offset {
                Some(o) => rotation_core::policy::parse_duration("offset", &o)
                    .map_err(|e| Error::invalid_input(e.message))?
                    .num_seconds(),
                None => 0,
            };
            let s = engine.add_policy_schedule(target, &policy, offset_seconds).await?;
            let rows = [
                ("schedule id", s.id.to_string()),
                ("target", s.target.to_string()),
                ("policy", policy.clone()),
                ("offset", format!("{} s", s.offset_seconds)),
            ];
            output::record(out, &s, &rows)
        }
        ScheduleCommand::Plan { within } => {
            let engine = ctx.engine(true).await?;
            let within = rotation_core::policy::parse_duration("within", &within)
                .map_err(|e| Error::invalid_input(e.message))?;
            let plan = engine.schedule_plan(within).await?;
            match out {
                Output::Json => output::json(&plan),
                Output::Table => {
                    if plan.is_empty() {
                        return output::line("nothing would rotate in that period");
                    }
                    let mut t = output::table(&["when", "target", "policy", "strategy", "touches"]);
                    for p in &plan {
                        t.add_row(vec![
                            time(Some(p.at)),
                            p.target.to_string(),
                            p.policy.clone().unwrap_or_else(|| "one-off".into()),
                            p.strategy.clone(),
                            p.touches.clone(),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        ScheduleCommand::Resume { id } => {
            let engine = ctx.engine(false).await?;
            let id: rotation_core::ids::RotationId = id.parse()?;
            let s = engine.resume_schedule(id).await?;
            let rows = [
                ("schedule id", s.id.to_string()),
                ("target", s.target.to_string()),
                ("state", s.state.as_str().to_owned()),
                ("due at", time(Some(s.due_at))),
            ];
            output::record(out, &s, &rows)
        }
        ScheduleCommand::RunDue => {
            let engine = ctx.engine(true).await?;
            let notifier = rotation_app::notifier_from_env(engine.crypto().clone())?;
            let engine = engine.with_notifier(notifier);
            let outcomes = engine.process_scheduled_rotations().await?;
            // Notifications recorded by these (and earlier) rotations.
            let delivery = engine.dispatch_outbox().await?;
            if delivery.retrying > 0 {
                tracing::warn!(
                    retrying = delivery.retrying,
                    "some notifications were not delivered; the next run-due retries them"
                );
            }
            match out {
                Output::Json => output::json(&outcomes)?,
                Output::Table => {
                    let mut t = output::table(&["rotation id", "target", "outcome", "chains updated", "detail"]);
                    for o in &outcomes {
                        let (outcome, detail) = match (&o.result, &o.error_reason) {
                            (Some(r), _) => (
                                "completed",
                                match (&r["new_key_id"], &r["new_version"]) {
                                    (serde_json::Value::String(k), _) => format!("new key {k}"),
                                    (_, v) if v.is_u64() => format!("new version {v}"),
                                    _ => String::new(),
                                },
                            ),
                            (None, _) if o.skipped => ("not due", "policy did not fire".to_string()),
                            (None, Some(reason)) if o.deferred => {
                                ("deferred", format!("{reason}: {}", o.error.clone().unwrap_or_default()))
                            }
                            (None, reason) => (
                                "failed",
                                format!(
                                    "{}: {}",
                                    reason.clone().unwrap_or_default(),
                                    o.error.clone().unwrap_or_default()
                                ),
                            ),
                        };
                        t.add_row(vec![
                            o.rotation_id.to_string(),
                            o.target.to_string(),
                            outcome.to_string(),
                            o.result
                                .as_ref()
                                .and_then(|r| r["chains_updated"].as_u64())
                                .map(|n| n.to_string())
                                .unwrap_or_else(|| "-".into()),
                            detail,
                        ]);
                    }
                    if outcomes.is_empty() {
                        output::line("nothing due")?;
                    } else {
                        output::print_table(&t)?;
                    }
                    if delivery.delivered + delivery.retrying > 0 {
                        output::line(&format!(
                            "notifications: {} delivered, {} waiting for a retry",
                            delivery.delivered, delivery.retrying
                        ))?;
                    }
                }
            }
            let failed = outcomes
                .iter()
                .filter(|o| o.result.is_none() && !o.deferred && !o.skipped)
                .count();
            if failed > 0 {
                return Err(Error::new(
                    Reason::RotationFailed,
                    format!("{failed} of {} due rotations failed", outcomes.len()),
                ));
            }
            Ok(())
        }
    }
}
