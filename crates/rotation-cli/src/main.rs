//! `rotation`: the operator CLI. Thin: parse, wire adapters, call the
//! engine, print. Errors are printed as `error[<reason>]: <message>` with a
//! non-zero exit code.

mod app;
mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            eprintln!(
                "error[invalid_input]: {}",
                rendered.trim_start_matches("error: ").trim_end()
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_env("ROTATION_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error[backend_unavailable]: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let ctx = app::Context::new(cli.global)?;
        commands::run(ctx, cli.command).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error[{}]: {}", error.reason, error.message);
            if let Some(r) = &error.rotation_id {
                message.push_str(&format!(" (rotation {r})"));
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
