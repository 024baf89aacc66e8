//! Worker metrics (`terrafill_worker_*`).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Counters and histograms of one worker; labels stay low-cardinality (method, outcome, stage).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Tiles finished, by method and outcome (`done`, `failed`, `retried`).
    pub tiles: IntCounterVec,
    /// Seconds per stage: `read`, `stage` and `publish` per tile; `compute` and `sync` per batch.
    pub stage_seconds: HistogramVec,
    /// Bytes of scene data read.
    pub bytes_read: IntCounter,
    /// Bytes of tile outputs staged.
    pub bytes_written: IntCounter,
    /// Messages sent to the dead-letter queue because they could not be decoded.
    pub dead_lettered: IntCounter,
    /// Tile failures (retried or final) by cause ([`crate::WorkerError::cause`]).
    pub errors: IntCounterVec,
    /// Seconds from the coordinator's publish to this worker's delivery (clocks assumed in sync;
    /// a redelivered task counts from its first publish).
    pub queue_wait_seconds: Histogram,
    /// Tiles computed together (one model batch for `diffusion`).
    pub batch_tiles: Histogram,
    /// Training shards finished, by outcome (`done`, `failed`, `retried`).
    pub shards: IntCounterVec,
    /// Seconds a training shard took (read, H steps, write).
    pub shard_seconds: Histogram,
    /// Optimiser steps run for training shards.
    pub train_steps: IntCounter,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// A prometheus error when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            tiles: IntCounterVec::new(
                Opts::new("terrafill_worker_tiles_total", "Tiles handled by workers"),
                &["method", "outcome"],
            )?,
            stage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "terrafill_worker_tile_stage_seconds",
                    "Seconds per stage: read, stage and publish per tile; compute and sync per \
                     batch of tiles (see terrafill_worker_batch_tiles)",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 20)?),
                &["stage"],
            )?,
            bytes_read: IntCounter::new("terrafill_worker_read_bytes_total", "Scene bytes read")?,
            bytes_written: IntCounter::new(
                "terrafill_worker_written_bytes_total",
                "Tile output bytes staged",
            )?,
            dead_lettered: IntCounter::new(
                "terrafill_worker_dead_lettered_total",
                "Undecodable tasks sent to the dead-letter queue",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "terrafill_worker_errors_total",
                    "Tile failures, retried or final, by cause",
                ),
                &["cause"],
            )?,
            queue_wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_worker_queue_wait_seconds",
                    "Seconds from a task's publish to its delivery to a worker",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 16)?),
            )?,
            batch_tiles: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_worker_batch_tiles",
                    "Tiles of one job computed together",
                )
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 9)?),
            )?,
            shards: IntCounterVec::new(
                Opts::new(
                    "terrafill_worker_shards_total",
                    "Training shards handled by workers",
                ),
                &["outcome"],
            )?,
            shard_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_worker_shard_seconds",
                    "Seconds per training shard (reading its version, H steps, writing it)",
                )
                .buckets(prometheus::exponential_buckets(0.5, 2.0, 14)?),
            )?,
            train_steps: IntCounter::new(
                "terrafill_worker_train_steps_total",
                "Optimiser steps run for training shards",
            )?,
        };
        // Every label pair exists from the start at 0 (see the stitcher's metrics): the alert
        // ratios over `terrafill_worker_tiles_total` are then defined from the first tile on.
        for method in ["identity", "idw", "diffusion", "unknown"] {
            for outcome in ["done", "failed", "retried"] {
                m.tiles.with_label_values(&[method, outcome]);
            }
        }
        for outcome in ["done", "failed", "retried"] {
            m.shards.with_label_values(&[outcome]);
        }
        for cause in crate::error::CAUSES {
            m.errors.with_label_values(&[cause]);
        }
        registry.register(Box::new(m.tiles.clone()))?;
        registry.register(Box::new(m.stage_seconds.clone()))?;
        registry.register(Box::new(m.bytes_read.clone()))?;
        registry.register(Box::new(m.bytes_written.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.queue_wait_seconds.clone()))?;
        registry.register(Box::new(m.batch_tiles.clone()))?;
        registry.register(Box::new(m.shards.clone()))?;
        registry.register(Box::new(m.shard_seconds.clone()))?;
        registry.register(Box::new(m.train_steps.clone()))?;
        Ok(m)
    }
}
