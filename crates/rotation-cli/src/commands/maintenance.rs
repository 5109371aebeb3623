//! `rotation report`, `rotation backup`, `rotation restore`.

use std::io::Write;
use std::path::Path;

use rotation_core::time::rfc3339;
use rotation_core::{Error, Reason, Result};
use rotation_crypto::{backup, master_key};
use serde::Serialize;

use crate::app::Context;
use crate::cli::Output;
use crate::output;

/// Prints the compliance report; exits with code 2 when anything is overdue or stuck.
pub(crate) async fn report(ctx: &Context) -> Result<()> {
    let engine = ctx.engine(false).await?;
    let report = engine.compliance_report().await?;
    match ctx.global.output {
        Output::Json => output::json(&report)?,
        Output::Table => {
            let mut t = output::table(&[
                "target",
                "current",
                "age (days)",
                "max age",
                "overdue",
                "next rotation",
                "attention",
            ]);
            for i in &report.items {
                let mut attention = Vec::new();
                if let Some(r) = &i.overdue_reason {
                    attention.push(r.clone());
                }
                if !i.pending_revocations.is_empty() {
                    attention.push(format!("pending revocation: {}", i.pending_revocations.join(", ")));
                }
                if !i.grace_ending_soon.is_empty() {
                    attention.push(format!("grace ends within 24 h: {}", i.grace_ending_soon.join(", ")));
                }
                if i.versions_referenced.len() > 1 {
                    attention.push(format!("versions in use: {:?}", i.versions_referenced));
                }
                t.add_row(vec![
                    i.target.clone(),
                    i.current.clone(),
                    format!("{:.2}", i.age_days),
                    i.max_age_days.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                    i.overdue.to_string(),
                    output::time(i.next_rotation),
                    attention.join("; "),
                ]);
            }
            output::print_table(&t)?;
            for r in &report.stuck_runs {
                output::line(&format!(
                    "stuck: rotation {} of {} in state {} (lease of {} expired {})",
                    r.rotation_id,
                    r.target,
                    r.state,
                    r.lease_owner,
                    rfc3339(r.lease_expired_at)
                ))?;
            }
            output::line(&format!(
                "{} overdue, {} stuck",
                report.overdue,
                report.stuck_runs.len()
            ))?;
        }
    }
    if !report.ok {
        let _ = std::io::stdout().flush();
        eprintln!(
            "attention: {} overdue, {} stuck (run `rotation schedule run-due` to resume stuck runs)",
            report.overdue,
            report.stuck_runs.len()
        );
        std::process::exit(2);
    }
    Ok(())
}

#[derive(Serialize)]
pub(crate) struct BackupReport {
    file: String,
    bytes: usize,
    created_at: String,
    counts: serde_json::Value,
}

/// Writes an encrypted backup of the store to `out`.
pub(crate) async fn backup(ctx: &Context, out: &Path) -> Result<()> {
    let report = write_backup(ctx, out).await?;
    let rows = [
        ("file", report.file.clone()),
        ("bytes", report.bytes.to_string()),
        ("created at", report.created_at.clone()),
        ("contents", report.counts.to_string()),
    ];
    output::record(ctx.global.output, &report, &rows)
}

/// Takes a backup (also used by `--backup` on migrate and master-key rotate).
pub(crate) async fn write_backup(ctx: &Context, out: &Path) -> Result<BackupReport> {
    let store = ctx.open_store(false).await?;
    let params = master_key::current_params(store.as_ref()).await?;
    if master_key::load_params(store.as_ref(), master_key::KEK_NEXT_META)
        .await?
        .is_some()
    {
        return Err(Error::invalid_input(
            "a master-key rotation is in progress; finish it (`rotation master-key rotate`) before taking a backup",
        ));
    }
    let secret = ctx.master_secret(Some(&params))?;
    let kek = rotation_crypto::Kek::unlock(&secret, &params)?;
    let snapshot = rotation_core::ports::StateStore::snapshot(store.as_ref()).await?;
    let created_at = rfc3339(rotation_core::time::truncate(chrono::Utc::now()));
    let bytes = backup::seal(&snapshot, &kek, &params, created_at.clone())?;
    let mut file = crate::commands::value::private_file(out)?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::backend(format!("cannot write {}: {e}", out.display())))?;
    let (header, _) = backup::header(&bytes)?;
    Ok(BackupReport {
        file: out.display().to_string(),
        bytes: bytes.len(),
        created_at,
        counts: header.counts,
    })
}

/// Restores a backup into an empty store (or any store with `force`).
pub(crate) async fn restore(ctx: &Context, from: &Path, force: bool) -> Result<()> {
    let bytes =
        std::fs::read(from).map_err(|e| Error::invalid_input(format!("cannot read {}: {e}", from.display())))?;
    let (header, _) = backup::header(&bytes)?;
    let secret = ctx.master_secret(Some(&header.kek)).map_err(|e| {
        let needs = needs_master_key(ctx, &header.kek.kind);
        Error::new(e.reason, format!("{}; {needs}", e.message))
    })?;
    let (header, snapshot) = backup::open(&bytes, &secret)?;
    let data_dir = ctx.data_dir()?;
    crate::commands::init::create_private_dir(&data_dir)?;
    let store = ctx.open_store(true).await?;
    let has_data = rotation_core::ports::StateStore::get_meta(store.as_ref(), master_key::KEK_META)
        .await?
        .is_some();
    if has_data && !force {
        return Err(Error::new(
            Reason::AlreadyExists,
            format!(
                "the store {} is not empty; restore into a new store or use --force to replace it",
                ctx.global.store
            ),
        ));
    }
    let replaced = match rotation_core::ports::StateStore::audit_head(store.as_ref()).await? {
        Some(head) if has_data => head.seq,
        _ => 0,
    };
    let restored = snapshot.audit.len();
    let mut tx = rotation_core::ports::StateStore::begin(store.as_ref()).await?;
    if has_data {
        tx.clear_all().await?;
    }
    snapshot.restore_into(tx.as_mut()).await?;
    // The log records the restore; a checkpoint kept from the replaced
    // store shows whether the restored history extends it.
    let draft = rotation_core::audit::AuditDraft {
        event: rotation_core::audit::event::STORE_RESTORED.into(),
        target: rotation_core::ids::Target::Store,
        rotation_id: None,
        actor: "cli".into(),
        details: serde_json::json!({
            "backup_taken": header.created_at,
            "forced": has_data,
            "replaced_entries": replaced,
            "restored_entries": restored,
        }),
    };
    let now = rotation_core::time::truncate(chrono::Utc::now());
    rotation_core::audit::append(tx.as_mut(), &rotation_crypto::RingCrypto::new(), now, vec![draft]).await?;
    tx.commit().await?;
    let master_key = needs_master_key(ctx, &header.kek.kind);
    let rows = [
        ("restored from", from.display().to_string()),
        ("backup taken", header.created_at.clone()),
        ("contents", header.counts.to_string()),
        ("master key", master_key.clone()),
    ];
    let mut view = serde_json::to_value(&header).map_err(|e| Error::invalid_input(e.to_string()))?;
    view["master_key"] = serde_json::Value::String(master_key);
    output::record(ctx.global.output, &view, &rows)
}

/// What a store restored from a backup needs to open: the master secret of
/// the store the backup was taken from (its KEK parameters come with the
/// backup; nothing is re-encrypted on restore).
fn needs_master_key(ctx: &Context, kind: &str) -> String {
    if kind == "password" {
        return format!(
            "the restored store opens only with the master password of the store the backup was taken from: set {} to it for every command",
            rotation_app::PASSWORD_ENV
        );
    }
    let key_file = ctx
        .key_file()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "master.key".into());
    format!(
        "the restored store opens only with the master key file of the store the backup was taken from: keep it at {key_file} (or pass --master-key-file), mode 0600"
    )
}
