//! `worker` and `stitcher`: long-running services against a broker.

use crate::args::ServiceArgs;
use crate::config::Config;

pub async fn worker(args: &ServiceArgs, cfg: &Config) -> anyhow::Result<()> {
    let mut wcfg = cfg.worker.clone();
    if let Some(d) = &args.device {
        wcfg.device = d.clone();
    }
    if let Some(b) = args.batch {
        wcfg.batch = b;
    }
    let shutdown = telemetry::shutdown_on_signal();
    let health = telemetry::Health::default();
    let addr = args
        .metrics_addr
        .as_deref()
        .or(cfg.telemetry.metrics_addr.as_deref());
    let registry = super::metrics_server(addr, health.clone(), &shutdown).await?;
    let metrics = worker::WorkerMetrics::register(&registry)?;
    let broker = crate::embedded::connect(&args.broker).await?;
    tracing::info!(device = %wcfg.device, batch = wcfg.batch, "worker started");
    worker::run(&wcfg, broker, metrics, health, shutdown).await?;
    Ok(())
}

pub async fn stitcher(args: &ServiceArgs, cfg: &Config) -> anyhow::Result<()> {
    let shutdown = telemetry::shutdown_on_signal();
    let health = telemetry::Health::default();
    let addr = args
        .metrics_addr
        .as_deref()
        .or(cfg.telemetry.metrics_addr.as_deref());
    let registry = super::metrics_server(addr, health.clone(), &shutdown).await?;
    let metrics = stitcher::StitcherMetrics::register(&registry)?;
    let broker = crate::embedded::connect(&args.broker).await?;
    tracing::info!("stitcher started");
    stitcher::run(&cfg.stitcher, broker, metrics, health, shutdown).await?;
    Ok(())
}
