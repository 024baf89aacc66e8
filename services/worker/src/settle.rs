//! The one ack-late path every kind of task goes through (DESIGN.md §6): a task is acked only
//! after its outcome is durable and reported; a retryable failure goes back to the queue while
//! the delivery limit allows; any other failure is reported (so the job ends visibly) and then
//! acked.

use std::future::Future;

use broker::{Delivery, QueueSpec};

use crate::{WorkerError, WorkerMetrics};

/// How a task was settled: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Its output is durable and reported; acked.
    Done,
    /// Requeued for another attempt.
    Retried,
    /// Reported as failed; acked.
    Failed,
}

impl Settled {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retried => "retried",
            Self::Failed => "failed",
        }
    }
}

/// Settles `delivery` after its task ended, with `failure` or (`None`) done and reported.
/// `report_failure` publishes a final failure; it is called only for one. `task` names the task
/// in log lines ("tile 7 of job j").
pub(crate) async fn settle<F, Fut>(
    delivery: Delivery,
    failure: Option<&WorkerError>,
    task: &str,
    metrics: &WorkerMetrics,
    report_failure: F,
) -> Settled
where
    F: FnOnce(&WorkerError) -> Fut,
    Fut: Future<Output = Result<(), WorkerError>>,
{
    let Some(error) = failure else {
        if let Err(error) = delivery.ack().await {
            tracing::warn!(task, %error, "ack failed; the task will be redelivered and recomputed identically");
        }
        return Settled::Done;
    };
    metrics.errors.with_label_values(&[error.cause()]).inc();
    let attempts_left = delivery.delivery_count + 1 < QueueSpec::default().delivery_limit;
    if error.is_retryable() && attempts_left {
        tracing::warn!(task, %error, "task failed; retrying");
        if let Err(error) = delivery.retry().await {
            tracing::warn!(%error, "requeue failed");
        }
        return Settled::Retried;
    }
    tracing::error!(task, %error, "task failed");
    match report_failure(error).await {
        Ok(()) => {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, "ack failed");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot report the failure; requeueing");
            let _ = delivery.retry().await;
        }
    }
    Settled::Failed
}

/// Dead-letters a message that is not a task this worker accepts (undecodable, or unsigned with
/// a job key): no attempt can succeed, and it must not block the queue.
pub(crate) async fn reject(delivery: Delivery, error: &wire::WireError, metrics: &WorkerMetrics) {
    tracing::warn!(queue = delivery.queue(), %error, "undecodable or untrusted task: dead-lettering it");
    metrics.dead_lettered.inc();
    if let Err(error) = delivery.dead_letter().await {
        tracing::warn!(%error, "dead-lettering failed");
    }
}
