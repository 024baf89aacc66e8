//! `train --broker` across real processes: RabbitMQ, an S3-compatible server, two `terrafill
//! worker`s and the coordinator, one model on two scenes. One worker is SIGKILLed mid-round and
//! the coordinator is SIGKILLed and started again; the final checkpoint equals the embedded
//! run's bit for bit and fills. Bad input (scenes that disagree, an unreachable store, a shard
//! that cannot be trained, garbage on the queue) ends with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

const SHARDS: &str = "2";
const ROUNDS: &str = "3";

fn train_args<'a>(inputs: &[&'a str], ckpt: &'a str) -> Vec<&'a str> {
    let mut args = vec!["train"];
    args.extend(inputs);
    args.extend([
        "--checkpoint",
        ckpt,
        "--model",
        "small",
        "--tile",
        "16",
        "--batch",
        "4",
        "--workers",
        SHARDS,
        "--rounds",
        ROUNDS,
        "--inner-steps",
        "60",
    ]);
    args
}

#[test]
fn distributed_rounds_equal_embedded_through_killed_worker_and_coordinator() {
    let amqp = amqp_url();
    let s3 = s3_prefix("train-distributed");
    // Two scenes of different sizes, one model.
    let input = format!("{s3}/in.zarr");
    let shape = [2u64, 64, 72];
    write(&input, &shape, (32, 32), &synthetic(&shape, 0.2, 9));
    let second = format!("{s3}/second.zarr");
    let shape2 = [2u64, 40, 96];
    write(&second, &shape2, (32, 32), &synthetic(&shape2, 0.1, 10));
    let inputs = [input.as_str(), second.as_str()];

    let reference = format!("{s3}/embedded.safetensors");
    let out = terrafill(&train_args(&inputs, &reference));
    assert!(out.status.success());
    let want = checkpoint_tensors(&object(&reference).unwrap());

    let ckpt = format!("{s3}/cluster.safetensors");
    let latest_is =
        |v: &str| object(&wire::train_keys::latest(&ckpt)).is_some_and(|l| l == v.as_bytes());
    let mut fleet = Fleet::of(&amqp, 0, 2);
    let mut args = train_args(&inputs, &ckpt);
    args.extend(["--broker", amqp.as_str()]);
    let coordinator = |args: &[&str]| {
        bin()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = coordinator(&args);
    // Round 2 starts as soon as version 1 is written: kill a worker in it.
    wait_for("version 1", Duration::from_secs(180), || latest_is("1"));
    fleet.0[0].kill().unwrap();
    fleet.0[0].wait().unwrap();
    // Then the coordinator, once round 2 is averaged, and start it again: it resumes.
    wait_for("version 2", Duration::from_secs(180), || latest_is("2"));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        object(&ckpt).is_none(),
        "the coordinator was killed too late to test a resume"
    );
    let status = |c: &str| -> serde_json::Value {
        let out = terrafill(&["status", "--checkpoint", c]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = status(&ckpt);
    assert_eq!(
        (&s["state"], &s["version"], &s["round"], &s["rounds"]),
        (&"running".into(), &2.into(), &3.into(), &3.into()),
        "{s}"
    );
    let out = coordinator(&args).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming at version 2 of 3"), "{stderr}");
    assert!(stderr.contains("round 3/3: loss"), "{stderr}");
    assert_eq!(
        checkpoint_tensors(&object(&ckpt).unwrap()),
        want,
        "the cluster's checkpoint differs from the embedded run's"
    );

    assert_eq!(status(&ckpt)["state"], "succeeded");
    // Shard results of a round are where the layout says; the result fills.
    assert!(object(&wire::train_keys::shard_result(&ckpt, 2, 1)).is_some());
    let output = format!("{s3}/out.zarr");
    fill_ok(
        &input,
        &output,
        &["--method", "diffusion", "--checkpoint", &ckpt],
    );
    drop(fleet);
}

#[test]
fn broker_training_needs_the_shard_count_and_names_an_unreachable_store() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let shape = [2u64, 32, 32];
    write(&input, &shape, (32, 32), &synthetic(&shape, 0.2, 3));
    let out = terrafill(&[
        "train",
        &input,
        "--checkpoint",
        "m.safetensors",
        "--broker",
        &amqp,
        "--rounds",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--broker needs --workers"));
    // Scenes with other bands than the first: named, nothing written.
    let three = dir.path().join("three.zarr").display().to_string();
    let shape3 = [3u64, 32, 32];
    write(&three, &shape3, (32, 32), &synthetic(&shape3, 0.2, 3));
    let ckpt = dir.path().join("m.safetensors");
    let c = ckpt.display().to_string();
    let out = terrafill(&train_args(&[&input, &three], &c));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("three.zarr") && stderr.contains("same bands"),
        "{stderr}"
    );
    assert!(!ckpt.exists() && !dir.path().join("m.safetensors.versions").exists());
    let unreachable = "s3://no-such-bucket-terrafill/m.safetensors";
    let mut args = train_args(&[&input], unreachable);
    args.extend(["--broker", amqp.as_str()]);
    let out = terrafill(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no-such-bucket-terrafill"), "{stderr}");
}

#[test]
fn a_worker_reports_a_shard_it_cannot_train_and_dead_letters_garbage() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors").display().to_string();
    let dlq = broker::dead_letter_queue(wire::TRAIN_QUEUE);
    let dead_before = dead_letters(&amqp, &dlq);
    let fleet = Fleet::of(&amqp, 0, 1);
    let job = wire::v1::TrainJob {
        job_id: format!("train-bad-settings-{}", std::process::id()),
        scene_urls: vec![dir.path().join("in.zarr").display().to_string()],
        array: "data".into(),
        checkpoint_url: ckpt.clone(),
        train_config_json: "{\"steps\": \"many\"}".into(),
        shards: 2,
        inner_steps: 5,
        ..Default::default()
    };
    let report = runtime().block_on(async {
        let b = broker::connect(Some(&amqp)).await.unwrap();
        broker::declare_all(&*b, &wire::QUEUES).await.unwrap();
        let mut events = b.subscribe_events(wire::TRAIN_EXCHANGE).await.unwrap();
        b.publish(
            wire::TRAIN_QUEUE,
            broker::Message::new(vec![0xff_u8, 0xff, 0xff, 0x0f, 0x99]),
        )
        .await
        .unwrap();
        let task = wire::v1::ShardTask {
            job: Some(job.clone()),
            version: 0,
            shard: 1,
            ..Default::default()
        };
        b.publish(wire::TRAIN_QUEUE, broker::Message::new(wire::encode(&task)))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let d = events.next().await.unwrap().unwrap();
                let r: wire::v1::ShardResult =
                    wire::decode("ShardResult", &d.body, wire::MAX_MESSAGE_BYTES).unwrap();
                if r.job_id == job.job_id {
                    return r;
                }
            }
        })
        .await
        .expect("no report of the shard within 60 s")
    });
    assert_eq!(report.outcome, wire::v1::TileOutcome::Failed as i32);
    assert_eq!(report.shard, 1);
    assert!(
        report.error.contains(&job.job_id) && report.error.contains("training settings"),
        "{}",
        report.error
    );
    wait_for(
        "the garbage task dead-lettered",
        Duration::from_secs(30),
        || dead_letters(&amqp, &dlq) > dead_before,
    );
    assert!(object(&wire::train_keys::shard_result(&ckpt, 0, 1)).is_none());
    drop(fleet);
}
