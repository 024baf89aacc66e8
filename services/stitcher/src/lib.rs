//! The terrafill stitcher: consumes tile results, writes each output chunk once — when every
//! tile touching it is in — by blending the staged tile outputs in tile-index order, and
//! finalizes the mosaic. Its state is rebuilt from staging on start, so it can crash at any time.

mod error;
mod job;
mod metrics;
mod tile_cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Message, QueueSpec};
use telemetry::{Health, Shutdown};
use wire::v1::{stitch_event::Event, JobState, JobStatus, StitchEvent, TileOutcome};

pub use error::StitcherError;
pub use job::{Loaded, StitchJob};
pub use metrics::StitcherMetrics;

/// Stitcher settings (`[stitcher]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StitcherConfig {
    /// Unacknowledged events held at once.
    pub prefetch: u16,
    /// Minimum interval between progress events, in milliseconds.
    pub status_interval_ms: u64,
    /// The cluster's job key: only jobs signed with it are stitched (from `TERRAFILL_JOB_KEY`,
    /// never from the config file).
    #[serde(skip)]
    pub job_key: Option<wire::JobKey>,
}

impl Default for StitcherConfig {
    fn default() -> Self {
        Self {
            prefetch: 64,
            status_interval_ms: 500,
            job_key: None,
        }
    }
}

/// Runs the stitcher until `shutdown`.
///
/// # Errors
/// [`StitcherError::Broker`] when the broker cannot be used.
pub async fn run(
    cfg: &StitcherConfig,
    broker: Arc<dyn Broker>,
    metrics: StitcherMetrics,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), StitcherError> {
    broker
        .declare_queue(wire::STITCH_QUEUE, &QueueSpec::default())
        .await?;
    let mut events = broker
        .consume(wire::STITCH_QUEUE, cfg.prefetch.max(1))
        .await?;
    health.set_ready(true);
    let mut stitcher = Stitcher {
        broker: broker.clone(),
        metrics,
        jobs: HashMap::new(),
        interval: Duration::from_millis(cfg.status_interval_ms),
        key: cfg.job_key.clone(),
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = events.next() => next,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        let event: Result<StitchEvent, _> =
            wire::decode("StitchEvent", &delivery.body, wire::MAX_MESSAGE_BYTES);
        let Ok(StitchEvent { event: Some(event) }) = event else {
            tracing::warn!("undecodable stitcher event: dead-lettering it");
            stitcher.metrics.dead_lettered.inc();
            settled(delivery.dead_letter().await)?;
            continue;
        };
        match stitcher.handle(event).await {
            Ok(()) => settled(delivery.ack().await)?,
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "stitcher event failed; retrying");
                settled(delivery.retry().await)?;
            }
            Err(error) => {
                tracing::error!(%error, "stitcher event failed permanently");
                settled(delivery.ack().await)?;
            }
        }
    }
    health.set_ready(false);
    Ok(())
}

/// A delivery that cannot be settled because its channel died in a broker outage is
/// redelivered by the broker, and every event is idempotent: log it and go on.
fn settled(result: Result<(), broker::BrokerError>) -> Result<(), broker::BrokerError> {
    match result {
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "cannot settle a stitcher event; the broker redelivers it");
            Ok(())
        }
        other => other,
    }
}

struct Active {
    job: Box<StitchJob>,
    last_status: Instant,
}

struct Stitcher {
    broker: Arc<dyn Broker>,
    metrics: StitcherMetrics,
    jobs: HashMap<String, Active>,
    interval: Duration,
    key: Option<wire::JobKey>,
}

impl Stitcher {
    async fn handle(&mut self, event: Event) -> Result<(), StitcherError> {
        match event {
            Event::Started(started) => {
                let Some(spec) = started.job else {
                    return Ok(());
                };
                if let Err(source) =
                    wire::trust::verify(self.key.as_ref(), &spec, &started.signature)
                {
                    tracing::warn!(error = %source, "ignoring an untrusted job announcement");
                    self.metrics.dead_lettered.inc();
                    return Ok(());
                }
                self.ensure_loaded(&spec.staging_url, &spec.job_id).await?;
                self.progress(&spec.job_id, Vec::new()).await
            }
            Event::Tile(result) => {
                if let Err(source) = wire::trust::verify_result(self.key.as_ref(), &result) {
                    tracing::warn!(error = %source, tile = result.tile_index, "ignoring an untrusted tile result");
                    self.metrics.dead_lettered.inc();
                    return Ok(());
                }
                if !self
                    .ensure_loaded(&result.staging_url, &result.job_id)
                    .await?
                {
                    self.metrics
                        .tile_results
                        .with_label_values(&["duplicate"])
                        .inc();
                    return Ok(());
                }
                if result.outcome() != TileOutcome::Done {
                    self.metrics
                        .tile_results
                        .with_label_values(&["failed"])
                        .inc();
                    let reason = format!("tile {} failed: {}", result.tile_index, result.error);
                    return self.fail(&result.job_id, reason).await;
                }
                self.metrics.tile_results.with_label_values(&["done"]).inc();
                let ready = match self.jobs.get_mut(&result.job_id) {
                    Some(a) => a.job.tile_done(result.tile_index),
                    None => Vec::new(),
                };
                self.progress(&result.job_id, ready).await
            }
        }
    }

    /// Loads a job into memory unless it already ended; returns whether it is active.
    async fn ensure_loaded(
        &mut self,
        staging_url: &str,
        job_id: &str,
    ) -> Result<bool, StitcherError> {
        if self.jobs.contains_key(job_id) {
            return Ok(true);
        }
        match StitchJob::load(staging_url, job_id, self.key.as_ref()).await? {
            Loaded::Ended(_) => Ok(false),
            Loaded::Active(job) => {
                tracing::info!(job = %job_id, "stitching job");
                let ready = job.ready_chunks();
                let last_status = Instant::now()
                    .checked_sub(self.interval)
                    .unwrap_or_else(Instant::now);
                self.jobs
                    .insert(job_id.to_owned(), Active { job, last_status });
                self.write(job_id, ready).await?;
                Ok(true)
            }
        }
    }

    async fn write(&mut self, job_id: &str, chunks: Vec<u64>) -> Result<(), StitcherError> {
        let Some(active) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        for c in chunks {
            active.job.write_chunk(c, &self.metrics).await?;
        }
        Ok(())
    }

    /// Writes `ready` chunks, then publishes progress (throttled) or finalizes.
    async fn progress(&mut self, job_id: &str, ready: Vec<u64>) -> Result<(), StitcherError> {
        self.write(job_id, ready).await?;
        let Some(active) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if active.job.is_complete() {
            let status = active.job.finalize().await?;
            self.jobs.remove(job_id);
            self.metrics.jobs.with_label_values(&["succeeded"]).inc();
            self.metrics.progress.set(1.0);
            tracing::info!(job = %job_id, "mosaic complete");
            self.announce(status).await;
        } else if active.last_status.elapsed() >= self.interval {
            active.last_status = Instant::now();
            let status = active.job.status(JobState::Running, String::new());
            self.metrics.progress.set(ratio(&status));
            active.job.save_status(&status).await?;
            self.announce(status).await;
        }
        Ok(())
    }

    async fn fail(&mut self, job_id: &str, reason: String) -> Result<(), StitcherError> {
        let Some(active) = self.jobs.remove(job_id) else {
            return Ok(());
        };
        tracing::error!(job = %job_id, %reason, "job failed");
        let status = active.job.status(JobState::Failed, reason);
        active.job.save_status(&status).await?;
        self.metrics.jobs.with_label_values(&["failed"]).inc();
        if self.jobs.is_empty() {
            // Nothing left in progress: an idle stitcher is not a stalled one.
            self.metrics.progress.set(1.0);
        }
        self.announce(status).await;
        Ok(())
    }

    /// Publishes a status event; progress events are best effort (the staged status is durable).
    async fn announce(&self, status: JobStatus) {
        let msg = Message {
            body: wire::encode(&status),
            headers: wire::headers(wire::types::JOB_STATUS, &status.job_id),
        };
        if let Err(error) = self.broker.publish_event(wire::STATUS_EXCHANGE, msg).await {
            tracing::warn!(%error, "cannot publish job status");
        }
    }
}

/// Chunks written / chunks total.
pub fn ratio(status: &JobStatus) -> f64 {
    if status.chunks_total == 0 {
        1.0
    } else {
        status.chunks_written as f64 / status.chunks_total as f64
    }
}
