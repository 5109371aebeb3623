//! `rotation master-key rotate|status`.

use std::path::Path;

use rotation_core::{Error, Result};
use rotation_crypto::{MasterSecret, master_key};
use secrecy::{SecretBox, SecretString};
use serde_json::json;

use crate::app::{Context, read_key_file};
use crate::cli::{MasterKeyCommand, Output};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: MasterKeyCommand) -> Result<()> {
    let out = ctx.global.output;
    match command {
        MasterKeyCommand::Status => {
            let store = ctx.open_store(false).await?;
            let status = master_key::status(store.as_ref()).await?;
            let rows = [
                ("generation", status.generation.to_string()),
                ("kind", status.kind.clone()),
                (
                    "argon2id costs",
                    status.argon2.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                ),
                ("rotation in progress", status.rotation_in_progress.to_string()),
                (
                    "next generation",
                    status
                        .next_generation
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                (
                    "keys by generation",
                    status
                        .keys_by_generation
                        .iter()
                        .map(|(g, n)| format!("gen {g}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ];
            output::record(out, &status, &rows)
        }
        MasterKeyCommand::Rotate {
            new_password_env,
            new_key_file,
            backup,
        } => {
            let new = match (new_password_env, new_key_file) {
                (Some(var), None) => {
                    let password = std::env::var(&var)
                        .ok()
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| Error::invalid_input(format!("environment variable {var} is not set")))?;
                    MasterSecret::Password(SecretString::from(password))
                }
                (None, Some(path)) => {
                    if !path.exists() {
                        create_key_file(&path)?;
                    }
                    MasterSecret::KeyFile(SecretBox::new(Box::new(read_key_file(&path)?)))
                }
                _ => {
                    return Err(Error::invalid_input(
                        "give exactly one of --new-password-env or --new-key-file",
                    ));
                }
            };
            let cost = rotation_app::kdf_cost_from_env()?;
            let store = ctx.open_store(false).await?;
            let params = master_key::current_params(store.as_ref()).await?;
            let old = ctx.master_secret(Some(&params))?;
            // Check the old secret before anything else, so a wrong one changes nothing.
            rotation_crypto::Kek::unlock(&old, &params)?;
            if let Some(path) = &backup {
                crate::commands::maintenance::write_backup(ctx, path).await?;
            } else {
                eprintln!("hint: take a backup first (`--backup FILE`); a lost new secret makes the store unreadable");
            }
            if let Some(notice) = rotation_app::kdf_cost_notice(&new, cost) {
                eprintln!("{notice}");
            }
            let custody = master_key::begin_rotation(store.as_ref(), &old, &new, cost).await?;
            let engine = ctx.engine_with(store.clone(), std::sync::Arc::new(custody));
            let report = engine.rewrap_all_keys().await?;
            let next = master_key::finish_rotation(store.as_ref(), json!(report)).await?;
            let rows = [
                ("generation", next.generation.to_string()),
                ("kind", next.kind.clone()),
                (
                    "argon2id costs",
                    if next.kind == "password" {
                        next.argon2.to_string()
                    } else {
                        "-".into()
                    },
                ),
                ("signing keys re-wrapped", report.signing_keys.to_string()),
                ("data keys re-wrapped", report.data_keys.to_string()),
                ("already current", report.already_current.to_string()),
            ];
            output::record(
                out,
                &json!({"generation": next.generation, "kind": next.kind, "rewrapped": report}),
                &rows,
            )?;
            if out == Output::Table {
                output::line(if next.kind == "password" {
                    "from now on set ROTATION_MASTER_PASSWORD to the new password; the old one no longer opens the store"
                } else {
                    "from now on pass the new key file (--master-key-file or ROTATION_MASTER_KEY_FILE, or replace master.key); the old one no longer opens the store"
                })?;
            }
            Ok(())
        }
    }
}

fn create_key_file(path: &Path) -> Result<()> {
    crate::commands::init::create_key_file(path, &rotation_crypto::RingCrypto::new())
}
