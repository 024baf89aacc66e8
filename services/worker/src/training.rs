//! Training shard tasks (`terrafill.v1.ShardTask`, DESIGN.md §5): train H steps of one shard
//! from a checkpoint version, write the result next to the run's checkpoint, report it on the
//! training exchange, then ack (through the shared [`crate::settle`] path).
//!
//! A shard's result depends only on (version, shard, the job's settings, the scene): a
//! redelivered task finds its result already written and reports it again without training.

use std::sync::Arc;
use std::time::Instant;

use broker::{Broker, Delivery, Message};
use wire::v1::{ShardResult, ShardTask, TileOutcome, TrainJob};
use zarr_io::ChunkCache;

use crate::corpus::{open_corpus, CorpusError};
use crate::settle::{self, Settled};
use crate::{WorkerError, WorkerMetrics};

/// Trains the shard tasks one worker takes; keeps the last job's corpus (the shards of one job
/// read the same scenes every round, so its scan is made once), whose windows are read through
/// the worker's chunk cache.
pub(crate) struct Trainer {
    broker: Arc<dyn Broker>,
    key: Option<wire::JobKey>,
    device: model::DeviceSpec,
    chunks: Arc<ChunkCache>,
    corpus: Option<(String, Arc<model::Corpus>)>,
}

impl Trainer {
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        key: Option<wire::JobKey>,
        device: model::DeviceSpec,
        chunks: Arc<ChunkCache>,
    ) -> Self {
        Self {
            broker,
            key,
            device,
            chunks,
            corpus: None,
        }
    }

    /// Handles one delivery of the training queue, start to settlement.
    pub(crate) async fn handle(&mut self, delivery: Delivery, metrics: &WorkerMetrics) {
        let task = match decode(&delivery, self.key.as_ref()) {
            Ok(task) => task,
            Err(error) => return settle::reject(delivery, &error, metrics).await,
        };
        let job = task.job.clone().unwrap_or_default();
        let name = format!(
            "shard {} of round {} of training job {}",
            task.shard,
            task.version + 1,
            job.job_id
        );
        let started = Instant::now();
        let outcome = self.train(&job, &task, metrics).await;
        let seconds = started.elapsed().as_secs_f64();
        let outcome = match outcome {
            Ok(url) => {
                metrics.shard_seconds.observe(seconds);
                let done = report(&job, &task, Ok(url), seconds);
                self.publish(done).await
            }
            Err(error) => Err(error),
        };
        let settled = settle::settle(delivery, outcome.as_ref().err(), &name, metrics, |error| {
            self.publish(report(&job, &task, Err(error), seconds))
        })
        .await;
        metrics.shards.with_label_values(&[settled.label()]).inc();
        if settled == Settled::Done {
            tracing::info!(task = %name, seconds, "shard trained");
        }
    }

    /// Trains the shard unless its result exists; returns the result's URL.
    async fn train(
        &mut self,
        job: &TrainJob,
        task: &ShardTask,
        metrics: &WorkerMetrics,
    ) -> Result<String, WorkerError> {
        let (version, shard) = (task.version as usize, task.shard as usize);
        let out = wire::train_keys::shard_result(&job.checkpoint_url, version, shard);
        let storage = |source| WorkerError::Storage {
            job: job.job_id.clone(),
            tile: None,
            source,
        };
        if zarr_io::object_exists(&out).await.map_err(storage)? {
            return Ok(out);
        }
        let bad = |reason: String| WorkerError::Method {
            job: job.job_id.clone(),
            tile: None,
            reason,
        };
        let cfg: model::TrainConfig = serde_json::from_str(&job.train_config_json)
            .map_err(|e| bad(format!("its training settings do not decode: {e}")))?;
        let version_url = wire::train_keys::version(&job.checkpoint_url, version);
        let parent = zarr_io::get_bytes(&version_url).await.map_err(storage)?;
        let corpus = match self.corpus(job).await {
            Ok(corpus) => corpus,
            Err(CorpusError::Store(e)) => return Err(storage(e)),
            Err(e) => return Err(bad(e.to_string())),
        };
        let device = self
            .device
            .device()
            .map_err(|e| bad(format!("device: {e}")))?;
        let shard_task = model::rounds::ShardTask {
            shard,
            shards: job.shards as usize,
            inner_steps: job.inner_steps as usize,
        };
        let steps = metrics.train_steps.clone();
        let result = tokio::task::spawn_blocking(move || {
            model::rounds::train_shard(&corpus, &cfg, &parent, &shard_task, &device, &mut |_| {
                steps.inc();
            })
        })
        .await?
        .map_err(|e| bad(format!("shard {shard} from {version_url}: {e}")))?;
        zarr_io::put_bytes(&out, result.into())
            .await
            .map_err(storage)?;
        Ok(out)
    }

    /// The job's corpus, opened once per job.
    async fn corpus(&mut self, job: &TrainJob) -> Result<Arc<model::Corpus>, CorpusError> {
        if let Some((id, corpus)) = &self.corpus {
            if *id == job.job_id {
                return Ok(corpus.clone());
            }
        }
        let mask = (!job.mask_array.is_empty()).then_some(job.mask_array.as_str());
        let corpus = Arc::new(
            open_corpus(
                &job.scene_urls,
                &job.array,
                mask,
                self.chunks.clone(),
                &job.job_id,
            )
            .await?,
        );
        self.corpus = Some((job.job_id.clone(), corpus.clone()));
        Ok(corpus)
    }

    /// Publishes a shard report on the training exchange.
    async fn publish(&self, result: ShardResult) -> Result<(), WorkerError> {
        let msg = Message {
            body: wire::encode(&result),
            headers: wire::headers(wire::types::SHARD_RESULT, &result.job_id),
        };
        self.broker.publish_event(wire::TRAIN_EXCHANGE, msg).await?;
        Ok(())
    }
}

/// The task in `delivery`, if it decodes and (with a job key) its job is signed with that key.
fn decode(delivery: &Delivery, key: Option<&wire::JobKey>) -> Result<ShardTask, wire::WireError> {
    let task: ShardTask = wire::decode("ShardTask", &delivery.body, wire::MAX_MESSAGE_BYTES)?;
    let Some(job) = &task.job else {
        return Err(wire::WireError::MissingField {
            what: "ShardTask",
            field: "job",
        });
    };
    wire::JobId::parse(&job.job_id)?;
    wire::trust::verify_train(key, job, &task.signature)?;
    Ok(task)
}

/// The report of `task`: done with its result URL, or failed with the error.
fn report(
    job: &TrainJob,
    task: &ShardTask,
    outcome: Result<String, &WorkerError>,
    seconds: f64,
) -> ShardResult {
    let (outcome, error, result_url) = match outcome {
        Ok(url) => (TileOutcome::Done, String::new(), url),
        Err(e) => (TileOutcome::Failed, e.to_string(), String::new()),
    };
    ShardResult {
        job_id: job.job_id.clone(),
        version: task.version,
        shard: task.shard,
        outcome: outcome as i32,
        error,
        result_url,
        seconds,
    }
}
