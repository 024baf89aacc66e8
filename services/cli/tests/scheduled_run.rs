//! A scheduled run through a job file on a real cluster (RabbitMQ, `terrafill stitcher` and two
//! `terrafill worker`s): one job file with `{date}` templates run for two dates. One date's scene
//! has a chunk that goes bad after planning, so some of its tiles fail; re-running the failed
//! job is refused at once with exit status 3 and nothing re-queued, and after the chunk is
//! mended `retry` re-queues only the tiles that were not staged. Both mosaics equal embedded
//! fills of the same scenes bit for bit, and a completed date re-runs as a no-op.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const SHAPE: [u64; 3] = [2, 256, 256];

/// `terrafill status` of the job, as JSON.
fn status(job: &str, output: &str) -> serde_json::Value {
    let out = bin()
        .args(["status", job, "--output", output])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The job's state as `terrafill status` reports it.
fn state(job: &str, output: &str) -> String {
    status(job, output)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Ready tasks on the tile queue.
fn queued_tasks(amqp: &str) -> u64 {
    runtime().block_on(async {
        let b = broker::connect(Some(amqp)).await.unwrap();
        b.queue_depth(wire::TILE_QUEUE).await.unwrap_or(0)
    })
}

/// `(queued, already staged)` from the line `job J: N tiles queued, M already staged`.
fn queued_line(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains("tiles queued"))
        .unwrap_or_else(|| panic!("no 'tiles queued' line in: {stderr}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let n = numbers.len();
    (numbers[n - 2], numbers[n - 1])
}

#[test]
fn a_job_file_runs_per_date_refuses_a_failed_rerun_and_retries_only_missing_tiles() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let scene = |date: &str| format!("{root}/in/{date}.zarr");
    for (date, seed) in [("2026-07-01", 3), ("2026-07-02", 4)] {
        write(
            &scene(date),
            &SHAPE,
            (32, 32),
            &synthetic(&SHAPE, 0.2, seed),
        );
    }
    let job_file = dir.path().join("nightly.toml");
    std::fs::write(
        &job_file,
        format!(
            "# the nightly job\ninput = \"{root}/in/{{date}}.zarr\"\n\
             output = \"{root}/out/{{date:%Y%m%d}}.zarr\"\n\
             method = \"identity\"\ntile = 64\noverlap = 16\nseed = 5\n"
        ),
    )
    .unwrap();
    let job_file = job_file.display().to_string();
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", job_file.as_str(), "--broker", amqp.as_str()];
        args.extend(extra);
        terrafill(&args)
    };
    let reference = |date: &str| {
        let out = format!("{root}/ref-{date}.zarr");
        fill_ok(
            &scene(date),
            &out,
            &["--method", "identity", "--tile", "64", "--overlap", "16"],
        );
        bits(&read(&out, "data"))
    };
    let want = reference("2026-07-02");
    let mut fleet = Fleet::of(&amqp, 1, 0);

    // Date 2 is planned and published, then one of its chunks goes bad before any worker runs.
    let out = submit(&["--date", "2026-07-02", "--detach"]);
    assert!(out.status.success());
    let job = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let output = format!("{root}/out/20260702.zarr");
    let staging = format!("{output}.staging");
    let chunks = chunk_files(Path::new(&scene("2026-07-02")), "data");
    let bad = &chunks[chunks.len() / 2];
    let good = std::fs::read(bad).unwrap();
    std::fs::write(bad, b"not a zstd frame").unwrap();
    for _ in 0..2 {
        fleet.spawn(&["worker", "--broker", &amqp]);
    }
    wait_for("the job to fail", Duration::from_secs(120), || {
        state(&job, &output) == "failed"
    });
    // Let the workers finish the tasks that were queued, so that what is staged stops changing.
    let mut staged = staged_tiles(&staging, &job);
    wait_for("the queue to drain", Duration::from_secs(120), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = staged_tiles(&staging, &job);
        let settled = queued_tasks(&amqp) == 0 && now == staged;
        staged = now;
        settled
    });
    assert!(staged > 0, "no tile of the failing job was staged");

    // A plain re-run is refused at once, says what to do, and queues nothing.
    let started = Instant::now();
    let again = submit(&["--date", "2026-07-02"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("terrafill retry"), "{stderr}");
    assert!(!stderr.contains("tiles queued"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(queued_tasks(&amqp), 0);
    assert_eq!(staged_tiles(&staging, &job), staged);

    // The chunk is mended; retry computes only the tiles that were not staged.
    std::fs::write(bad, &good).unwrap();
    let mut args = vec!["retry", job_file.as_str(), "--broker", amqp.as_str()];
    args.extend(["--date", "2026-07-02"]);
    let retried = terrafill(&args);
    let stderr = String::from_utf8_lossy(&retried.stderr);
    assert!(retried.status.success(), "{stderr}");
    let (queued, kept) = queued_line(&stderr);
    assert_eq!(kept, staged, "{stderr}");
    assert!(queued > 0, "{stderr}");
    // Staged tiles are dropped with success: the job's own count says all were computed.
    let done = status(&job, &output);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["tiles_dirty"].as_u64(),
        Some((queued + kept) as u64),
        "{done}"
    );
    assert_eq!(done["tiles_done"], done["tiles_dirty"], "{done}");
    assert_eq!(bits(&read(&output, "data")), want, "retried mosaic differs");

    // Date 1 runs from the same file; a completed date re-runs as a no-op.
    let first = submit(&["--date", "2026-07-01"]);
    assert!(first.status.success());
    let output1 = format!("{root}/out/20260701.zarr");
    assert_eq!(bits(&read(&output1, "data")), reference("2026-07-01"));
    let started = Instant::now();
    assert!(submit(&["--date", "2026-07-01"]).status.success());
    assert!(started.elapsed() < Duration::from_secs(20));

    // A date whose scene has not arrived is a permanent failure naming the path.
    let missing = submit(&["--date", "2026-07-03"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("2026-07-03.zarr"));
    drop(fleet);
}
