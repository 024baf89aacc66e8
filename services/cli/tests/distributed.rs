//! The distributed pipeline across real processes: RabbitMQ, an S3-compatible server, two
//! `terrafill worker`s, one or two `terrafill stitcher`s and `terrafill submit`. The mosaic must
//! equal the embedded run's bit for bit — also when one of two workers and one of two stitchers
//! are SIGKILLed mid-job and the survivors take over,
//! and when `fill` is run with the cluster's broker (it then submits rather than joining the
//! cluster's queues) — and an undecodable task goes to the dead-letter queue while the job goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn distributed_run_equals_embedded_and_survives_killed_worker_and_stitcher() {
    let amqp = amqp_url();
    let s3 = s3_prefix("distributed");
    let input = format!("{s3}/in.zarr");
    let shape = [3u64, 480, 456];
    write(&input, &shape, (128, 128), &synthetic(&shape, 0.3, 11));
    let grid = ["--tile", "32", "--overlap", "8"];

    // Reference: embedded mode, local output.
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("ref.zarr").display().to_string();
    let mut args = vec!["fill", input.as_str(), reference.as_str()];
    args.extend(grid);
    assert!(terrafill(&args).status.success());
    let want_data = bits(&read(&reference, "data"));
    let want_filled = read(&reference, "filled");

    // A poison message on the task queue: dead-lettered, the job still completes.
    runtime().block_on(async {
        let b = broker::connect(Some(&amqp)).await.unwrap();
        b.declare_queue(wire::TILE_QUEUE, &broker::QueueSpec::default())
            .await
            .unwrap();
        b.publish(
            wire::TILE_QUEUE,
            broker::Message::new(vec![0xff_u8, 0xff, 0xff, 0x0f, 0x99]),
        )
        .await
        .unwrap();
    });
    let dlq = broker::dead_letter_queue(wire::TILE_QUEUE);
    let dead_before = dead_letters(&amqp, &dlq);

    let fleet = Fleet::cluster(&amqp);
    let output = format!("{s3}/out.zarr");
    let mut args = vec![
        "submit",
        input.as_str(),
        output.as_str(),
        "--broker",
        amqp.as_str(),
    ];
    args.extend(grid);
    assert!(terrafill(&args).status.success());
    assert_eq!(
        bits(&read(&output, "data")),
        want_data,
        "distributed mosaic differs from embedded"
    );
    assert_eq!(read(&output, "filled"), want_filled);

    // `fill` with the cluster's broker exported (as a shell that runs the services has it) is a
    // client of that cluster: no second stitcher joins its queues, and the mosaic is the same.
    let output = format!("{s3}/fill-as-client.zarr");
    let mut args = vec!["fill", input.as_str(), output.as_str()];
    args.extend(grid);
    let out = bin()
        .args(&args)
        .env("TERRAFILL_BROKER", &amqp)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fill with a broker failed: {stderr}");
    assert!(
        stderr.contains("submitting the job to that cluster") && !stderr.contains("guest:guest"),
        "fill with a broker must say it submits, password hidden: {stderr}"
    );
    assert_eq!(bits(&read(&output, "data")), want_data);
    let dead_after = dead_letters(&amqp, &dlq);
    assert!(
        dead_after > dead_before,
        "the undecodable task did not reach {dlq}"
    );
    drop(fleet);

    // Crash: two stitchers and two workers share the job; SIGKILL one of each once some tiles
    // are in and start no replacement: the surviving stitcher takes the killed one's results
    // over (the broker redelivers them) and the mosaic is the same.
    let mut fleet = Fleet::of(&amqp, 2, 2);
    let (stitcher, victim) = (0, 2);
    let output = format!("{s3}/crash.zarr");
    let job = format!("crash-{}", std::process::id());
    let mut args = vec![
        "submit",
        input.as_str(),
        output.as_str(),
        "--broker",
        amqp.as_str(),
        "--job-id",
        job.as_str(),
    ];
    args.extend(grid);
    let mut submit = bin()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let staging = format!("{output}.staging");
    wait_for_staged(&staging, &job, 40, &mut submit);
    for i in [victim, stitcher] {
        fleet.0[i].kill().unwrap();
        fleet.0[i].wait().unwrap();
    }
    let at_kill = staged_tiles(&staging, &job);
    assert!(
        submit.try_wait().unwrap().is_none(),
        "job finished before the kill ({at_kill} tiles staged)"
    );
    let status = submit.wait().unwrap();
    assert!(status.success(), "submit failed after the crashes");
    assert_eq!(
        bits(&read(&output, "data")),
        want_data,
        "mosaic after killing a stitcher and a worker of two differs"
    );
    assert_eq!(read(&output, "filled"), want_filled);

    let out = terrafill(&["status", &job, "--output", &output]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"succeeded\""));
}
