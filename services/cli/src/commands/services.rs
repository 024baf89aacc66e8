//! `worker` and `stitcher`: long-running services against a broker.

use std::sync::Arc;

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
    let super::Served {
        shutdown,
        health,
        registry,
    } = super::serve(args.metrics_addr.as_deref(), cfg).await?;
    let metrics = worker::WorkerMetrics::register(&registry)?;
    let Some(broker) = connect_or_stop(&args.broker, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(device = %wcfg.device, batch = wcfg.batch, "worker started");
    let result = worker::run(&wcfg, broker.clone(), metrics, health, shutdown).await;
    close(&broker).await;
    Ok(result?)
}

pub async fn stitcher(args: &ServiceArgs, cfg: &Config) -> anyhow::Result<()> {
    let super::Served {
        shutdown,
        health,
        registry,
    } = super::serve(args.metrics_addr.as_deref(), cfg).await?;
    let metrics = stitcher::StitcherMetrics::register(&registry)?;
    let Some(broker) = connect_or_stop(&args.broker, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!("stitcher started");
    let result = stitcher::run(&cfg.stitcher, broker.clone(), metrics, health, shutdown).await;
    close(&broker).await;
    Ok(result?)
}

/// Connects to the broker unless shutdown comes first (then `None`).
async fn connect_or_stop(
    url: &str,
    shutdown: &telemetry::Shutdown,
) -> anyhow::Result<Option<Arc<dyn broker::Broker>>> {
    tokio::select! {
        b = crate::embedded::connect(url) => Ok(Some(b?)),
        _ = shutdown.cancelled() => Ok(None),
    }
}

/// Closes the broker connection so the process exits without cutting it.
async fn close(broker: &Arc<dyn broker::Broker>) {
    if let Err(error) = broker.close().await {
        tracing::warn!(%error, "closing the broker connection failed");
    }
}
