//! One module per command group; each parses ids, calls the engine, prints.

pub(crate) mod audit;
mod authority;
mod chain;
pub(crate) mod init;
mod keyring;
pub(crate) mod maintenance;
mod master_key;
mod policy;
mod quickstart;
mod schedule;
mod secret;
pub(crate) mod value;

use rotation_core::Result;
use rotation_core::ids::KeyringName;

use crate::app::Context;
use crate::cli::Command;

/// Runs one command.
pub(crate) async fn run(ctx: Context, command: Command) -> Result<()> {
    // Commands that append audit entries leave a checkpoint covering them;
    // `audit ...` commands sign only on request (`audit checkpoint`).
    // A store that could not be read before the command is left alone,
    // unless the command just created or replaced it.
    let refresh = !matches!(command, Command::Audit(ref c) if !matches!(c, crate::cli::AuditCommand::Witnesses { .. }));
    let creates = matches!(command, Command::Init | Command::Quickstart | Command::Restore { .. });
    let before = if refresh { audit::log_size(&ctx).await } else { None };
    let result = dispatch(&ctx, command).await;
    if refresh && (before.is_some() || (creates && result.is_ok())) {
        audit::refresh_checkpoint(&ctx, before).await;
    }
    result
}

async fn dispatch(ctx: &Context, command: Command) -> Result<()> {
    match command {
        Command::Init => init::run(ctx).await.map(|_| ()),
        Command::Authority(c) => authority::run(ctx, c).await,
        Command::Chain(c) => chain::run(ctx, c).await,
        Command::Schedule(c) => schedule::run(ctx, c).await,
        Command::Audit(c) => audit::run(ctx, c).await,
        Command::Keyring(c) => keyring::run(ctx, c).await,
        Command::Value(c) => value::run(ctx, c).await,
        Command::Policy(c) => policy::run(ctx, c).await,
        Command::Secret(c) => secret::run(ctx, c).await,
        Command::Stats { reset } => secret::stats(ctx, reset).await,
        Command::MasterKey(c) => master_key::run(ctx, c).await,
        Command::Report => maintenance::report(ctx).await,
        Command::Backup { out } => maintenance::backup(ctx, &out).await,
        Command::Restore { from, force } => maintenance::restore(ctx, &from, force).await,
        Command::Quickstart => quickstart::run(ctx).await,
    }
}

/// Parses a keyring named on the command line and refuses the reserved
/// `rotation.*` keyrings (only the secret backend uses them), before any
/// store is opened.
pub(crate) fn user_keyring(name: &str) -> Result<KeyringName> {
    let name = KeyringName::parse(name)?;
    rotation_core::keyring::check_user_keyring(&name)?;
    Ok(name)
}
