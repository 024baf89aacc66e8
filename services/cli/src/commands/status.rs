//! `status`: a job's staged status, or its live progress events on the broker.

use std::time::Duration;

use anyhow::Context;
use wire::v1::{JobState, JobStatus};

use crate::args::StatusArgs;

pub async fn status(args: &StatusArgs) -> anyhow::Result<()> {
    if args.list {
        return list(args).await;
    }
    if let Some(checkpoint) = &args.checkpoint {
        let status = super::status_train::status(checkpoint).await?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let job_id = args.job_id.as_deref().context("give a JOB_ID, or --list")?;
    let id = wire::JobId::parse(job_id)?;
    let status = match (staging_url(args), &args.broker) {
        (Some(url), _) => {
            let staging = zarr_io::Staging::open(&url)?;
            coordinator::read_status(&staging, &id)
                .await?
                .with_context(|| format!("no status for job {id} in {url}"))?
        }
        (None, Some(broker)) => listen(broker, &id, Duration::from_secs(args.wait)).await?,
        (None, None) => anyhow::bail!("give --output (or --staging) or --broker"),
    };
    let report = Report::new(
        &status,
        wire::unix_ms_now(),
        Duration::from_secs(args.stale_after),
    );
    if report.stale {
        tracing::warn!(
            job = %id,
            seconds_since_update = report.seconds_since_update,
            "the job is running but has recorded no progress for longer than --stale-after: \
             its stitcher, workers or coordinator may be down"
        );
    }
    println!("{}", report.to_json(&status));
    Ok(())
}

/// The staging location `--staging` names, or `--output`'s.
fn staging_url(args: &StatusArgs) -> Option<String> {
    match (&args.staging, &args.output) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(out)) => Some(format!("{}.staging", out.trim_end_matches('/'))),
        (None, None) => None,
    }
}

/// `status --list`: every job staged at the location, as a JSON array (a job with a plan but no
/// status yet is `planned`).
async fn list(args: &StatusArgs) -> anyhow::Result<()> {
    let url = staging_url(args).context("--list needs --output or --staging")?;
    let staging = zarr_io::Staging::open(&url)?;
    let now = wire::unix_ms_now();
    let mut rows = Vec::new();
    for name in staging.top_level().await? {
        let Ok(id) = wire::JobId::parse(&name) else {
            continue;
        };
        if !staging.exists(&wire::staging_keys::plan(&id)).await? {
            continue;
        }
        rows.push(match coordinator::read_status(&staging, &id).await? {
            Some(status) => {
                Report::new(&status, now, Duration::from_secs(args.stale_after)).to_json(&status)
            }
            None => serde_json::json!({"job_id": id.as_str(), "state": "planned"}),
        });
    }
    println!("{}", serde_json::to_string_pretty(&rows)?);
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

/// What `status` derives from a job status at a moment: progress, rate, ETA and staleness.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    percent: f64,
    elapsed_seconds: Option<f64>,
    tiles_per_second: Option<f64>,
    eta_seconds: Option<f64>,
    seconds_since_update: Option<f64>,
    stale: bool,
}

impl Report {
    fn new(s: &JobStatus, now_ms: u64, stale_after: Duration) -> Self {
        let running = s.state() == JobState::Running;
        let percent = if s.state() == JobState::Succeeded {
            100.0
        } else if s.tiles_dirty > 0 {
            100.0 * s.tiles_done as f64 / s.tiles_dirty as f64
        } else {
            0.0
        };
        let known = |t: u64| (t > 0).then_some(t);
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1000.0;
        let elapsed = known(s.started_unix_ms)
            .zip(known(s.updated_unix_ms))
            .map(|(a, b)| seconds(a, b));
        let rate = elapsed
            .filter(|&e| e > 0.0 && s.tiles_done > 0)
            .map(|e| s.tiles_done as f64 / e);
        let eta = rate
            .filter(|_| running)
            .map(|r| s.tiles_dirty.saturating_sub(s.tiles_done) as f64 / r);
        let since = known(s.updated_unix_ms).map(|u| seconds(u, now_ms));
        Self {
            percent,
            elapsed_seconds: elapsed,
            tiles_per_second: rate,
            eta_seconds: eta,
            seconds_since_update: since,
            stale: running && since.is_some_and(|t| t > stale_after.as_secs_f64()),
        }
    }

    fn to_json(&self, s: &JobStatus) -> serde_json::Value {
        let time = |ms: u64| {
            (ms > 0).then(|| {
                let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(t).to_string()
            })
        };
        let round = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
        serde_json::json!({
            "job_id": s.job_id,
            "state": s.state().as_str_name().trim_start_matches("JOB_STATE_").to_lowercase(),
            "percent": round(Some(self.percent)),
            "chunks_written": s.chunks_written,
            "chunks_total": s.chunks_total,
            "tiles_done": s.tiles_done,
            "tiles_dirty": s.tiles_dirty,
            "started": time(s.started_unix_ms),
            "updated": time(s.updated_unix_ms),
            "elapsed_seconds": round(self.elapsed_seconds),
            "tiles_per_second": round(self.tiles_per_second),
            "eta_seconds": round(self.eta_seconds),
            "seconds_since_update": round(self.seconds_since_update),
            "stale": self.stale,
            "error": s.error,
            "output": s.output_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(done: u64, dirty: u64, started: u64, updated: u64) -> JobStatus {
        JobStatus {
            job_id: "job-1".into(),
            state: JobState::Running as i32,
            tiles_done: done,
            tiles_dirty: dirty,
            started_unix_ms: started,
            updated_unix_ms: updated,
            ..JobStatus::default()
        }
    }

    #[test]
    fn progress_rate_and_eta_come_from_the_timestamps() {
        // 30 of 120 tiles in 60 s: 25 %, 0.5 tiles/s, 180 s to go; updated 10 s ago.
        let s = running(30, 120, 1_000_000, 1_060_000);
        let r = Report::new(&s, 1_070_000, Duration::from_secs(300));
        assert_eq!(r.percent, 25.0);
        assert_eq!(r.tiles_per_second, Some(0.5));
        assert_eq!(r.eta_seconds, Some(180.0));
        assert_eq!(r.seconds_since_update, Some(10.0));
        assert!(!r.stale);
        let json = r.to_json(&s);
        assert_eq!(json["started"], "1970-01-01T00:16:40Z");
    }

    #[test]
    fn a_running_job_without_updates_is_stale_and_an_ended_one_never() {
        let s = running(30, 120, 1_000_000, 1_060_000);
        assert!(Report::new(&s, 1_060_000 + 301_000, Duration::from_secs(300)).stale);
        let done = JobStatus {
            state: JobState::Succeeded as i32,
            ..s.clone()
        };
        let r = Report::new(&done, 1_060_000 + 301_000, Duration::from_secs(300));
        assert!(!r.stale);
        assert_eq!(r.percent, 100.0);
        assert_eq!(r.eta_seconds, None);
        // A status from before timestamps existed: no rate, never stale.
        let old = running(3, 4, 0, 0);
        let r = Report::new(&old, 5_000_000, Duration::from_secs(1));
        assert_eq!((r.tiles_per_second, r.stale), (None, false));
    }
}
