//! One module per subcommand.

mod demo;
mod eval;
mod fill;
mod services;
mod status;
mod train;

use crate::args::{Cli, Command};

/// Runs the parsed command.
///
/// # Errors
/// The command's failure, with its cause chain.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = crate::config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Fill(args) => fill::fill(&args, &cfg).await,
        Command::Submit(args) => fill::submit(&args, &cfg).await,
        Command::Worker(args) => services::worker(&args, &cfg).await,
        Command::Stitcher(args) => services::stitcher(&args, &cfg).await,
        Command::Status(args) => status::status(&args).await,
        Command::Eval(args) => eval::eval(&args).await,
        Command::Train(args) => train::train(&args).await,
        Command::Demo(args) => demo::demo(&args, &cfg).await,
    }
}

/// Starts the metrics server when an address is configured; returns the registry to fill.
async fn metrics_server(
    addr: Option<&str>,
    health: telemetry::Health,
    shutdown: &telemetry::Shutdown,
) -> anyhow::Result<prometheus::Registry> {
    let registry = prometheus::Registry::new();
    if let Some(addr) = addr {
        telemetry::serve_metrics(addr, registry.clone(), health, shutdown.clone()).await?;
    }
    Ok(registry)
}
