//! The terrafill worker. It takes two kinds of task and dispatches by kind: tile tasks
//! ([`tiles`]: the job's fill method on blocking threads, each output staged durably and its
//! result published with a publisher confirm) and training shards ([`training`]: H steps from a
//! checkpoint version, the result written next to the run's checkpoint). Both are acked only
//! after that, through one path ([`settle`]; DESIGN.md §6: ack late). A crash at any point loses
//! no finished work; a redelivered task rewrites the same bytes.

mod corpus;
mod diffusion;
mod error;
mod job;
pub mod methods;
mod metrics;
mod phases;
mod settle;
mod tiles;
mod training;

use std::sync::Arc;
use std::time::Duration;

use broker::Broker;
use telemetry::{Health, Shutdown};

pub use corpus::{open_corpus, CorpusError, SceneSpec};
pub use error::WorkerError;
pub use job::{JobCache, JobContext};
pub use metrics::WorkerMetrics;

/// Worker settings (`[worker]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Tiles taken per batch (and the prefetch); diffusion runs a batch in one forward pass.
    pub batch: usize,
    /// How long to wait for more tasks to fill a batch, in milliseconds.
    pub linger_ms: u64,
    /// `auto`, `cpu` or `cuda:N`.
    pub device: String,
    /// The cluster's job key: only tasks signed with it are computed (from
    /// `TERRAFILL_JOB_KEY`, never from the config file).
    #[serde(skip)]
    pub job_key: Option<wire::JobKey>,
    /// Decoded input chunks shared with the other services of this process (embedded runs);
    /// `None`: the worker keeps its own.
    #[serde(skip)]
    pub chunk_cache: Option<Arc<zarr_io::ChunkCache>>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: 4,
            linger_ms: 20,
            device: "auto".into(),
            job_key: None,
            chunk_cache: None,
        }
    }
}

/// Runs a worker until `shutdown` (finishing the batch in hand) or until the broker subscription
/// ends.
///
/// # Errors
/// [`WorkerError`] when the broker cannot be used or the device is unavailable.
pub async fn run(
    cfg: &WorkerConfig,
    broker: Arc<dyn Broker>,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    let unusable = |source| WorkerError::Device {
        spec: cfg.device.clone(),
        source,
    };
    let device: model::DeviceSpec = cfg.device.parse().map_err(unusable)?;
    // Opened once here so that a device this build or machine lacks stops the worker at start,
    // not tile by tile (and not silently for methods that never open it).
    device.device().map_err(unusable)?;
    broker::declare_all(&*broker, &wire::QUEUES).await?;
    let batch = cfg.batch.max(1);
    let mut tasks = broker.consume(wire::TILE_QUEUE, batch as u16).await?;
    let mut shards = broker.consume(wire::TRAIN_QUEUE, 1).await?;
    health.set_ready(true);
    let chunks = cfg
        .chunk_cache
        .clone()
        .unwrap_or_else(|| Arc::new(zarr_io::ChunkCache::new(zarr_io::DEFAULT_LIMIT_BYTES)));
    let mut jobs = JobCache::new(chunks.clone());
    let mut trainer = training::Trainer::new(broker.clone(), cfg.job_key.clone(), device, chunks);
    let linger = Duration::from_millis(cfg.linger_ms);
    let results = tiles::Results {
        broker: &broker,
        key: cfg.job_key.as_ref(),
    };
    // Dispatch by task kind: a batch of tile tasks, or one training shard.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = tasks.next() => {
                let Some(first) = next else { break };
                let mut deliveries = vec![first?];
                while deliveries.len() < batch {
                    match tokio::time::timeout(linger, tasks.next()).await {
                        Ok(Some(Ok(d))) => deliveries.push(d),
                        _ => break,
                    }
                }
                tiles::handle_batch(deliveries, &results, &mut jobs, &device, &metrics).await;
            }
            next = shards.next() => {
                let Some(delivery) = next else { break };
                trainer.handle(delivery?, &metrics).await;
            }
        }
    }
    health.set_ready(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A task the broker accepts must be one the worker decodes: one limit on both sides.
    #[test]
    fn the_broker_and_the_decoder_share_one_message_limit() {
        assert_eq!(broker::DEFAULT_MAX_MESSAGE_BYTES, wire::MAX_MESSAGE_BYTES);
    }
}
