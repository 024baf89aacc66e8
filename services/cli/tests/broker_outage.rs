//! A broker outage longer than the reconnect deadline (60 s) in the middle of a distributed job,
//! on a RabbitMQ node of this test's own (the machine's broker is never touched): the worker, the
//! stitcher and the waiting `submit` stay up, `/readyz` says "not ready" while the broker is
//! away, everything is back within seconds of its return, and the mosaic equals the embedded
//! run's bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Longer than `AmqpConfig::reconnect_timeout` (60 s), after which services used to exit.
const OUTAGE: Duration = Duration::from_secs(65);

/// A RabbitMQ node in a temporary directory, on free ports.
struct Node {
    dir: tempfile::TempDir,
    name: String,
    port: u16,
    dist_port: u16,
    server: Option<std::process::Child>,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (port, dist_port) = (free_port(), free_port());
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        // The node may run as the rabbitmq user.
        let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        let name = format!("terrafill-outage-{}@localhost", std::process::id());
        Node {
            dir,
            name,
            port,
            dist_port,
            server: None,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"));
    }

    /// Starts the node and waits until it accepts AMQP connections.
    fn start(&mut self) {
        let mut cmd = Command::new(sbin("rabbitmq-server"));
        self.env(&mut cmd);
        let log = std::fs::File::create(self.dir.path().join("server.out")).unwrap();
        self.server = Some(
            cmd.stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        while !self.accepts() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "RabbitMQ node {} did not start; see {}",
                self.name,
                self.dir.path().join("server.out").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the node (its queues survive on disk).
    fn stop(&mut self) {
        let mut cmd = Command::new(sbin("rabbitmqctl"));
        self.env(&mut cmd);
        let out = cmd.args(["-n", &self.name, "stop"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut server) = self.server.take() {
            server.wait().unwrap();
        }
        assert!(!self.accepts());
    }

    fn accepts(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let mut cmd = Command::new(sbin("rabbitmqctl"));
            self.env(&mut cmd);
            let _ = cmd.args(["-n", &self.name, "stop"]).output();
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn sbin(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/lib/rabbitmq/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `/readyz`'s status code, or `None` when nothing answers.
fn readyz(port: u16) -> Option<u16> {
    http_get(port, "/readyz").map(|(code, _)| code)
}

#[test]
fn services_ride_out_a_broker_outage_longer_than_the_reconnect_deadline() {
    let mut node = Node::new();
    node.start();
    let amqp = node.url();
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [3u64, 1024, 1024];
    write(
        &url("in.zarr"),
        &shape,
        (256, 256),
        &synthetic(&shape, 0.3, 21),
    );
    let grid = ["--tile", "64", "--overlap", "0", "--method", "idw"];

    fill_ok(&url("in.zarr"), &url("ref.zarr"), &grid);

    let (worker_port, stitcher_port) = (free_port(), free_port());
    let (w_addr, s_addr) = (
        format!("127.0.0.1:{worker_port}"),
        format!("127.0.0.1:{stitcher_port}"),
    );
    let mut fleet = Fleet(Vec::new());
    fleet.spawn(&["stitcher", "--broker", &amqp, "--metrics-addr", &s_addr]);
    fleet.spawn(&[
        "worker",
        "--broker",
        &amqp,
        "--batch",
        "1",
        "--metrics-addr",
        &w_addr,
    ]);
    wait_for("worker ready", Duration::from_secs(30), || {
        readyz(worker_port) == Some(200) && readyz(stitcher_port) == Some(200)
    });

    let job = format!("outage-{}", std::process::id());
    let output = url("out.zarr");
    let input = url("in.zarr");
    let mut args = vec![
        "submit", &input, &output, "--broker", &amqp, "--job-id", &job,
    ];
    args.extend(grid);
    let mut submit = bin().args(&args).stdout(Stdio::null()).spawn().unwrap();
    let staging = format!("{output}.staging");
    wait_for("first tiles", Duration::from_secs(120), || {
        staged_tiles(&staging, &job) >= 5
    });
    node.stop();
    let at_stop = staged_tiles(&staging, &job);
    assert!(
        submit.try_wait().unwrap().is_none(),
        "the job ended before the outage"
    );
    wait_for("/readyz to say not ready", Duration::from_secs(15), || {
        readyz(worker_port) == Some(503) && readyz(stitcher_port) == Some(503)
    });
    std::thread::sleep(OUTAGE);
    for (i, child) in fleet.0.iter_mut().enumerate() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "service {i} died in the outage"
        );
    }
    assert!(
        submit.try_wait().unwrap().is_none(),
        "submit died in the outage"
    );
    assert_eq!(readyz(worker_port), Some(503));

    node.start();
    let back = wait_for("services ready again", Duration::from_secs(30), || {
        readyz(worker_port) == Some(200) && readyz(stitcher_port) == Some(200)
    });
    eprintln!(
        "outage {OUTAGE:?} with {at_stop} tiles staged; ready {back:?} after the broker's return"
    );
    assert!(back < Duration::from_secs(10), "took {back:?} to recover");
    let status = submit.wait().unwrap();
    assert!(status.success(), "submit failed after the outage");
    assert_eq!(
        bits(&read(&output, "data")),
        bits(&read(&url("ref.zarr"), "data"))
    );
    assert_eq!(read(&output, "filled"), read(&url("ref.zarr"), "filled"));

    // The services' metrics saw the job: queue wait per task, latency per result, the success.
    let scrape = |port: u16| {
        http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    let (worker, stitcher) = (scrape(worker_port), scrape(stitcher_port));
    let value = |text: &str, m: &str| metric_value(text, m).unwrap_or_else(|| panic!("no {m}"));
    assert!(value(&worker, "terrafill_worker_queue_wait_seconds_count") >= 1.0);
    assert!(value(&worker, "terrafill_worker_batch_tiles_count") >= 1.0);
    assert!(value(&stitcher, "terrafill_stitcher_tile_latency_seconds_count") >= 1.0);
    assert!(
        value(
            &stitcher,
            "terrafill_stitcher_last_success_timestamp_seconds"
        ) > 1.7e9
    );
    assert!(worker.contains("service=\"worker\"") && stitcher.contains("service=\"stitcher\""));
    assert!(value(&worker, "process_resident_memory_bytes") > 1e6);
}
