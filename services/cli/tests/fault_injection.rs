//! Fault injection: every run's mosaic must be the clean embedded run's, bit for bit.
//!
//! - Seeded kills: several distributed runs on the test broker, each SIGKILLing the coordinator
//!   (`submit`), the stitcher or a worker at a seeded point (a number of staged tiles), then
//!   starting a replacement (a killed `submit` is simply run again: it resumes the job).
//! - S3 faults: an HTTP proxy in front of the S3 server (`tests/interop/s3_fault_proxy.py`)
//!   refuses a share of requests with 503 SlowDown, loses the response of others after the server
//!   did the work, and delays some; `fill` through it must still succeed with the same bytes.
//!
//! The broker outage case is `broker_outage.rs` (it needs a RabbitMQ node of its own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs of the kill series and its seed.
const KILL_RUNS: u64 = 3;
const SEED: u64 = 2026;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn spawn_submit(args: &[&str]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("submit did not finish within {limit:?}: the job hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn seeded_kills_of_coordinator_stitcher_and_workers_change_no_byte() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [3u64, 400, 384];
    write(
        &url("in.zarr"),
        &shape,
        (128, 128),
        &synthetic(&shape, 0.3, 17),
    );
    let grid = ["--tile", "32", "--overlap", "8"];
    fill_ok(&url("in.zarr"), &url("ref.zarr"), &grid);
    let want = bits(&read(&url("ref.zarr"), "data"));
    let want_filled = read(&url("ref.zarr"), "filled");

    let mut state = SEED;
    let mut summary = Vec::new();
    for run in 0..KILL_RUNS {
        let victim = ["coordinator", "stitcher", "worker"][(splitmix(&mut state) % 3) as usize];
        let kill_at = 5 + (splitmix(&mut state) % 30) as usize;
        let mut fleet = Fleet::cluster(&amqp);
        let output = url(&format!("run{run}.zarr"));
        let job = format!("kill-{run}-{}", std::process::id());
        let input = url("in.zarr");
        let mut submit_args = vec![
            "submit", &input, &output, "--broker", &amqp, "--job-id", &job,
        ];
        submit_args.extend(grid);
        let mut submit = spawn_submit(&submit_args);
        let staging = format!("{output}.staging");
        wait_for_staged(&staging, &job, kill_at, &mut submit);
        match victim {
            "coordinator" => {
                submit.kill().unwrap();
                submit.wait().unwrap();
                submit = spawn_submit(&submit_args);
            }
            "stitcher" => {
                fleet.0[0].kill().unwrap();
                fleet.0[0].wait().unwrap();
                fleet.spawn(&["stitcher", "--broker", &amqp]);
            }
            _ => {
                fleet.0[1].kill().unwrap();
                fleet.0[1].wait().unwrap();
                fleet.spawn(&["worker", "--broker", &amqp]);
            }
        }
        let status = wait_with_limit(&mut submit, Duration::from_secs(240));
        assert!(
            status.success(),
            "run {run}: submit failed after killing the {victim}"
        );
        assert_eq!(
            bits(&read(&output, "data")),
            want,
            "run {run}: mosaic differs after killing the {victim}"
        );
        assert_eq!(read(&output, "filled"), want_filled);
        summary.push(format!(
            "run {run}: {victim} killed at {kill_at} staged tiles"
        ));
        drop(fleet);
    }
    eprintln!("seed {SEED}: {}; all mosaics identical", summary.join("; "));
}

#[test]
fn s3_errors_and_lost_responses_change_no_byte() {
    let s3 = s3_prefix("faults");
    let input = format!("{s3}/in.zarr");
    let shape = [3u64, 256, 256];
    write(&input, &shape, (64, 64), &synthetic(&shape, 0.3, 23));
    let grid = ["--tile", "64", "--overlap", "16"];
    let clean = format!("{s3}/clean.zarr");
    let mut args = vec!["fill", input.as_str(), clean.as_str()];
    args.extend(grid);
    assert!(terrafill(&args).status.success());

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("faults.txt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let mut proxy = std::process::Command::new(python())
        .arg(root().join("tests/interop/s3_fault_proxy.py"))
        .args(["--port", &port.to_string(), "--upstream", &upstream])
        .args([
            "--refuse", "0.08", "--lose", "0.04", "--delay", "0.1", "--seed", "7",
        ])
        .arg("--log")
        .arg(&log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fault proxy did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let faulty = format!("{s3}/faulty.zarr");
    let mut args = vec!["fill", input.as_str(), faulty.as_str()];
    args.extend(grid);
    let out = bin()
        .args(&args)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        out.status.success(),
        "fill through the fault proxy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faults = std::fs::read_to_string(&log).unwrap_or_default();
    let (refused, lost) = (
        faults.lines().filter(|l| l.starts_with("refused")).count(),
        faults.lines().filter(|l| l.starts_with("lost")).count(),
    );
    eprintln!("S3 faults injected: {refused} refused, {lost} responses lost");
    assert!(
        refused >= 5 && lost >= 2,
        "too few faults to mean anything: {refused}, {lost}"
    );
    assert_eq!(bits(&read(&faulty, "data")), bits(&read(&clean, "data")));
    assert_eq!(read(&faulty, "filled"), read(&clean, "filled"));
}
