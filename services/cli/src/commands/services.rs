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
    } = super::serve("worker", args.metrics_addr.as_deref(), cfg).await?;
    let metrics = worker::WorkerMetrics::register(&registry)?;
    let Some(broker) = connect_or_stop(&args.broker, &shutdown).await? else {
        return Ok(());
    };
    watch_connection(&broker, &health, &registry, &shutdown)?;
    warn_without_job_key(&args.broker, wcfg.job_key.as_ref());
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
    } = super::serve("stitcher", args.metrics_addr.as_deref(), cfg).await?;
    let metrics = stitcher::StitcherMetrics::register(&registry)?;
    let Some(broker) = connect_or_stop(&args.broker, &shutdown).await? else {
        return Ok(());
    };
    watch_connection(&broker, &health, &registry, &shutdown)?;
    warn_without_job_key(&args.broker, cfg.stitcher.job_key.as_ref());
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

/// Says at start, for a real broker, when no job key guards the cluster.
fn warn_without_job_key(url: &str, key: Option<&wire::JobKey>) {
    if key.is_none() && !url.starts_with(broker::INPROC_SCHEME) {
        tracing::warn!(
            "{} is not set: this service accepts every job published on the broker; set the same key on coordinators, workers and stitchers (README, \"Trust\")",
            wire::JOB_KEY_ENV
        );
    }
}

/// How often the broker connection's state is looked at for `/readyz` and the gauge.
const CONNECTION_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Mirrors the broker connection's state into `/readyz` (not ready while disconnected), the
/// `terrafill_broker_connected` gauge and a log line on each change, until shutdown.
fn watch_connection(
    broker: &Arc<dyn broker::Broker>,
    health: &telemetry::Health,
    registry: &prometheus::Registry,
    shutdown: &telemetry::Shutdown,
) -> anyhow::Result<()> {
    let gauge = prometheus::IntGauge::new(
        "terrafill_broker_connected",
        "1 while the service's broker connection is up, 0 while it reconnects",
    )?;
    registry.register(Box::new(gauge.clone()))?;
    let (broker, health, shutdown) = (broker.clone(), health.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut last = true;
        gauge.set(1);
        loop {
            let up = broker.is_connected();
            if up != last {
                if up {
                    tracing::info!("broker connection is back; ready");
                } else {
                    tracing::warn!("broker connection lost; not ready until it is back");
                }
                last = up;
            }
            gauge.set(i64::from(up));
            health.set_connected(up);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(CONNECTION_POLL) => {}
            }
        }
    });
    Ok(())
}

/// Closes the broker connection so the process exits without cutting it.
async fn close(broker: &Arc<dyn broker::Broker>) {
    if let Err(error) = broker.close().await {
        tracing::warn!(%error, "closing the broker connection failed");
    }
}
