//! Message trust on a real RabbitMQ: with a job key, workers and the stitcher act only on jobs
//! their coordinator signed. A forged task (a made-up job pointing at a real input and at a
//! staging location of the forger's choice), a task signed with another cluster's key and a
//! forged job announcement are dead-lettered or ignored without reading or writing anything,
//! and a forged "tile failed" for a running job is ignored, while the signed job runs to the
//! embedded run's mosaic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::*;
use wire::v1::{
    stitch_event, JobSpec, JobStarted, Method, StitchEvent, TileOutcome, TileResult, TileTask,
};

const KEY: &str = "terrafill-test-cluster-key-0123";
const OTHER_KEY: &str = "some-other-cluster-key-4567";

fn publish(amqp: &str, queue: &str, body: Vec<u8>) {
    runtime().block_on(async {
        let b = broker::connect(Some(amqp)).await.unwrap();
        b.declare_queue(queue, &broker::QueueSpec::default())
            .await
            .unwrap();
        b.publish(queue, broker::Message::new(body)).await.unwrap();
    });
}

#[test]
fn only_jobs_signed_with_the_cluster_key_are_computed() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [1u64, 480, 480];
    write(
        &url("in.zarr"),
        &shape,
        (32, 32),
        &synthetic(&shape, 0.3, 8),
    );
    let grid = ["--tile", "32", "--overlap", "0"];
    fill_ok(&url("in.zarr"), &url("ref.zarr"), &grid);

    // Forgeries: a task of a job no coordinator planned, one signed with another key, and an
    // announcement of a made-up job.
    let forged = JobSpec {
        job_id: "forged-job".into(),
        input_url: url("in.zarr"),
        array: "data".into(),
        output_url: url("forged-out.zarr"),
        staging_url: url("forged-staging"),
        method: Method::Idw as i32,
        tile: 32,
        overlap: 0,
        shape: shape.to_vec(),
        chunk_y: 32,
        chunk_x: 32,
        ensemble: 1,
        dimension_names: dims(3),
        ..JobSpec::default()
    };
    let other = wire::JobKey::new(OTHER_KEY.as_bytes()).unwrap();
    let dlq = broker::dead_letter_queue(wire::TILE_QUEUE);
    let dead_before = dead_letters(&amqp, &dlq);
    for signature in [Vec::new(), other.sign(&forged)] {
        let task = TileTask {
            job: Some(forged.clone()),
            tile_index: 0,
            signature,
            published_unix_ms: 0,
        };
        publish(&amqp, wire::TILE_QUEUE, wire::encode(&task).to_vec());
    }
    let started = StitchEvent {
        event: Some(stitch_event::Event::Started(JobStarted {
            job: Some(forged.clone()),
            signature: Vec::new(),
        })),
    };
    publish(&amqp, wire::STITCH_QUEUE, wire::encode(&started).to_vec());

    let mut fleet = Fleet(Vec::new());
    for role in ["stitcher", "worker"] {
        let child = bin()
            .args([role, "--broker", &amqp])
            .env(wire::JOB_KEY_ENV, KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        fleet.0.push(child);
    }
    let output = url("out.zarr");
    let input = url("in.zarr");
    let job = format!("signed-{}", std::process::id());
    let mut args = vec![
        "submit", &input, &output, "--broker", &amqp, "--job-id", &job,
    ];
    args.extend(grid);
    let mut submit = bin()
        .args(&args)
        .env(wire::JOB_KEY_ENV, KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-job, a forged "tile failed" for the real job: without signed results it would fail
    // the job.
    let staging = format!("{output}.staging");
    wait_for_staged(&staging, &job, 5, &mut submit);
    let forged_failure = StitchEvent {
        event: Some(stitch_event::Event::Tile(TileResult {
            job_id: job.clone(),
            tile_index: 3,
            outcome: TileOutcome::Failed as i32,
            error: "forged".into(),
            staging_url: staging.clone(),
            signature: Vec::new(),
            task_published_unix_ms: 0,
        })),
    };
    publish(
        &amqp,
        wire::STITCH_QUEUE,
        wire::encode(&forged_failure).to_vec(),
    );
    let out = submit.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signed job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        bits(&read(&output, "data")),
        bits(&read(&url("ref.zarr"), "data"))
    );
    // The worker took the forged tasks before the signed job's (FIFO) and touched nothing.
    assert_eq!(dead_letters(&amqp, &dlq), dead_before + 2);
    assert!(!dir.path().join("forged-staging").exists());
    assert!(!dir.path().join("forged-out.zarr").exists());
    drop(fleet);

    // A key too short to be a secret stops a service at start, with the variable's name.
    let out = bin()
        .args(["worker", "--broker", &amqp])
        .env(wire::JOB_KEY_ENV, "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(wire::JOB_KEY_ENV));
}
