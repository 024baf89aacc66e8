//! One module per subcommand.

mod demo;
mod eval;
mod fill;
mod generate;
mod import;
mod preview;
mod services;
mod status;
mod status_train;
mod train;
mod train_cluster;
mod train_rounds;
mod train_scenes;

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
        Command::Retry(mut args) => {
            args.retry = true;
            fill::fill(&args, &cfg).await
        }
        Command::Generate(args) => generate::generate(&args, &cfg).await,
        Command::Worker(args) => services::worker(&args, &cfg).await,
        Command::Stitcher(args) => services::stitcher(&args, &cfg).await,
        Command::Status(args) => status::status(&args).await,
        Command::Eval(args) => eval::eval(&args).await,
        Command::Train(args) => train::train(&args, &cfg).await,
        Command::Demo(args) => demo::demo(&args, &cfg).await,
        Command::Preview(args) => preview::preview(&args).await,
        Command::Import(args) => import::import(&args).await,
    }
}

/// What every command that serves metrics starts with: the shutdown signal, the health flag and
/// the registry (with the `process_*` metrics and `terrafill_build_info{service}`), served on
/// `--metrics-addr` (or the config's `telemetry.metrics_addr`) if set.
struct Served {
    shutdown: telemetry::Shutdown,
    health: telemetry::Health,
    registry: prometheus::Registry,
}

async fn serve(
    service: &str,
    flag: Option<&str>,
    cfg: &crate::config::Config,
) -> anyhow::Result<Served> {
    let shutdown = telemetry::shutdown_on_signal();
    let (health, registry) = serve_until(service, flag, cfg, shutdown.clone()).await?;
    Ok(Served {
        shutdown,
        health,
        registry,
    })
}

/// The health flag and the registry of [`serve`], served until `shutdown`, for commands that keep
/// the default signal handling (Ctrl-C stops `train` at once).
async fn serve_until(
    service: &str,
    flag: Option<&str>,
    cfg: &crate::config::Config,
    shutdown: telemetry::Shutdown,
) -> anyhow::Result<(telemetry::Health, prometheus::Registry)> {
    let health = telemetry::Health::default();
    let registry = prometheus::Registry::new();
    telemetry::register_process_metrics(&registry, service)?;
    if let Some(addr) = flag.or(cfg.telemetry.metrics_addr.as_deref()) {
        telemetry::serve_metrics(addr, registry.clone(), health.clone(), shutdown).await?;
    }
    Ok((health, registry))
}
