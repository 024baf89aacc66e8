//! `status`: a job's staged status, or its live progress events on the broker.

use std::time::Duration;

use anyhow::Context;
use wire::v1::JobStatus;

use crate::args::StatusArgs;

pub async fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let id = wire::JobId::parse(&args.job_id)?;
    let staging = match (&args.staging, &args.output) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(out)) => Some(format!("{}.staging", out.trim_end_matches('/'))),
        (None, None) => None,
    };
    let status = match (staging, &args.broker) {
        (Some(url), _) => {
            let staging = zarr_io::Staging::open(&url)?;
            coordinator::read_status(&staging, &id)
                .await?
                .with_context(|| format!("no status for job {id} in {url}"))?
        }
        (None, Some(broker)) => listen(broker, &id, Duration::from_secs(args.wait)).await?,
        (None, None) => anyhow::bail!("give --output (or --staging) or --broker"),
    };
    println!("{}", to_json(&status));
    Ok(())
}

async fn listen(url: &str, id: &wire::JobId, wait: Duration) -> anyhow::Result<JobStatus> {
    let broker = crate::embedded::connect(url).await?;
    let mut events = broker.subscribe_events(wire::STATUS_EXCHANGE).await?;
    let found = tokio::time::timeout(wait, async {
        while let Some(delivery) = events.next().await {
            let delivery = delivery?;
            let status: Result<JobStatus, _> =
                wire::decode("JobStatus", &delivery.body, wire::MAX_MESSAGE_BYTES);
            delivery.ack().await?;
            match status {
                Ok(status) if status.job_id == id.as_str() => return Ok(status),
                _ => {}
            }
        }
        anyhow::bail!("the broker closed the status subscription")
    })
    .await;
    found.with_context(|| format!("no progress event for job {id} within {wait:?}"))?
}

fn to_json(s: &JobStatus) -> serde_json::Value {
    serde_json::json!({
        "job_id": s.job_id,
        "state": s.state().as_str_name().trim_start_matches("JOB_STATE_").to_lowercase(),
        "chunks_written": s.chunks_written,
        "chunks_total": s.chunks_total,
        "tiles_done": s.tiles_done,
        "tiles_dirty": s.tiles_dirty,
        "error": s.error,
        "output": s.output_url,
    })
}
