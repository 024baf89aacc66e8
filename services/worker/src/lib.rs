//! The terrafill worker: consumes tile tasks, runs the job's fill method on blocking threads,
//! stages each tile output durably, publishes its result with a publisher confirm and only then
//! acks the task (DESIGN.md §6: ack late). A crash at any point loses no finished tile; a
//! redelivered task rewrites the same bytes.

mod diffusion;
mod error;
mod job;
pub mod methods;
mod metrics;
mod settle;
mod training;

use std::sync::Arc;
use std::time::Duration;

use broker::{Broker, Delivery, Message};
use telemetry::{Health, Shutdown};
use wire::v1::{stitch_event, StitchEvent, TileOutcome, TileOutput, TileResult, TileTask};

pub use error::WorkerError;
pub use job::{JobCache, JobContext};
pub use metrics::WorkerMetrics;
pub use training::read_scene;

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
    let mut jobs = JobCache::new(chunks);
    let mut trainer = training::Trainer::new(broker.clone(), cfg.job_key.clone(), device);
    let linger = Duration::from_millis(cfg.linger_ms);
    let results = Results {
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
                handle_batch(deliveries, &results, &mut jobs, &device, &metrics).await;
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

struct Task {
    delivery: Delivery,
    task: TileTask,
}

async fn handle_batch(
    deliveries: Vec<Delivery>,
    results: &Results<'_>,
    jobs: &mut JobCache,
    device: &model::DeviceSpec,
    metrics: &WorkerMetrics,
) {
    let mut groups: Vec<Vec<Task>> = Vec::new();
    for delivery in deliveries {
        match decode_task(&delivery, results.key) {
            Ok(task) => {
                if let Some(wait) = wire::seconds_since_unix_ms(task.published_unix_ms) {
                    metrics.queue_wait_seconds.observe(wait);
                }
                let job = task.job.as_ref().map(|j| j.job_id.clone());
                let same =
                    |g: &Vec<Task>| g[0].task.job.as_ref().map(|j| &j.job_id) == job.as_ref();
                match groups.iter_mut().find(|g| same(g)) {
                    Some(g) => g.push(Task { delivery, task }),
                    None => groups.push(vec![Task { delivery, task }]),
                }
            }
            Err(error) => settle::reject(delivery, &error, metrics).await,
        }
    }
    for group in groups {
        handle_job_tasks(group, results, jobs, device, metrics).await;
    }
}

/// The task in `delivery`, if it decodes and (with a job key) its spec is signed with that key:
/// every location the worker touches comes from that spec.
fn decode_task(
    delivery: &Delivery,
    key: Option<&wire::JobKey>,
) -> Result<TileTask, wire::WireError> {
    let task: TileTask = wire::decode("TileTask", &delivery.body, wire::MAX_MESSAGE_BYTES)?;
    let Some(spec) = &task.job else {
        return Err(wire::WireError::MissingField {
            what: "TileTask",
            field: "job",
        });
    };
    wire::trust::verify(key, spec, &task.signature)?;
    Ok(task)
}

async fn handle_job_tasks(
    group: Vec<Task>,
    results: &Results<'_>,
    jobs: &mut JobCache,
    device: &model::DeviceSpec,
    metrics: &WorkerMetrics,
) {
    let Some(spec) = group.first().and_then(|t| t.task.job.clone()) else {
        return;
    };
    let job = match jobs.get(&spec, device, metrics).await {
        Ok(job) => job,
        Err(error) => {
            for t in group {
                settle_tile(
                    t,
                    Some(&error),
                    &spec.staging_url,
                    results,
                    metrics,
                    "unknown",
                )
                .await;
            }
            return;
        }
    };
    let method = job
        .method
        .as_str_name()
        .trim_start_matches("METHOD_")
        .to_lowercase();
    let tiles: Result<Vec<_>, _> = group
        .iter()
        .map(|t| {
            let index = t.task.tile_index;
            job.grid.tile(index).map_err(|e| (index, e))
        })
        .collect();
    let outputs = match tiles {
        Ok(tiles) => {
            metrics.batch_tiles.observe(tiles.len() as f64);
            let timer = metrics
                .stage_seconds
                .with_label_values(&["compute"])
                .start_timer();
            let out = methods::compute(&job, &tiles).await;
            timer.observe_duration();
            out
        }
        Err((index, e)) => Err(WorkerError::Method {
            job: job.id.to_string(),
            tile: Some(index),
            reason: e.to_string(),
        }),
    };
    match outputs {
        Ok(fills) => {
            // The group's tiles are staged concurrently and made durable together (one sync of
            // local staging for the group, not one per tile); a tile's result is published only
            // once its output is durably staged.
            let mut staged = futures::future::join_all(
                group
                    .iter()
                    .zip(fills)
                    .map(|(t, fill)| stage_tile(&job, t.task.tile_index, fill, metrics)),
            )
            .await;
            if let Err(error) = durable(&job, &staged, metrics).await {
                // Each tile fails with the sync's error (retried; restaged identically).
                for (s, t) in staged.iter_mut().zip(&group).filter(|(s, _)| s.is_ok()) {
                    *s = Err(WorkerError::Storage {
                        job: job.id.to_string(),
                        tile: Some(t.task.tile_index),
                        source: zarr_io::ZarrIoError::Sync {
                            path: job.staging.url().to_owned(),
                            source: std::io::Error::other(error.to_string()),
                        },
                    });
                }
            }
            for (t, staged) in group.into_iter().zip(staged) {
                let outcome = match staged {
                    Ok(()) => publish_done(&job, &t.task, results, metrics).await,
                    Err(error) => Err(error),
                };
                let failure = outcome.as_ref().err();
                settle_tile(t, failure, &spec.staging_url, results, metrics, &method).await;
            }
        }
        Err(error) => {
            for t in group {
                settle_tile(
                    t,
                    Some(&error),
                    &spec.staging_url,
                    results,
                    metrics,
                    &method,
                )
                .await;
            }
        }
    }
}

/// Stages the tile output (durable at the group's sync). Only after it, the sync and
/// [`publish_done`] may the task be acked.
async fn stage_tile(
    job: &JobContext,
    index: u64,
    fill: methods::TileFill,
    metrics: &WorkerMetrics,
) -> Result<(), WorkerError> {
    let tile = job.grid.tile(index).map_err(|e| WorkerError::Method {
        job: job.id.to_string(),
        tile: Some(index),
        reason: e.to_string(),
    })?;
    let lead = job.spec.lead_len() as u64;
    let output = TileOutput {
        tile_index: index,
        shape: vec![lead, tile.window.height, tile.window.width],
        values: wire::f32_to_le_bytes(&fill.values),
        spread: fill
            .spread
            .as_deref()
            .map(wire::f32_to_le_bytes)
            .unwrap_or_default(),
        members: fill
            .members
            .as_deref()
            .map(wire::f32_to_le_bytes)
            .unwrap_or_default(),
    };
    let bytes = wire::encode(&output);
    let size = bytes.len() as u64;
    let timer = metrics
        .stage_seconds
        .with_label_values(&["stage"])
        .start_timer();
    job.staging
        .put_deferred(&wire::staging_keys::tile(&job.id, index), bytes)
        .await
        .map_err(|source| WorkerError::Storage {
            job: job.id.to_string(),
            tile: Some(index),
            source,
        })?;
    timer.observe_duration();
    metrics.bytes_written.inc_by(size);
    Ok(())
}

/// Makes the tiles staged so far durable when any of `staged` succeeded.
async fn durable(
    job: &JobContext,
    staged: &[Result<(), WorkerError>],
    metrics: &WorkerMetrics,
) -> Result<(), zarr_io::ZarrIoError> {
    if !staged.iter().any(Result::is_ok) {
        return Ok(());
    }
    let timer = metrics
        .stage_seconds
        .with_label_values(&["sync"])
        .start_timer();
    job.staging.sync().await?;
    timer.observe_duration();
    Ok(())
}

/// Publishes the result of `task`'s staged tile (confirmed).
async fn publish_done(
    job: &JobContext,
    task: &TileTask,
    results: &Results<'_>,
    metrics: &WorkerMetrics,
) -> Result<(), WorkerError> {
    let result = TileResult {
        job_id: job.id.to_string(),
        tile_index: task.tile_index,
        outcome: TileOutcome::Done as i32,
        error: String::new(),
        staging_url: job.spec.staging_url.clone(),
        signature: Vec::new(),
        task_published_unix_ms: task.published_unix_ms,
    };
    let timer = metrics
        .stage_seconds
        .with_label_values(&["publish"])
        .start_timer();
    results.publish(result).await?;
    timer.observe_duration();
    Ok(())
}

/// Settles tile task `t` after it ended, with `failure` or done (see [`settle::settle`]); a final
/// failure is reported to the stitcher, so the job ends visibly instead of hanging.
async fn settle_tile(
    t: Task,
    failure: Option<&WorkerError>,
    staging_url: &str,
    results: &Results<'_>,
    metrics: &WorkerMetrics,
    method: &str,
) {
    let Task { delivery, task } = t;
    let job_id = task
        .job
        .as_ref()
        .map(|j| j.job_id.clone())
        .unwrap_or_default();
    let name = format!("tile {} of job {job_id}", task.tile_index);
    let settled = settle::settle(delivery, failure, &name, metrics, |error| {
        results.publish(TileResult {
            job_id: job_id.clone(),
            tile_index: task.tile_index,
            outcome: TileOutcome::Failed as i32,
            error: error.to_string(),
            staging_url: staging_url.to_owned(),
            signature: Vec::new(),
            task_published_unix_ms: task.published_unix_ms,
        })
    })
    .await;
    metrics
        .tiles
        .with_label_values(&[method, settled.label()])
        .inc();
}

/// Where tile results go: the stitcher's queue, signed with the cluster's job key if any.
struct Results<'a> {
    broker: &'a Arc<dyn Broker>,
    key: Option<&'a wire::JobKey>,
}

impl Results<'_> {
    /// Publishes a tile result, signed with the job key when there is one.
    async fn publish(&self, mut result: TileResult) -> Result<(), WorkerError> {
        result.signature = wire::trust::sign_result(self.key, &result);
        let job = result.job_id.clone();
        let event = StitchEvent {
            event: Some(stitch_event::Event::Tile(result)),
        };
        let msg = Message {
            body: wire::encode(&event),
            headers: wire::headers(wire::types::STITCH_EVENT, &job),
        };
        self.broker.publish(wire::STITCH_QUEUE, msg).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A task the broker accepts must be one the worker decodes: one limit on both sides.
    #[test]
    fn the_broker_and_the_decoder_share_one_message_limit() {
        assert_eq!(broker::DEFAULT_MAX_MESSAGE_BYTES, wire::MAX_MESSAGE_BYTES);
    }
}
