//! Stitcher metrics (`terrafill_stitcher_*`).

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Counters of one stitcher.
#[derive(Debug, Clone)]
pub struct StitcherMetrics {
    /// Output chunks written.
    pub chunks_written: IntCounter,
    /// Ready chunks found already written by another stitcher of the same job.
    pub chunks_skipped: IntCounter,
    /// Bytes of mosaic written (data + filled + spread).
    pub bytes_written: IntCounter,
    /// Tile results received, by outcome (`done`, `failed`, `duplicate`).
    pub tile_results: IntCounterVec,
    /// Jobs finished, by outcome (`succeeded`, `failed`).
    pub jobs: IntCounterVec,
    /// Progress of the most recently active job, 0–1.
    pub progress: Gauge,
    /// Seconds to blend and write one chunk.
    pub chunk_seconds: Histogram,
    /// Undecodable events sent to the dead-letter queue.
    pub dead_lettered: IntCounter,
    /// When this stitcher last finalized a job (seconds since the epoch; 0 before its first).
    pub last_success: Gauge,
    /// Seconds from a tile task's publish to its result reaching a stitcher: queue wait, compute
    /// and staging together (clocks assumed in sync).
    pub tile_latency_seconds: Histogram,
}

impl StitcherMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// A prometheus error when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            chunks_written: IntCounter::new(
                "terrafill_stitcher_chunks_written_total",
                "Mosaic chunks written",
            )?,
            chunks_skipped: IntCounter::new(
                "terrafill_stitcher_chunks_skipped_total",
                "Ready chunks another stitcher had already written",
            )?,
            bytes_written: IntCounter::new(
                "terrafill_stitcher_written_bytes_total",
                "Mosaic bytes written",
            )?,
            tile_results: IntCounterVec::new(
                Opts::new(
                    "terrafill_stitcher_tile_results_total",
                    "Tile results received",
                ),
                &["outcome"],
            )?,
            jobs: IntCounterVec::new(
                Opts::new("terrafill_stitcher_jobs_total", "Jobs finished"),
                &["outcome"],
            )?,
            progress: Gauge::new(
                "terrafill_stitcher_job_progress_ratio",
                "Chunks written / chunks of the active job; 1 when no job is in progress",
            )?,
            chunk_seconds: Histogram::with_opts(
                HistogramOpts::new("terrafill_stitcher_chunk_seconds", "Seconds per chunk")
                    .buckets(prometheus::exponential_buckets(0.001, 4.0, 10)?),
            )?,
            dead_lettered: IntCounter::new(
                "terrafill_stitcher_dead_lettered_total",
                "Undecodable events sent to the dead-letter queue",
            )?,
            last_success: Gauge::new(
                "terrafill_stitcher_last_success_timestamp_seconds",
                "When this stitcher last finalized a job, seconds since the epoch (0 before)",
            )?,
            tile_latency_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_stitcher_tile_latency_seconds",
                    "Seconds from a tile task's publish to its result reaching a stitcher",
                )
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 16)?),
            )?,
        };
        // Every label value exists from the start at 0, so that `increase()` and `rate()` see a
        // job's first failure (a series born at 1 has no increase) and ratios are never 0/0.
        for outcome in ["done", "failed", "duplicate"] {
            m.tile_results.with_label_values(&[outcome]);
        }
        for outcome in ["succeeded", "failed"] {
            m.jobs.with_label_values(&[outcome]);
        }
        m.progress.set(1.0);
        registry.register(Box::new(m.chunks_written.clone()))?;
        registry.register(Box::new(m.chunks_skipped.clone()))?;
        registry.register(Box::new(m.bytes_written.clone()))?;
        registry.register(Box::new(m.tile_results.clone()))?;
        registry.register(Box::new(m.jobs.clone()))?;
        registry.register(Box::new(m.progress.clone()))?;
        registry.register(Box::new(m.chunk_seconds.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.tile_latency_seconds.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        Ok(m)
    }
}
