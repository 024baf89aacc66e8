//! The alert rules against a real Prometheus (Debian's `prometheus`, started here) scraping a real
//! `terrafill stitcher` and `terrafill worker` on RabbitMQ through a job whose every tile fails
//! and then a job that succeeds. The rules are `infra/prometheus/alerts.yml` with their
//! expressions unchanged and every `for:` set to 0 (the test cannot wait out 10-minute holds),
//! evaluated every second over 1-second scrapes.
//!
//! After the failed job, `TerrafillJobFailed` and `TerrafillTileFailureRateHigh` fire (the first
//! failure of a stitcher and "all tiles failing" were the cases that did not: labelled counters
//! started absent, and the failure rate was NaN); an idle stitcher after a failed job is not
//! `TerrafillStitcherStalled`; no target is down, no broker disconnected, and no scheduled run is
//! missed before any job ever succeeded. After the good job the last-success timestamp is set
//! and still nothing is stalled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const SHAPE: [u64; 3] = [1, 128, 128];

/// The hold every alert gets in the test (the rules' own are minutes). Not zero: with one-second
/// scrapes, a scrape can land in the milliseconds between the stitcher counting a tile result and
/// updating its progress or chunk counters, a state no real stall holds for three seconds.
const TEST_HOLD: &str = "3s";

/// The Prometheus server binary (`TERRAFILL_PROMETHEUS`, else `prometheus` on the PATH).
fn prometheus_bin() -> String {
    std::env::var("TERRAFILL_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

/// `alerts.yml` with every `for:` hold cut to [`TEST_HOLD`].
fn rules_with_short_holds() -> String {
    let text = std::fs::read_to_string(root().join("infra/prometheus/alerts.yml")).unwrap();
    let rules: Vec<String> = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!(
                "{}for: {TEST_HOLD}",
                &line[..line.len() - line.trim_start().len()]
            ),
            None => line.to_owned(),
        })
        .collect();
    assert!(
        rules
            .iter()
            .any(|l| l.trim() == format!("for: {TEST_HOLD}")),
        "alerts.yml has no hold to lift"
    );
    rules.join("\n")
}

/// A JSON API answer of Prometheus on `port` (HTTP/1.0, so the body is never chunked).
fn api(port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Names of the alerts firing now.
fn firing(port: u16) -> BTreeSet<String> {
    let Some(answer) = api(port, "/api/v1/alerts") else {
        return BTreeSet::new();
    };
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

/// The number of series an instant query returns.
fn series(port: u16, query: &str) -> usize {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    api(port, &format!("/api/v1/query?query={encoded}"))
        .and_then(|a| a["data"]["result"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Starts Prometheus on `port` scraping the stitcher and the worker every second.
fn start_prometheus(dir: &Path, port: u16, stitcher: u16, worker: u16) -> Child {
    std::fs::write(dir.join("alerts.yml"), rules_with_short_holds()).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [alerts.yml]\n\
         scrape_configs:\n\
         \x20 - job_name: terrafill-stitcher\n    static_configs: [{{targets: ['127.0.0.1:{stitcher}']}}]\n\
         \x20 - job_name: terrafill-worker\n    static_configs: [{{targets: ['127.0.0.1:{worker}']}}]\n"
    );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    std::process::Command::new(prometheus_bin())
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot start ({e}): tests/run installs Debian's prometheus",
                prometheus_bin()
            )
        })
}

/// Waits until exactly `want` of the alerts in `watched` fire, and asserts that the others in
/// `watched` never do meanwhile nor for `settle` after.
fn expect_alerts(port: u16, want: &[&str], quiet: &[&str], settle: Duration) {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    wait_for(&format!("alerts {want:?}"), Duration::from_secs(90), || {
        let now = firing(port);
        for q in quiet {
            assert!(!now.contains(*q), "{q} fired: {now:?}");
        }
        want.is_subset(&now)
    });
    let until = std::time::Instant::now() + settle;
    while std::time::Instant::now() < until {
        let now = firing(port);
        for q in quiet {
            assert!(!now.contains(*q), "{q} fired: {now:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn real_prometheus_fires_the_right_alerts_through_a_failed_and_a_good_job() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let (stitcher, worker, prom) = (free_port(), free_port(), free_port());
    let mut fleet = Fleet(Vec::new());
    fleet.spawn(&[
        "stitcher",
        "--broker",
        &amqp,
        "--metrics-addr",
        &format!("127.0.0.1:{stitcher}"),
    ]);
    fleet.spawn(&[
        "worker",
        "--broker",
        &amqp,
        "--metrics-addr",
        &format!("127.0.0.1:{worker}"),
    ]);
    // In the fleet, so that it is stopped however the test ends.
    fleet
        .0
        .push(start_prometheus(dir.path(), prom, stitcher, worker));
    wait_for("both targets up", Duration::from_secs(60), || {
        series(prom, "up == 1") == 2
    });
    let quiet_always = [
        "TerrafillStitcherStalled",
        "TerrafillTargetDown",
        "TerrafillBrokerDisconnected",
        "TerrafillScheduledRunMissed",
        "TerrafillMessagesDeadLettered",
    ];
    // Idle services raise nothing.
    expect_alerts(
        prom,
        &[],
        &[
            &quiet_always[..],
            &["TerrafillJobFailed", "TerrafillTileFailureRateHigh"],
        ]
        .concat(),
        Duration::from_secs(4),
    );

    // A scene every chunk of which is unreadable: identity plans without reading it, and every
    // tile fails in the worker.
    let bad = format!("{root}/bad.zarr");
    write(&bad, &SHAPE, (32, 32), &synthetic(&SHAPE, 0.0, 1));
    for chunk in chunk_files(Path::new(&bad), "data") {
        std::fs::write(chunk, b"garbage").unwrap();
    }
    let grid = [
        "--method",
        "identity",
        "--tile",
        "64",
        "--overlap",
        "16",
        "--broker",
        &amqp,
    ];
    let out_bad = format!("{root}/bad-out.zarr");
    let mut args = vec!["submit", bad.as_str(), out_bad.as_str()];
    args.extend(grid);
    let failed = terrafill(&args);
    assert_eq!(failed.status.code(), Some(3));
    expect_alerts(
        prom,
        &["TerrafillJobFailed", "TerrafillTileFailureRateHigh"],
        &quiet_always,
        Duration::from_secs(5),
    );

    // A good job: succeeds, sets the last success, and stalls nothing.
    let good = format!("{root}/good.zarr");
    write(&good, &SHAPE, (32, 32), &synthetic(&SHAPE, 0.2, 2));
    let out_good = format!("{root}/good-out.zarr");
    let mut args = vec!["submit", good.as_str(), out_good.as_str()];
    args.extend(grid);
    assert!(terrafill(&args).status.success());
    wait_for("the last success scraped", Duration::from_secs(30), || {
        series(
            prom,
            "terrafill_stitcher_last_success_timestamp_seconds > 0",
        ) == 1
    });
    expect_alerts(
        prom,
        &["TerrafillJobFailed"],
        &quiet_always,
        Duration::from_secs(5),
    );
    drop(fleet);
}
