//! Worker metrics (`terrafill_worker_*`).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Counters and histograms of one worker; labels stay low-cardinality (method, outcome, stage).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Tiles finished, by method and outcome (`done`, `failed`, `retried`).
    pub tiles: IntCounterVec,
    /// Seconds per tile stage (`read`, `compute`, `stage`, `publish`).
    pub stage_seconds: HistogramVec,
    /// Bytes of scene data read.
    pub bytes_read: IntCounter,
    /// Bytes of tile outputs staged.
    pub bytes_written: IntCounter,
    /// Messages sent to the dead-letter queue because they could not be decoded.
    pub dead_lettered: IntCounter,
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
                    "Seconds per tile stage",
                )
                .buckets(prometheus::exponential_buckets(0.001, 4.0, 10)?),
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
        };
        // Every label pair exists from the start at 0 (see the stitcher's metrics): the alert
        // ratios over `terrafill_worker_tiles_total` are then defined from the first tile on.
        for method in ["identity", "idw", "diffusion", "unknown"] {
            for outcome in ["done", "failed", "retried"] {
                m.tiles.with_label_values(&[method, outcome]);
            }
        }
        registry.register(Box::new(m.tiles.clone()))?;
        registry.register(Box::new(m.stage_seconds.clone()))?;
        registry.register(Box::new(m.bytes_read.clone()))?;
        registry.register(Box::new(m.bytes_written.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        Ok(m)
    }
}
