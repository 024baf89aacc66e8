//! Embedded mode: coordinator, N workers and M stitchers in one process, joined by the
//! in-process broker. (With a broker, `fill` is a client of that cluster instead: see
//! `commands::fill`.)

use std::sync::Arc;

use anyhow::Context;
use prometheus::Registry;
use telemetry::{Health, Shutdown};
use wire::v1::JobStatus;

use crate::config::Config;
use crate::progress::JobProgress;

/// How many of each local service [`fill`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Services {
    /// Workers.
    pub workers: usize,
    /// Stitchers (they share the results queue as a cluster's do).
    pub stitchers: usize,
}

/// Runs `req` to completion with local workers and stitchers.
///
/// # Errors
/// Whatever stops the job, with its cause.
pub async fn fill(
    req: &coordinator::FillRequest,
    local: Services,
    cfg: &Config,
    registry: &Registry,
    shutdown: &Shutdown,
) -> anyhow::Result<JobStatus> {
    let broker = broker::connect(None).await?;
    let services = shutdown.child_token();
    let health = Health::default();
    let worker_metrics = worker::WorkerMetrics::register(registry)?;
    let stitcher_metrics = stitcher::StitcherMetrics::register(registry)?;
    let coordinator_metrics = coordinator::CoordinatorMetrics::register(registry)?;
    let mut tasks = tokio::task::JoinSet::new();
    // Workers and stitchers share decoded input chunks: each is decoded about once.
    let chunks = Arc::new(zarr_io::ChunkCache::new(zarr_io::DEFAULT_LIMIT_BYTES));
    let mut worker_cfg = cfg.worker.clone();
    worker_cfg.chunk_cache = Some(chunks.clone());
    let mut stitcher_cfg = cfg.stitcher.clone();
    stitcher_cfg.chunk_cache = Some(chunks);
    for _ in 0..local.workers.max(1) {
        let (b, m, h, s, c) = (
            broker.clone(),
            worker_metrics.clone(),
            health.clone(),
            services.clone(),
            worker_cfg.clone(),
        );
        tasks.spawn(async move {
            worker::run(&c, b, m, h, s)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    for _ in 0..local.stitchers.max(1) {
        let (b, m, h, s, c) = (
            broker.clone(),
            stitcher_metrics.clone(),
            health.clone(),
            services.clone(),
            stitcher_cfg.clone(),
        );
        tasks.spawn(async move {
            stitcher::run(&c, b, m, h, s)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let mut progress = JobProgress::new("filling");
    let mut report = |s: &JobStatus| progress.update(s);
    let coordinate = coordinator::run(
        req,
        &cfg.coordinator,
        &broker,
        &coordinator_metrics,
        shutdown,
        &mut report,
    );
    let result = tokio::select! {
        r = coordinate => r.map_err(anyhow::Error::from),
        Some(failed) = tasks.join_next() => Err(service_stopped(failed)),
    };
    progress.finish();
    services.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            tracing::warn!(%error, "local service stopped with an error");
        }
    }
    if let Err(error) = broker.close().await {
        tracing::warn!(%error, "closing the broker connection failed");
    }
    result.with_context(|| format!("filling {} into {}", req.input, req.output))
}

fn service_stopped(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("a local service stopped unexpectedly"),
        Ok(Err(e)) => e.context("a local service failed"),
        Err(e) => anyhow::Error::from(e).context("a local service panicked"),
    }
}

/// Connects to the broker for a distributed service.
///
/// # Errors
/// When the broker is unreachable (named, password redacted).
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn broker::Broker>> {
    Ok(broker::connect(Some(url)).await?)
}
