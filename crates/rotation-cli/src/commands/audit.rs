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
        AuditCommand::Verify { checkpoint } => {
            let given = match &checkpoint {
                None => None,
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid_input(format!("cannot read the checkpoint file {}: {e}", path.display()))
                })?),
            };
            let report = engine.verify_audit_against(given.as_deref()).await?;
            let size = |s: Option<u64>| s.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            let rows = [
                ("valid", report.valid.to_string()),
                ("events checked", report.events.to_string()),
                ("tree size", report.tree_size.to_string()),
                ("root hash", report.root_hash.clone()),
                ("stored checkpoint", size(report.checkpoints.stored_size)),
                ("given checkpoint", size(report.checkpoints.given_size)),
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
                Some(b) => Err(Error::tampered(match b.problem.as_str() {
                    "checkpoint_beyond_log" => format!(
                        "the audit log has {} entries but a checkpoint covers more: it diverges at index {} (seq {}); it was truncated or rolled back",
                        report.tree_size,
                        b.seq - 1,
                        b.seq
                    ),
                    "checkpoint_root_mismatch" => format!(
                        "the first {} audit entries do not hash to the checkpoint's root: the log diverges at an index below {} (was it rewritten or rolled back?)",
                        b.seq, b.seq
                    ),
                    "checkpoint_signature_invalid" => format!(
                        "the stored checkpoint of size {} is not signed by the stored audit key",
                        b.seq
                    ),
                    _ => format!(
                        "the audit log is broken at event {} (index {}, {}): an event was edited, inserted or deleted",
                        b.seq,
                        b.seq - 1,
                        b.problem
                    ),
                })),
            }
        }
        AuditCommand::Checkpoint => {
            let cp = checkpoint(ctx, &engine).await?;
            match out {
                Output::Json => output::json(&cp),
                Output::Table => output::raw(&cp.checkpoint),
            }
        }
        AuditCommand::PublicKey => {
            let key = match engine.audit_verifier_key().await? {
                Some(key) => key,
                None => {
                    let engine = ctx.engine(true).await?;
                    engine.ensure_audit_key().await?;
                    engine
                        .audit_verifier_key()
                        .await?
                        .ok_or_else(|| Error::tampered("the audit key was not stored"))?
                }
            };
            match out {
                Output::Json => output::json(&serde_json::json!({
                    "verifier_key": key.to_string(),
                    "origin": key.name,
                })),
                Output::Table => output::line(&key.to_string()),
            }
        }
        AuditCommand::Witnesses { set, clear } => {
            let witnesses = if clear || !set.is_empty() {
                engine.set_audit_witnesses(set).await?
            } else {
                engine.audit_witnesses().await?
            };
            match out {
                Output::Json => output::json(&serde_json::json!({ "witnesses": witnesses })),
                Output::Table => {
                    for w in &witnesses {
                        output::line(w)?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// The newest checkpoint, signed afresh (with the master key) when the log
/// has grown since; without the master key, a stale stored one is
/// returned with a warning.
async fn checkpoint(ctx: &Context, engine: &rotation_core::Engine) -> Result<rotation_core::engine::SignedCheckpoint> {
    if engine.audit_checkpoint_is_current().await?
        && let Some(cp) = engine.latest_audit_checkpoint().await?
    {
        return Ok(cp);
    }
    let signed = match ctx.engine(true).await {
        Ok(unlocked) => unlocked.sign_audit_checkpoint().await,
        Err(e) => Err(e),
    };
    match signed {
        Ok(cp) => Ok(cp),
        Err(e) if e.reason == rotation_core::Reason::Unauthorized => match engine.latest_audit_checkpoint().await? {
            Some(cp) => {
                eprintln!(
                    "warning: the newest checkpoint covers {} entries, the log has more; a new one needs the master key ({})",
                    cp.size, e.message
                );
                Ok(cp)
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// After a command: signs a checkpoint when the command appended audit
/// entries (`before` = log size before it), so the stored checkpoint
/// keeps up with every command that writes. A failure is a warning: the
/// command's own result stands, and the next writing command (or `audit
/// checkpoint`) signs.
pub(crate) async fn refresh_checkpoint(ctx: &Context, before: Option<u64>) {
    let result = async {
        let engine = ctx.engine(false).await?;
        let size = engine.audit_size().await?;
        if Some(size) == before || engine.audit_checkpoint_is_current().await? {
            return Ok(());
        }
        ctx.engine(true).await?.sign_audit_checkpoint().await.map(|_| ())
    }
    .await;
    if let Err(e) = result {
        eprintln!(
            "warning[{}]: the audit log grew but no checkpoint was signed: {}",
            e.reason.as_str(),
            e.message
        );
    }
}

/// The number of audit entries, when the store can be opened.
pub(crate) async fn log_size(ctx: &Context) -> Option<u64> {
    let store = ctx.open_store(false).await.ok()?;
    store
        .audit_head()
        .await
        .ok()
        .map(|h| h.map(|h| h.seq.max(0) as u64).unwrap_or(0))
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
