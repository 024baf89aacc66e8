//! The terrafill coordinator: plans one job (tile grid, which tiles have gaps), stages the plan,
//! publishes tile tasks with a bounded number waiting, and waits for the stitcher to finish.
//! Re-running the same job resumes it: staged tiles are not published again.

mod error;
mod metrics;
mod plan;
mod request;
mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Message};
use telemetry::Shutdown;
use wire::v1::{stitch_event, JobStarted, JobState, JobStatus, StitchEvent, TileTask};
use wire::{staging_keys, JobId};
use zarr_io::Staging;

pub use error::CoordinatorError;
pub use metrics::CoordinatorMetrics;
pub use plan::PlannedJob;
pub use request::FillRequest;
use schedule::Schedule;

/// Coordinator settings (`[coordinator]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// Most tile tasks waiting in the queue at once (bounds broker memory).
    pub max_queued: u64,
    /// How often to look at the job's status while waiting, in milliseconds.
    pub poll_ms: u64,
    /// Re-announce the job to the stitcher after this long without progress (a restarted
    /// stitcher picks it up again), in seconds.
    pub reannounce_s: u64,
    /// The cluster's job key, which signs every job spec published or staged (from
    /// `TERRAFILL_JOB_KEY`, never from the config file).
    #[serde(skip)]
    pub job_key: Option<wire::JobKey>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            max_queued: 256,
            poll_ms: 100,
            reannounce_s: 15,
            job_key: None,
        }
    }
}

/// Plans and publishes a job; returns without waiting for it.
///
/// # Errors
/// [`CoordinatorError`] for invalid requests, unreadable input, storage or broker failures.
pub async fn submit(
    req: &FillRequest,
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
) -> Result<PlannedJob, CoordinatorError> {
    let started = Instant::now();
    let job = plan::plan(req, cfg.job_key.as_ref(), metrics).await?;
    if job.finished.is_some() {
        return Ok(job);
    }
    tracing::info!(
        job = %job.id,
        tiles = job.grid.len(),
        dirty = job.dirty.count(),
        seconds = started.elapsed().as_secs_f64(),
        "job planned"
    );
    broker::declare_all(&**broker, &wire::QUEUES).await?;
    announce(broker, &job).await?;
    let staged = staged_tiles(&job).await?;
    metrics
        .tiles_resumed
        .inc_by(job.dirty.iter().filter(|i| staged.contains(i)).count() as u64);
    let (ready, schedule) = Schedule::new(&job.grid, &job.dirty, job.spec.phased, &staged);
    publish(&job, &ready, cfg, broker, metrics).await?;
    let waiting = schedule.waiting();
    *job.schedule() = schedule;
    tracing::info!(job = %job.id, tiles = job.grid.len(), dirty = job.dirty.count(), waiting, "job published");
    Ok(job)
}

/// Publishes the tiles of a phased job whose neighbours are staged, until none waits.
///
/// # Errors
/// Storage and broker failures; [`CoordinatorError::Interrupted`] on shutdown.
pub async fn publish_waiting(
    job: &PlannedJob,
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
    shutdown: &Shutdown,
) -> Result<(), CoordinatorError> {
    let poll = Duration::from_millis(cfg.poll_ms.max(10));
    while publish_ready(job, cfg, broker, metrics).await? > 0 {
        tokio::select! {
            _ = shutdown.cancelled() => return Err(CoordinatorError::Interrupted { job: job.id.to_string() }),
            _ = tokio::time::sleep(poll) => {}
        }
    }
    Ok(())
}

/// Publishes the waiting tiles whose neighbours are now staged; returns how many still wait.
async fn publish_ready(
    job: &PlannedJob,
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
) -> Result<usize, CoordinatorError> {
    if job.schedule().waiting() == 0 {
        return Ok(0);
    }
    let staged = staged_tiles(job).await?;
    let ready = job.schedule().take_ready(&staged);
    publish(job, &ready, cfg, broker, metrics).await?;
    Ok(job.schedule().waiting())
}

/// The tiles of the job staged so far.
async fn staged_tiles(job: &PlannedJob) -> Result<HashSet<u64>, CoordinatorError> {
    Ok(job
        .staging
        .list(&staging_keys::tiles_prefix(&job.id))
        .await
        .map_err(CoordinatorError::storage("listing staged tiles"))?
        .iter()
        .filter_map(|k| staging_keys::tile_index(k))
        .collect())
}

/// Publishes a task for each of `tiles`, keeping at most `max_queued` in the queue.
async fn publish(
    job: &PlannedJob,
    tiles: &[u64],
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
) -> Result<(), CoordinatorError> {
    let mut room = 0;
    for &index in tiles {
        if room == 0 {
            room = wait_for_room(broker, cfg, metrics).await?;
        }
        room -= 1;
        let task = TileTask {
            job: Some(job.spec.clone()),
            tile_index: index,
            signature: job.signature.clone(),
            published_unix_ms: wire::unix_ms_now(),
        };
        let msg = Message {
            body: wire::encode(&task),
            headers: wire::headers(wire::types::TILE_TASK, job.id.as_str()),
        };
        broker.publish(wire::TILE_QUEUE, msg).await?;
        metrics.tiles_published.inc();
    }
    Ok(())
}

/// Plans, publishes and waits until the mosaic is complete, reporting progress.
///
/// # Errors
/// As [`submit`] and [`wait`].
pub async fn run(
    req: &FillRequest,
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
    shutdown: &Shutdown,
    progress: &mut dyn FnMut(&JobStatus),
) -> Result<JobStatus, CoordinatorError> {
    let job = submit(req, cfg, broker, metrics).await?;
    if let Some(status) = job.finished.clone() {
        progress(&status);
        return Ok(status);
    }
    wait(&job, cfg, broker, metrics, shutdown, progress).await
}

/// Waits for a published job to end.
///
/// # Errors
/// [`CoordinatorError::JobFailed`] when it fails, [`CoordinatorError::Interrupted`] on shutdown.
pub async fn wait(
    job: &PlannedJob,
    cfg: &CoordinatorConfig,
    broker: &Arc<dyn Broker>,
    metrics: &CoordinatorMetrics,
    shutdown: &Shutdown,
    progress: &mut dyn FnMut(&JobStatus),
) -> Result<JobStatus, CoordinatorError> {
    let poll = Duration::from_millis(cfg.poll_ms.max(10));
    let mut last_change = Instant::now();
    let mut last_written = u64::MAX;
    loop {
        publish_ready(job, cfg, broker, metrics).await?;
        if let Some(status) = read_status(&job.staging, &job.id).await? {
            metrics.progress.set(stitcher_ratio(&status));
            progress(&status);
            match status.state() {
                JobState::Succeeded => return Ok(status),
                JobState::Failed => {
                    return Err(CoordinatorError::JobFailed {
                        job: job.id.to_string(),
                        reason: status.error,
                    })
                }
                _ => {}
            }
            if status.chunks_written != last_written {
                last_written = status.chunks_written;
                last_change = Instant::now();
            }
        }
        if last_change.elapsed() >= Duration::from_secs(cfg.reannounce_s.max(1)) {
            match announce(broker, job).await {
                // The broker is away: the job's state is in staging, so keep waiting.
                Err(CoordinatorError::Broker(error)) if error.is_retryable() => {
                    tracing::warn!(job = %job.id, %error, "cannot re-announce the job; still waiting");
                }
                other => other?,
            }
            last_change = Instant::now();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(CoordinatorError::Interrupted { job: job.id.to_string() }),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// The job's staged status, if any: its end when a stitcher recorded one, else its latest
/// progress.
///
/// # Errors
/// [`CoordinatorError`] when staging cannot be read or holds garbage.
pub async fn read_status(
    staging: &Staging,
    id: &JobId,
) -> Result<Option<JobStatus>, CoordinatorError> {
    for key in [staging_keys::status(id), staging_keys::progress(id)] {
        let bytes = staging
            .get(&key)
            .await
            .map_err(CoordinatorError::storage(format!(
                "reading status of job {id}"
            )))?;
        if let Some(bytes) = bytes {
            return Ok(Some(wire::decode::<JobStatus>(
                "JobStatus",
                &bytes,
                usize::MAX,
            )?));
        }
    }
    Ok(None)
}

fn stitcher_ratio(status: &JobStatus) -> f64 {
    if status.chunks_total == 0 {
        0.0
    } else {
        status.chunks_written as f64 / status.chunks_total as f64
    }
}

/// Tells the stitcher about the job (idempotent).
async fn announce(broker: &Arc<dyn Broker>, job: &PlannedJob) -> Result<(), CoordinatorError> {
    let started = JobStarted {
        job: Some(job.spec.clone()),
        signature: job.signature.clone(),
    };
    let event = StitchEvent {
        event: Some(stitch_event::Event::Started(started)),
    };
    let msg = Message {
        body: wire::encode(&event),
        headers: wire::headers(wire::types::STITCH_EVENT, job.id.as_str()),
    };
    broker.publish(wire::STITCH_QUEUE, msg).await?;
    Ok(())
}

/// Blocks while the tile queue holds `max_queued` tasks or more; returns how many more fit.
async fn wait_for_room(
    broker: &Arc<dyn Broker>,
    cfg: &CoordinatorConfig,
    metrics: &CoordinatorMetrics,
) -> Result<u64, CoordinatorError> {
    let limit = cfg.max_queued.max(1);
    loop {
        let depth = broker.queue_depth(wire::TILE_QUEUE).await?;
        metrics.queue_in_flight.set(depth as i64);
        if depth < limit {
            return Ok(limit - depth);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
