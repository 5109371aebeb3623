//! `rotation keyring ...`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use rotation_core::engine::{KeyringRotateRequest, MigrateOptions, MigrationProgress, MigrationReport};
use rotation_core::ids::KeyringName;
use rotation_core::time::rfc3339;
use rotation_core::{Engine, Error, Reason, Result};
use serde::Serialize;

use crate::app::Context;
use crate::cli::{KeyringCommand, MigrateArgs, Output};
use crate::output::{self, time};

mod key_source;

pub(crate) async fn run(ctx: &Context, command: KeyringCommand) -> Result<()> {
    let out = ctx.global.output;
    if let Some(name) = command.keyring_name() {
        super::user_keyring(name)?;
    }
    match command {
        KeyringCommand::Create { name } => {
            let engine = ctx.engine(true).await?;
            let keyring = engine.create_keyring(&KeyringName::parse(name)?).await?;
            info(&engine, out, &keyring.name).await
        }
        KeyringCommand::List => {
            let engine = ctx.engine(false).await?;
            let keyrings = engine.list_keyrings().await?;
            match out {
                Output::Json => output::json(&keyrings),
                Output::Table => {
                    let mut t = output::table(&["keyring", "current version", "created", "last rotated"]);
                    for k in &keyrings {
                        t.add_row(vec![
                            k.name.to_string(),
                            k.current_version.to_string(),
                            rfc3339(k.created_at),
                            time(k.rotated_at),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        KeyringCommand::Info { name } => {
            let engine = ctx.engine(false).await?;
            info(&engine, out, &KeyringName::parse(name)?).await
        }
        KeyringCommand::Rotate {
            name,
            dry_run,
            new_version,
            key_provider_command,
            key_provider_env,
        } => {
            key_source::check_provider_env(&key_provider_env)?;
            let engine = ctx.engine(!dry_run).await?;
            let name = KeyringName::parse(name)?;
            let (key, source) = match &key_provider_command {
                Some(command) => {
                    engine.keyring(&name).await?;
                    let (key, label) = key_source::from_command(command, &key_provider_env).await?;
                    (Some(key), Some(format!("key provider ({label})")))
                }
                None => (None, None),
            };
            let request = KeyringRotateRequest {
                dry_run,
                new_version,
                key,
                source,
                ..KeyringRotateRequest::default()
            };
            let r = engine.rotate_keyring_with(&name, request).await?;
            let rows = [
                ("keyring", r.keyring.to_string()),
                ("previous version", r.previous_version.to_string()),
                ("new version", r.new_version.to_string()),
                ("dry run", r.dry_run.to_string()),
                (
                    "rotation id",
                    r.rotation_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                ),
                ("values needing migration", r.values_needing_migration.to_string()),
            ];
            output::record(out, &r, &rows)
        }
        KeyringCommand::ImportKey {
            name,
            key_file,
            version,
        } => {
            let engine = ctx.engine(true).await?;
            let name = KeyringName::parse(name)?;
            let key = key_source::from_file(&key_file)?;
            let request = KeyringRotateRequest {
                new_version: version,
                key: Some(key),
                source: Some(format!("imported from {}", key_file.display())),
                ..KeyringRotateRequest::default()
            };
            let r = engine.rotate_keyring_with(&name, request).await?;
            let rows = [
                ("keyring", r.keyring.to_string()),
                ("imported as version", r.new_version.to_string()),
                ("previous version", r.previous_version.to_string()),
                ("values needing migration", r.values_needing_migration.to_string()),
            ];
            output::record(out, &r, &rows)
        }
        KeyringCommand::Migrate(args) => {
            if let Some(path) = &args.backup {
                crate::commands::maintenance::write_backup(ctx, path).await?;
            }
            let engine = ctx.engine(!args.dry_run).await?;
            let name = KeyringName::parse(args.name.clone())?;
            let report = migrate(&engine, &name, &args).await?;
            print_migration(out, &report)?;
            check_migration(&report)
        }
        KeyringCommand::FullRotation(args) => {
            if let Some(path) = &args.backup {
                crate::commands::maintenance::write_backup(ctx, path).await?;
            }
            let engine = ctx.engine(!args.dry_run).await?;
            let name = KeyringName::parse(args.name.clone())?;
            let rotation = engine.rotate_keyring(&name, args.dry_run, None).await?;
            let report = if args.dry_run {
                None
            } else {
                Some(
                    migrate(
                        &engine,
                        &name,
                        &MigrateArgs {
                            target_version: None,
                            ..args
                        },
                    )
                    .await?,
                )
            };
            #[derive(Serialize)]
            struct Full<'a> {
                rotation: &'a rotation_core::engine::KeyringRotation,
                migration: Option<&'a MigrationReport>,
            }
            match out {
                Output::Json => output::json(&Full {
                    rotation: &rotation,
                    migration: report.as_ref(),
                })?,
                Output::Table => {
                    output::line(&format!(
                        "rotated {} from version {} to {}{}",
                        rotation.keyring,
                        rotation.previous_version,
                        rotation.new_version,
                        if rotation.dry_run { " (dry run)" } else { "" }
                    ))?;
                    if let Some(r) = &report {
                        print_migration(out, r)?;
                    }
                }
            }
            report.as_ref().map(check_migration).unwrap_or(Ok(()))
        }
        KeyringCommand::Report { name } => {
            let engine = ctx.engine(false).await?;
            let report = engine.keyring_report(&KeyringName::parse(name)?).await?;
            match out {
                Output::Json => output::json(&report),
                Output::Table => {
                    output::line(&format!(
                        "keyring {}: current version {}, {} values, {} need migration",
                        report.keyring, report.current_version, report.total_values, report.needing_migration
                    ))?;
                    let mut t = output::table(&["version", "state", "values", "percent"]);
                    for v in &report.versions {
                        t.add_row(vec![
                            v.version.to_string(),
                            v.state.as_str().to_string(),
                            v.values.to_string(),
                            format!("{:.2}%", v.percent),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        KeyringCommand::HealthCheck { name } => {
            let engine = ctx.engine(true).await?;
            let report = engine.keyring_health(&KeyringName::parse(name)?).await?;
            match out {
                Output::Json => output::json(&report)?,
                Output::Table => {
                    let mut t = output::table(&["check", "ok", "detail"]);
                    for c in &report.checks {
                        t.add_row(vec![c.check.clone(), c.ok.to_string(), c.detail.clone()]);
                    }
                    output::print_table(&t)?;
                }
            }
            if report.healthy {
                Ok(())
            } else {
                let failed: Vec<&str> = report
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.check.as_str())
                    .collect();
                Err(Error::new(
                    Reason::VerificationFailed,
                    format!("keyring {} is unhealthy: {}", report.keyring, failed.join(", ")),
                ))
            }
        }
        KeyringCommand::Retire { name, version } => {
            let engine = ctx.engine(false).await?;
            let v = engine.retire_version(&KeyringName::parse(name)?, version).await?;
            let rows = [
                ("keyring", v.keyring.to_string()),
                ("version", v.version.to_string()),
                ("state", v.state.as_str().to_string()),
                ("retired at", time(v.retired_at)),
            ];
            output::record(out, &VersionView::from(&v), &rows)
        }
        KeyringCommand::History {
            name,
            version,
            event,
            limit,
        } => {
            let engine = ctx.engine(false).await?;
            let events = engine
                .keyring_history(&KeyringName::parse(name)?, version, event.as_deref(), limit)
                .await?;
            crate::commands::audit::print_events(out, &events)
        }
    }
}

/// A key version as shown (never the wrapped key).
#[derive(Debug, Serialize)]
struct VersionView {
    version: u32,
    state: &'static str,
    created_at: String,
    activated_at: Option<String>,
    rotated_at: Option<String>,
    retired_at: Option<String>,
    usage_count: u64,
    custody: String,
}

impl From<&rotation_core::keyring::KeyVersion> for VersionView {
    fn from(v: &rotation_core::keyring::KeyVersion) -> Self {
        VersionView {
            version: v.version,
            state: v.state.as_str(),
            created_at: rfc3339(v.created_at),
            activated_at: v.activated_at.map(rfc3339),
            rotated_at: v.rotated_at.map(rfc3339),
            retired_at: v.retired_at.map(rfc3339),
            usage_count: v.usage_count,
            custody: v.wrapped.custody.clone(),
        }
    }
}

async fn info(engine: &Engine, out: Output, name: &KeyringName) -> Result<()> {
    let keyring = engine.keyring(name).await?;
    let versions: Vec<VersionView> = engine.key_versions(name).await?.iter().map(VersionView::from).collect();
    match out {
        Output::Json => {
            #[derive(Serialize)]
            struct Info<'a> {
                keyring: &'a str,
                current_version: u32,
                created_at: String,
                rotated_at: Option<String>,
                versions: &'a [VersionView],
            }
            output::json(&Info {
                keyring: keyring.name.as_str(),
                current_version: keyring.current_version,
                created_at: rfc3339(keyring.created_at),
                rotated_at: keyring.rotated_at.map(rfc3339),
                versions: &versions,
            })
        }
        Output::Table => {
            output::line(&format!(
                "keyring {}: current version {}",
                keyring.name, keyring.current_version
            ))?;
            let mut t = output::table(&["version", "state", "created", "activated", "rotated", "retired", "uses"]);
            for v in &versions {
                t.add_row(vec![
                    v.version.to_string(),
                    v.state.to_string(),
                    v.created_at.clone(),
                    v.activated_at.clone().unwrap_or_else(|| "-".into()),
                    v.rotated_at.clone().unwrap_or_else(|| "-".into()),
                    v.retired_at.clone().unwrap_or_else(|| "-".into()),
                    v.usage_count.to_string(),
                ]);
            }
            output::print_table(&t)
        }
    }
}

/// Runs a migration with a progress bar (rate and ETA) on a terminal.
async fn migrate(engine: &Engine, name: &KeyringName, args: &MigrateArgs) -> Result<MigrationReport> {
    if !args.dry_run && args.backup.is_none() {
        eprintln!("hint: take a backup first (`--backup FILE` or `rotation backup --out FILE`)");
    }
    let options = MigrateOptions {
        target_version: args.target_version,
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        force: args.force,
        retire_old: args.retire_old,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} values  {per_sec}  eta {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |p: MigrationProgress| {
        if let Some(bar) = &bar {
            bar.set_length(p.to_migrate);
            bar.set_position(p.migrated + p.failed);
            if p.failed > 0 {
                bar.set_message(format!("{} failed", p.failed));
            }
        }
    };
    let report = engine.migrate_keyring(name, &options, &progress).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report
}

fn print_migration(out: Output, r: &MigrationReport) -> Result<()> {
    match out {
        Output::Json => output::json(r),
        Output::Table => {
            let rate = if r.duration_ms > 0 {
                r.migrated as f64 * 1000.0 / r.duration_ms as f64
            } else {
                0.0
            };
            let rows = [
                ("keyring", r.keyring.to_string()),
                ("target version", r.target_version.to_string()),
                ("migrated", r.migrated.to_string()),
                ("already current", r.already_current.to_string()),
                ("failed", r.failed.to_string()),
                ("total", r.total.to_string()),
                (
                    "duration",
                    format!("{:.3} s ({rate:.0} values/s)", r.duration_ms as f64 / 1000.0),
                ),
                ("dry run", r.dry_run.to_string()),
                (
                    "retired versions",
                    if r.retired_versions.is_empty() {
                        "-".into()
                    } else {
                        r.retired_versions
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ),
            ];
            output::record(out, r, &rows)?;
            for f in &r.failures {
                output::line(&format!("failed: {} ({}: {})", f.id, f.reason, f.message))?;
            }
            Ok(())
        }
    }
}

/// A migration with failures exits non-zero (the failed values are listed).
fn check_migration(r: &MigrationReport) -> Result<()> {
    if r.failed == 0 {
        Ok(())
    } else {
        Err(Error::new(
            Reason::Tampered,
            format!(
                "{} values could not be migrated (listed above by id); the others were",
                r.failed
            ),
        ))
    }
}
