//! One module per command group; each parses ids, calls the engine, prints.

mod audit;
mod authority;
mod chain;
mod init;
mod quickstart;
mod schedule;

use rotation_core::Result;

use crate::app::Context;
use crate::cli::Command;

/// Runs one command.
pub(crate) async fn run(ctx: Context, command: Command) -> Result<()> {
    match command {
        Command::Init => init::run(&ctx).await.map(|_| ()),
        Command::Authority(c) => authority::run(&ctx, c).await,
        Command::Chain(c) => chain::run(&ctx, c).await,
        Command::Schedule(c) => schedule::run(&ctx, c).await,
        Command::Audit(c) => audit::run(&ctx, c).await,
        Command::Quickstart => quickstart::run(&ctx).await,
    }
}
