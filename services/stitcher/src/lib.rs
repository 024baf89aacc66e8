//! The terrafill stitcher: consumes tile results, writes each output chunk once — when every
//! tile touching it is in — by blending the staged tile outputs in tile-index order, and
//! finalizes the mosaic. Its state is rebuilt from staging on start, so it can crash at any time.
//!
//! Any number of stitchers may share the results queue: the broker hands each result to one of
//! them, and staging (not a stitcher's own deliveries) says which tiles are in and which chunks
//! are written, so every chunk is written as soon as its last tile is staged, by whichever
//! stitcher sees that first, and a killed stitcher's unacknowledged results go to the others.
//! When the queue goes quiet, each stitcher catches up with staging (with back-off), which
//! finishes chunks and jobs whose last results another stitcher took.

mod error;
mod job;
mod metrics;
mod seams;
mod tile_cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time on the queue before a stitcher first catches up with staging, and the most it
/// waits between catch-ups that find nothing new.
const RESYNC_AFTER: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(60));

use broker::{Broker, Delivery, Message};
use telemetry::{Health, Shutdown};
use wire::v1::{stitch_event::Event, JobState, JobStatus, StitchEvent, TileOutcome};

pub use error::StitcherError;
pub use job::{ChunkShare, Loaded, StitchJob};
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
    /// Decoded input chunks shared with the workers of this process (embedded runs), so that
    /// copying a chunk's observed pixels decodes nothing again; `None`: no cache (each chunk is
    /// read once).
    #[serde(skip)]
    pub chunk_cache: Option<Arc<zarr_io::ChunkCache>>,
}

impl Default for StitcherConfig {
    fn default() -> Self {
        Self {
            prefetch: 64,
            status_interval_ms: 500,
            job_key: None,
            chunk_cache: None,
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
    broker::declare_all(&*broker, &wire::QUEUES).await?;
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
        me: random_u64(),
        peers: Peers::default(),
        chunks: cfg.chunk_cache.clone(),
    };
    // Stitchers that go quiet together catch up at different moments, so that one of them
    // usually finalizes a shared job before the others look.
    let first = RESYNC_AFTER.0.mul_f64(1.0 + jitter());
    let mut quiet = first;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = events.next() => Some(next),
            () = tokio::time::sleep(quiet), if !stitcher.jobs.is_empty() => None,
        };
        let Some(next) = next else {
            quiet = if stitcher.resync_all().await {
                first
            } else {
                (quiet * 2).min(RESYNC_AFTER.1)
            };
            continue;
        };
        let Some(delivery) = next else { break };
        // The events already delivered are handled together: the chunks they make ready are
        // written at once (in parallel, with one sync), and behind a backlog the batches grow.
        let mut batch = vec![delivery?];
        while batch.len() < usize::from(cfg.prefetch.max(1)) {
            match tokio::time::timeout(Duration::ZERO, events.next()).await {
                Ok(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        stitcher.handle_batch(batch).await?;
    }
    health.set_ready(false);
    Ok(())
}

/// A number that differs between processes and between stitchers of one process.
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// A number in [0, 1) that differs between processes and stitchers.
fn jitter() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
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
    /// This stitcher's id in chunk claims.
    me: u64,
    peers: Peers,
    chunks: Option<Arc<zarr_io::ChunkCache>>,
}

/// Whether other stitchers share the results queue, as last asked of the broker.
#[derive(Default)]
struct Peers {
    shared: bool,
    asked: Option<Instant>,
}

/// How often a stitcher asks the broker how many stitchers share the results queue.
const PEERS_EVERY: Duration = Duration::from_secs(2);

/// What handling an event leaves for the end of its batch.
enum Handled {
    /// Nothing: the event can be settled.
    Done,
    /// Write the chunks `ready` of job `job` and report its progress, then settle the event.
    Progress { job: String, ready: Vec<u64> },
}

/// Settles a delivery whose event failed with `error`: retried when that may help, else acked
/// (the error is logged by the caller).
async fn settle_failed(
    delivery: Delivery,
    error: &StitcherError,
) -> Result<(), broker::BrokerError> {
    if error.is_retryable() {
        settled(delivery.retry().await)
    } else {
        settled(delivery.ack().await)
    }
}

fn log_failure(error: &StitcherError) {
    if error.is_retryable() {
        tracing::warn!(%error, "stitcher event failed; retrying");
    } else {
        tracing::error!(%error, "stitcher event failed permanently");
    }
}

impl Stitcher {
    /// Handles a batch of deliveries: each event's bookkeeping in order, then per job the chunks
    /// they made ready and its progress; each delivery is settled once its part is done.
    async fn handle_batch(&mut self, batch: Vec<Delivery>) -> Result<(), StitcherError> {
        let mut pending: Vec<(String, Vec<u64>, Vec<Delivery>)> = Vec::new();
        for delivery in batch {
            let event: Result<StitchEvent, _> =
                wire::decode("StitchEvent", &delivery.body, wire::MAX_MESSAGE_BYTES);
            let Ok(StitchEvent { event: Some(event) }) = event else {
                tracing::warn!("undecodable stitcher event: dead-lettering it");
                self.metrics.dead_lettered.inc();
                settled(delivery.dead_letter().await)?;
                continue;
            };
            match self.handle(event).await {
                Ok(Handled::Done) => settled(delivery.ack().await)?,
                Ok(Handled::Progress { job, ready }) => {
                    match pending.iter_mut().find(|(j, _, _)| *j == job) {
                        Some((_, chunks, deliveries)) => {
                            chunks.extend(ready);
                            deliveries.push(delivery);
                        }
                        None => pending.push((job, ready, vec![delivery])),
                    }
                }
                Err(error) => {
                    log_failure(&error);
                    settle_failed(delivery, &error).await?;
                }
            }
        }
        for (job, ready, deliveries) in pending {
            let outcome = self.progress(&job, ready).await;
            if let Err(error) = &outcome {
                log_failure(error);
            }
            for delivery in deliveries {
                match &outcome {
                    Ok(()) => settled(delivery.ack().await)?,
                    Err(error) => settle_failed(delivery, error).await?,
                }
            }
        }
        Ok(())
    }

    async fn handle(&mut self, event: Event) -> Result<Handled, StitcherError> {
        match event {
            Event::Started(started) => {
                let Some(spec) = started.job else {
                    return Ok(Handled::Done);
                };
                if let Err(source) =
                    wire::trust::verify(self.key.as_ref(), &spec, &started.signature)
                {
                    tracing::warn!(error = %source, "ignoring an untrusted job announcement");
                    self.metrics.dead_lettered.inc();
                    return Ok(Handled::Done);
                }
                if self.jobs.contains_key(&spec.job_id) {
                    // A re-announcement: the coordinator saw no progress for a while.
                    self.resync(&spec.job_id).await?;
                    return Ok(Handled::Done);
                }
                self.ensure_loaded(&spec.staging_url, &spec.job_id).await?;
                self.progress(&spec.job_id, Vec::new()).await?;
                Ok(Handled::Done)
            }
            Event::Tile(result) => {
                if let Err(source) = wire::trust::verify_result(self.key.as_ref(), &result) {
                    tracing::warn!(error = %source, tile = result.tile_index, "ignoring an untrusted tile result");
                    self.metrics.dead_lettered.inc();
                    return Ok(Handled::Done);
                }
                if !self
                    .ensure_loaded(&result.staging_url, &result.job_id)
                    .await?
                {
                    self.metrics
                        .tile_results
                        .with_label_values(&["duplicate"])
                        .inc();
                    return Ok(Handled::Done);
                }
                if result.outcome() != TileOutcome::Done {
                    self.metrics
                        .tile_results
                        .with_label_values(&["failed"])
                        .inc();
                    let reason = format!("tile {} failed: {}", result.tile_index, result.error);
                    self.fail(&result.job_id, reason).await?;
                    return Ok(Handled::Done);
                }
                self.metrics.tile_results.with_label_values(&["done"]).inc();
                if let Some(latency) = wire::seconds_since_unix_ms(result.task_published_unix_ms) {
                    self.metrics.tile_latency_seconds.observe(latency);
                }
                let ready = match self.jobs.get_mut(&result.job_id) {
                    Some(a) => a.job.tile_done(result.tile_index),
                    None => Vec::new(),
                };
                Ok(Handled::Progress {
                    job: result.job_id,
                    ready,
                })
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
        match StitchJob::load(
            staging_url,
            job_id,
            self.key.as_ref(),
            self.me,
            self.chunks.clone(),
        )
        .await?
        {
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

    /// Catches up every job with staging; whether anything changed.
    async fn resync_all(&mut self) -> bool {
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        let mut changed = false;
        for id in ids {
            let before = self.jobs.get(&id).map(|a| a.job.written_chunks());
            match self.resync(&id).await {
                Ok(()) => {}
                Err(error) => tracing::warn!(job = %id, %error, "cannot catch up with staging"),
            }
            changed |= self.jobs.get(&id).map(|a| a.job.written_chunks()) != before;
        }
        changed
    }

    /// Catches job `job_id` up with what other stitchers did: forgets it when it ended,
    /// otherwise writes the chunks that became ready and finalizes it when complete.
    async fn resync(&mut self, job_id: &str) -> Result<(), StitcherError> {
        let shared = self.shared().await;
        let Some(active) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        match active.job.resync(shared, &self.metrics).await {
            Ok(Some(status)) => {
                tracing::info!(job = %job_id, state = ?status.state(), "job ended at another stitcher");
                self.forget(job_id);
                Ok(())
            }
            Ok(None) => self.progress(job_id, Vec::new()).await,
            Err(error) => self.unless_ended(job_id, error).await,
        }
    }

    /// Whether other stitchers consume the results queue (asked of the broker at most every
    /// [`PEERS_EVERY`]; when the broker cannot say, assume they do, which is always safe).
    async fn shared(&mut self) -> bool {
        if self.peers.asked.is_none_or(|t| t.elapsed() >= PEERS_EVERY) {
            self.peers.shared = self
                .broker
                .queue_consumers(wire::STITCH_QUEUE)
                .await
                .map_or(true, |n| n > 1);
            self.peers.asked = Some(Instant::now());
        }
        self.peers.shared
    }

    /// Writes those of `chunks` that are ready.
    async fn write(&mut self, job_id: &str, chunks: Vec<u64>) -> Result<(), StitcherError> {
        let shared = self.shared().await;
        let Some(active) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        match active.job.write_ready(chunks, shared, &self.metrics).await {
            Ok(()) => Ok(()),
            Err(error) => self.unless_ended(job_id, error).await,
        }
    }

    /// `error` hit job `job_id`; when another stitcher has ended the job meanwhile (and dropped
    /// its staged tiles), that explains it: the job is forgotten. Otherwise the error stands.
    async fn unless_ended(
        &mut self,
        job_id: &str,
        error: StitcherError,
    ) -> Result<(), StitcherError> {
        let ended = match self.jobs.get(job_id) {
            Some(active) => active.job.ended().await.ok().flatten(),
            None => None,
        };
        if ended.is_some() {
            tracing::info!(job = %job_id, %error, "job ended at another stitcher");
            self.forget(job_id);
            return Ok(());
        }
        Err(error)
    }

    fn forget(&mut self, job_id: &str) {
        if let Some(active) = self.jobs.remove(job_id) {
            let share = active.job.share();
            tracing::info!(job = %job_id, chunks_written = share.wrote, chunks_found_written = share.skipped, "done with the job");
        }
        if self.jobs.is_empty() {
            self.metrics.progress.set(1.0);
        }
    }

    /// Writes `ready` chunks, then publishes progress (throttled) or finalizes.
    async fn progress(&mut self, job_id: &str, ready: Vec<u64>) -> Result<(), StitcherError> {
        self.write(job_id, ready).await?;
        let Some(active) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if active.job.is_complete() {
            if active.job.ended().await?.is_some() {
                // Another stitcher wrote the last chunk too and finalized first.
                self.forget(job_id);
                return Ok(());
            }
            let status = active.job.finalize().await?;
            self.forget(job_id);
            self.metrics.jobs.with_label_values(&["succeeded"]).inc();
            self.metrics
                .last_success
                .set(wire::unix_ms_now() as f64 / 1e3);
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
        // Nothing left in progress: an idle stitcher is not a stalled one.
        self.forget(job_id);
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
