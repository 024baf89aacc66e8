//! Coordinator metrics (`terrafill_coordinator_*`).

use prometheus::{Gauge, IntCounter, IntGauge, Registry};

/// Counters of one coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorMetrics {
    /// Tiles in the plans made.
    pub tiles_planned: IntCounter,
    /// Tiles published as tasks.
    pub tiles_published: IntCounter,
    /// Clean tiles never sent to a model.
    pub tiles_skipped: IntCounter,
    /// Tiles already staged by an earlier run (resume).
    pub tiles_resumed: IntCounter,
    /// Tasks waiting in the tile queue at the last look.
    pub queue_in_flight: IntGauge,
    /// Progress of the job being waited on, 0–1.
    pub progress: Gauge,
}

impl CoordinatorMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// A prometheus error when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            tiles_planned: IntCounter::new(
                "terrafill_coordinator_tiles_planned_total",
                "Tiles planned",
            )?,
            tiles_published: IntCounter::new(
                "terrafill_coordinator_tiles_published_total",
                "Tile tasks published",
            )?,
            tiles_skipped: IntCounter::new(
                "terrafill_coordinator_tiles_skipped_total",
                "Clean tiles not sent to a model",
            )?,
            tiles_resumed: IntCounter::new(
                "terrafill_coordinator_tiles_resumed_total",
                "Tiles already staged by an earlier run",
            )?,
            queue_in_flight: IntGauge::new(
                "terrafill_coordinator_queue_in_flight_tasks",
                "Tile tasks waiting in the queue",
            )?,
            progress: Gauge::new(
                "terrafill_coordinator_job_progress_ratio",
                "Job progress 0-1",
            )?,
        };
        registry.register(Box::new(m.tiles_planned.clone()))?;
        registry.register(Box::new(m.tiles_published.clone()))?;
        registry.register(Box::new(m.tiles_skipped.clone()))?;
        registry.register(Box::new(m.tiles_resumed.clone()))?;
        registry.register(Box::new(m.queue_in_flight.clone()))?;
        registry.register(Box::new(m.progress.clone()))?;
        Ok(m)
    }
}
