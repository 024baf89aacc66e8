//! Training metrics (`terrafill_train_*`), served by `train --metrics-addr`.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// What a dashboard follows while a model trains: progress, loss and speed.
#[derive(Debug, Clone)]
pub struct TrainMetrics {
    /// Optimiser steps taken (by this process; a resumed run starts from 0).
    pub steps: IntCounter,
    /// Steps this run will take.
    pub steps_planned: IntGauge,
    /// Training tiles seen (steps × batch).
    pub samples: IntCounter,
    /// Tiles per step.
    pub batch_size: IntGauge,
    /// The last step's loss.
    pub loss: Gauge,
    /// Seconds per step, batch assembly included.
    pub step_seconds: Histogram,
    /// Rounds of local SGD averaged into a new version (`train --rounds`).
    pub rounds: IntCounter,
    /// Bytes of versions and shard results written and read (`train --rounds`).
    pub checkpoint_bytes: IntCounter,
    /// Seconds a cluster's worker took for one shard, as it reported (`train --broker`).
    pub shard_seconds: Histogram,
}

impl TrainMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// A prometheus error when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            steps: IntCounter::new("terrafill_train_steps_total", "Optimiser steps taken")?,
            steps_planned: IntGauge::new(
                "terrafill_train_steps_planned",
                "Optimiser steps this training run will take",
            )?,
            samples: IntCounter::new(
                "terrafill_train_samples_total",
                "Training tiles seen (steps times batch)",
            )?,
            batch_size: IntGauge::new("terrafill_train_batch_size", "Training tiles per step")?,
            loss: Gauge::new("terrafill_train_loss", "Loss of the last training step")?,
            step_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_train_step_seconds",
                    "Seconds per training step, batch assembly included",
                )
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 14)?),
            )?,
            rounds: IntCounter::new(
                "terrafill_train_rounds_total",
                "Rounds of local SGD averaged into a new version",
            )?,
            checkpoint_bytes: IntCounter::new(
                "terrafill_train_checkpoint_bytes_total",
                "Bytes of model versions and shard results moved",
            )?,
            shard_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "terrafill_train_shard_seconds",
                    "Seconds per training shard on a cluster's worker, as reported by it",
                )
                .buckets(prometheus::exponential_buckets(0.5, 2.0, 14)?),
            )?,
        };
        registry.register(Box::new(m.shard_seconds.clone()))?;
        registry.register(Box::new(m.rounds.clone()))?;
        registry.register(Box::new(m.checkpoint_bytes.clone()))?;
        registry.register(Box::new(m.steps.clone()))?;
        registry.register(Box::new(m.steps_planned.clone()))?;
        registry.register(Box::new(m.samples.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.loss.clone()))?;
        registry.register(Box::new(m.step_seconds.clone()))?;
        Ok(m)
    }

    /// Records one finished step of `seconds` with its loss.
    pub fn step(&self, seconds: f64, loss: f32) {
        self.steps.inc();
        self.samples.inc_by(self.batch_size.get().max(0) as u64);
        self.loss.set(f64::from(loss));
        self.step_seconds.observe(seconds);
    }
}
