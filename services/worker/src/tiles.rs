//! Tile tasks (`terrafill.v1.TileTask`): a batch of deliveries grouped by job, computed with the
//! job's method, each output staged durably and its result published (confirmed) to the
//! stitcher before the task is acked through the shared [`crate::settle`] path.

use std::sync::Arc;

use broker::{Broker, Delivery, Message};
use wire::v1::{stitch_event, StitchEvent, TileOutcome, TileOutput, TileResult, TileTask};

use crate::{methods, settle, JobCache, JobContext, WorkerError, WorkerMetrics};

struct Task {
    delivery: Delivery,
    task: TileTask,
}

pub(crate) async fn handle_batch(
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
            return fail_group(
                group,
                &error,
                &spec.staging_url,
                results,
                metrics,
                "unknown",
            )
            .await;
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
            fail_group(group, &error, &spec.staging_url, results, metrics, &method).await;
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

/// Settles every task of `group` with the one `error` they share.
async fn fail_group(
    group: Vec<Task>,
    error: &WorkerError,
    staging_url: &str,
    results: &Results<'_>,
    metrics: &WorkerMetrics,
    method: &str,
) {
    for t in group {
        settle_tile(t, Some(error), staging_url, results, metrics, method).await;
    }
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
pub(crate) struct Results<'a> {
    pub(crate) broker: &'a Arc<dyn Broker>,
    pub(crate) key: Option<&'a wire::JobKey>,
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
