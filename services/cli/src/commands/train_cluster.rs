//! The coordinator of training rounds (DESIGN.md §5). With `train --broker URL --workers N`
//! the cluster's `terrafill worker`s train the shards; without `--broker` the same code runs N
//! workers in this process on the in-process broker ([`Cluster::embedded`]).
//!
//! Each round publishes one `ShardTask` per shard that has no result yet, then waits until every
//! shard's result object exists (`train_keys::shard_result`). The objects are the truth: the
//! workers' `ShardResult` events on the training exchange only wake the coordinator early (and
//! carry failures), and a poll every few seconds covers events missed while it was down. A
//! restarted coordinator therefore republishes only the shards still missing, and a task
//! redelivered after a worker died is trained again to the same bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use broker::{Broker, Message};
use wire::v1::{ShardResult, ShardTask, TileOutcome, TrainJob};

use super::train::Reporter;
use super::train_rounds::Plan;
use crate::args::TrainArgs;
use crate::train_metrics::TrainMetrics;

/// How often missing shard results are looked for when no event arrives.
const POLL: Duration = Duration::from_secs(2);
/// How often an embedded run's progress bar follows its local workers' steps.
const LOCAL_POLL: Duration = Duration::from_millis(250);
/// A shard slower than this is warned about: RabbitMQ redelivers a task whose consumer has not
/// acked it within its `consumer_timeout` (30 minutes by default), so H must stay well below it.
const SLOW_SHARD: Duration = Duration::from_secs(600);

/// A training job on a cluster's workers.
pub struct Cluster {
    broker: Arc<dyn Broker>,
    key: Option<wire::JobKey>,
    job: TrainJob,
    local: Option<LocalWorkers>,
}

/// The workers of an embedded run and what stops them.
struct LocalWorkers {
    stop: telemetry::Shutdown,
    /// Cancelled when one of them stops on its own (an error): the round ends with it.
    failed: telemetry::Shutdown,
    error: Arc<Mutex<Option<String>>>,
    tasks: tokio::task::JoinSet<()>,
    /// The local workers' optimiser steps: the progress bar moves step by step.
    steps: prometheus::IntCounter,
}

impl Cluster {
    /// Connects to the broker at `url` and describes the job of `args` on the scenes `specs`
    /// to its workers.
    ///
    /// # Errors
    /// An unreachable broker, a malformed job key, or settings that do not serialise.
    pub async fn connect(
        url: &str,
        args: &TrainArgs,
        specs: &[String],
        tcfg: &model::TrainConfig,
        plan: &Plan,
    ) -> anyhow::Result<Self> {
        let broker = crate::embedded::connect(url).await?;
        let key = wire::JobKey::from_env()?;
        Self::new(broker, key, args, specs, tcfg, plan)
    }

    /// The in-process broker and `plan.shards` workers in this process on `args.device`
    /// (their metrics in `registry`), reading the scenes through `chunks`.
    ///
    /// # Errors
    /// As [`Cluster::connect`], and metrics already registered.
    pub async fn embedded(
        args: &TrainArgs,
        specs: &[String],
        tcfg: &model::TrainConfig,
        plan: &Plan,
        registry: &prometheus::Registry,
        chunks: Arc<zarr_io::ChunkCache>,
    ) -> anyhow::Result<Self> {
        let broker = broker::connect(None).await?;
        let metrics = worker::WorkerMetrics::register(registry)?;
        let cfg = worker::WorkerConfig {
            device: args.device.clone(),
            chunk_cache: Some(chunks),
            ..worker::WorkerConfig::default()
        };
        let local = LocalWorkers {
            stop: telemetry::Shutdown::new(),
            failed: telemetry::Shutdown::new(),
            error: Arc::new(Mutex::new(None)),
            tasks: tokio::task::JoinSet::new(),
            steps: metrics.train_steps.clone(),
        };
        let mut cluster = Self::new(broker.clone(), None, args, specs, tcfg, plan)?;
        let mut local = local;
        for _ in 0..plan.shards {
            let (b, m, c) = (broker.clone(), metrics.clone(), cfg.clone());
            let (stop, failed, error) = (
                local.stop.clone(),
                local.failed.clone(),
                local.error.clone(),
            );
            local.tasks.spawn(async move {
                let health = telemetry::Health::default();
                let why = match worker::run(&c, b, m, health, stop.clone()).await {
                    Err(e) => e.to_string(),
                    Ok(()) if stop.is_cancelled() => return,
                    Ok(()) => "it stopped".to_owned(),
                };
                if let Ok(mut slot) = error.lock() {
                    slot.get_or_insert(why);
                }
                failed.cancel();
            });
        }
        cluster.local = Some(local);
        Ok(cluster)
    }

    fn new(
        broker: Arc<dyn Broker>,
        key: Option<wire::JobKey>,
        args: &TrainArgs,
        specs: &[String],
        tcfg: &model::TrainConfig,
        plan: &Plan,
    ) -> anyhow::Result<Self> {
        let train_config_json = serde_json::to_string(tcfg)?;
        let mask_array = args.mask_array.clone().unwrap_or_default();
        let id = wire::JobId::derived(
            "train",
            &format!(
                "{}|{}|{}|{}|{}|{}|{}",
                specs.join("|"),
                args.array,
                mask_array,
                args.checkpoint,
                train_config_json,
                plan.shards,
                plan.inner_steps
            ),
        );
        let job = TrainJob {
            job_id: id.to_string(),
            scene_urls: specs.to_vec(),
            array: args.array.clone(),
            mask_array,
            checkpoint_url: args.checkpoint.clone(),
            train_config_json,
            shards: u32::try_from(plan.shards)?,
            inner_steps: u32::try_from(plan.inner_steps)?,
        };
        Ok(Self {
            broker,
            key,
            job,
            local: None,
        })
    }

    /// The job id (log lines, events).
    pub fn job_id(&self) -> &str {
        &self.job.job_id
    }

    /// Runs the round that starts from `version` on the cluster and returns the shards' results
    /// in shard order. `base` is the steps done before it, `total` the run's.
    ///
    /// # Errors
    /// A shard that failed on a worker (its error), store and broker failures.
    pub async fn round(
        &self,
        version: usize,
        report: &mut Reporter,
        metrics: &TrainMetrics,
        (base, total): (usize, usize),
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let shards = self.job.shards as usize;
        let h = self.job.inner_steps as usize;
        let checkpoint = &self.job.checkpoint_url;
        let urls: Vec<String> = (0..shards)
            .map(|s| wire::train_keys::shard_result(checkpoint, version, s))
            .collect();
        // Subscribed before publishing, so no report of this round is missed while running.
        broker::declare_all(&*self.broker, &wire::QUEUES).await?;
        let mut events = self.broker.subscribe_events(wire::TRAIN_EXCHANGE).await?;
        let mut results = vec![None; shards];
        fetch_missing(&urls, &mut results).await?;
        let idle = self.local.is_none()
            && self
                .broker
                .queue_consumers(wire::TRAIN_QUEUE)
                .await
                .unwrap_or(1)
                == 0;
        if idle {
            report.line(&format!(
                "no worker consumes {} yet: the shards wait for `terrafill worker --broker …`",
                wire::TRAIN_QUEUE
            ));
        }
        for (shard, _) in results.iter().enumerate().filter(|(_, r)| r.is_none()) {
            self.publish(version, shard).await?;
        }
        let local_steps = |l: &LocalWorkers| l.steps.get() as usize;
        let steps_before = self.local.as_ref().map(local_steps);
        let poll = if self.local.is_some() {
            LOCAL_POLL
        } else {
            POLL
        };
        loop {
            let done = results.iter().filter(|r| r.is_some()).count();
            // Local workers count their steps; a cluster's results are counted whole.
            let stepped = self.local.as_ref().map(local_steps).zip(steps_before);
            let in_round = stepped.map_or(done * h, |(now, before)| now - before);
            report.show(&model::TrainProgress {
                step: base + in_round.max(done * h).min(shards * h),
                steps: total,
                loss: f32::NAN,
            });
            if done == shards {
                return Ok(results.into_iter().flatten().collect());
            }
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else {
                        anyhow::bail!("the broker ended the subscription to {}", wire::TRAIN_EXCHANGE);
                    };
                    if let Some(r) = self.decode(&event?.body, version) {
                        metrics.shard_seconds.observe(r.seconds);
                        if r.seconds > SLOW_SHARD.as_secs_f64() {
                            report.line(&format!(
                                "shard {} took {:.0} s: keep a shard well below RabbitMQ's \
                                 consumer_timeout (30 min by default) with a smaller --inner-steps",
                                r.shard, r.seconds
                            ));
                        }
                        if r.outcome == TileOutcome::Failed as i32 {
                            anyhow::bail!(
                                "shard {} of round {} failed on a worker: {}",
                                r.shard,
                                version + 1,
                                r.error
                            );
                        }
                    }
                }
                () = tokio::time::sleep(poll) => {}
                () = self.local_failure() => {
                    let why = self.local.as_ref().and_then(|l| l.error.lock().ok()?.clone());
                    anyhow::bail!("a local worker stopped: {}", why.unwrap_or_default());
                }
            }
            fetch_missing(&urls, &mut results).await?;
        }
    }

    /// Publishes shard `shard`'s task of the round from `version`.
    async fn publish(&self, version: usize, shard: usize) -> anyhow::Result<()> {
        let task = ShardTask {
            job: Some(self.job.clone()),
            version: u32::try_from(version)?,
            shard: u32::try_from(shard)?,
            signature: wire::trust::sign_train(self.key.as_ref(), &self.job),
            published_unix_ms: wire::unix_ms_now(),
        };
        let msg = Message {
            body: wire::encode(&task),
            headers: wire::headers(wire::types::SHARD_TASK, &self.job.job_id),
        };
        self.broker
            .publish(wire::TRAIN_QUEUE, msg)
            .await
            .with_context(|| format!("publishing shard {shard} of round {}", version + 1))
    }

    /// A report of this job's round from `version`; `None` for anything else on the exchange.
    fn decode(&self, body: &[u8], version: usize) -> Option<ShardResult> {
        let r: ShardResult = wire::decode("ShardResult", body, wire::MAX_MESSAGE_BYTES).ok()?;
        (r.job_id == self.job.job_id && r.version as usize == version).then_some(r)
    }

    /// Resolves when a local worker stopped on its own; never without local workers.
    async fn local_failure(&self) {
        match &self.local {
            Some(local) => local.failed.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Stops the local workers (if any) and closes the broker connection.
    pub async fn close(mut self) {
        if let Some(mut local) = self.local.take() {
            local.stop.cancel();
            while local.tasks.join_next().await.is_some() {}
        }
        if let Err(error) = self.broker.close().await {
            tracing::warn!(%error, "closing the broker connection");
        }
    }
}

/// Reads every result in `urls` that `results` lacks and that exists now.
async fn fetch_missing(urls: &[String], results: &mut [Option<Vec<u8>>]) -> anyhow::Result<()> {
    for (url, slot) in urls.iter().zip(results.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        match zarr_io::get_bytes(url).await {
            Ok(bytes) => *slot = Some(bytes.to_vec()),
            Err(zarr_io::ZarrIoError::ObjectNotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("reading shard result {url}")),
        }
    }
    Ok(())
}
