//! `rotation audit ...`.

use rotation_core::time::rfc3339;
use rotation_core::{Error, Result};

use crate::app::Context;
use crate::cli::{AuditCommand, Output};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: AuditCommand) -> Result<()> {
    let out = ctx.global.output;
    let engine = ctx.engine(false).await?;
    match command {
        AuditCommand::List {
            limit,
            target,
            event,
            rotation_id,
            actor,
            since,
            until,
            before_seq,
        } => {
            let instant = |field: &str, v: Option<String>| -> Result<Option<rotation_core::time::Timestamp>> {
                v.map(|t| {
                    chrono::DateTime::parse_from_rfc3339(&t)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|_| rotation_core::Error::invalid_input(format!("--{field} {t:?} is not RFC 3339")))
                })
                .transpose()
            };
            let query = rotation_core::ports::AuditQuery {
                target,
                event,
                rotation_id: rotation_id.as_deref().map(str::parse).transpose()?,
                actor,
                since: instant("since", since)?,
                until: instant("until", until)?,
                before_seq,
                limit,
            };
            print_events(out, &engine.query_audit(query).await?)
        }
        AuditCommand::Verify => {
            let report = engine.verify_audit().await?;
            let rows = [
                ("valid", report.valid.to_string()),
                ("events checked", report.events.to_string()),
                (
                    "first break",
                    report
                        .first_break
                        .as_ref()
                        .map(|b| format!("seq {}: {}", b.seq, b.problem))
                        .unwrap_or_else(|| "-".into()),
                ),
            ];
            output::record(out, &report, &rows)?;
            match report.first_break {
                None => Ok(()),
                Some(b) => Err(Error::tampered(format!(
                    "the audit log is broken at event {} ({}): an event was edited, inserted or deleted",
                    b.seq, b.problem
                ))),
            }
        }
    }
}

/// Prints audit events, newest first as given.
pub(crate) fn print_events(out: Output, events: &[rotation_core::audit::AuditEvent]) -> Result<()> {
    match out {
        Output::Json => output::json(events),
        Output::Table => {
            let mut t = output::table(&["seq", "at", "event", "target", "rotation", "actor", "details"]);
            for e in events {
                t.add_row(vec![
                    e.seq.to_string(),
                    rfc3339(e.at),
                    e.event.clone(),
                    e.target.clone(),
                    e.rotation_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    e.actor.clone(),
                    e.details.to_string(),
                ]);
            }
            output::print_table(&t)
        }
    }
}
