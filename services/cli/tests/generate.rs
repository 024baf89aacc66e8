//! `terrafill generate` and parity phases end to end with a tiny model: a generated field is
//! finite and in the training range, the same seed gives the same bytes whatever the number of
//! workers (so whatever order the tiles complete in), `--like` carries a scene's attributes,
//! bad sizes are refused naming the flag, and `fill --phases` is deterministic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Trains the tiny generative checkpoint of these tests; returns (scene, checkpoint, values).
fn trained(dir: &std::path::Path) -> (String, String, Vec<f32>) {
    let input = dir.join("in.zarr").display().to_string();
    let ckpt = dir.join("g.safetensors").display().to_string();
    let shape = [2u64, 64, 56];
    let values = synthetic(&shape, 0.2, 7);
    write(&input, &shape, (32, 32), &values);
    train_tiny(&input, &ckpt, &["--blank-share", "0.5"]);
    (input, ckpt, values)
}

#[test]
fn generated_fields_are_deterministic_in_range_and_take_a_scenes_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let (input, ckpt, values) = trained(dir.path());
    let generate = |name: &str, extra: &[&str]| {
        let output = dir.path().join(name).display().to_string();
        let mut args = vec![
            "generate",
            &output,
            "--checkpoint",
            &ckpt,
            "--steps",
            "4",
            "--device",
            "cpu",
        ];
        args.extend(extra);
        terrafill_ok(&args);
        output
    };
    let a = generate("a.zarr", &["--shape", "40,56", "--seed", "1"]);
    let b = generate(
        "b.zarr",
        &["--shape", "40,56", "--seed", "1", "--workers", "3"],
    );
    let c = generate("c.zarr", &["--shape", "40,56", "--seed", "2"]);
    let d = generate(
        "d.zarr",
        &["--shape", "40,56", "--seed", "1", "--no-phases"],
    );
    let (da, db) = (read(&a, "data"), read(&b, "data"));
    assert_eq!(da.len(), 2 * 40 * 56);
    assert_eq!(
        bits(&da),
        bits(&db),
        "same seed, other workers: other bytes"
    );
    assert_ne!(
        bits(&da),
        bits(&read(&c, "data")),
        "another seed, same field"
    );
    assert_ne!(bits(&da), bits(&read(&d, "data")), "phases changed nothing");
    // Every pixel generated, within the band's range in the training scene.
    for (band, plane) in da.chunks(40 * 56).enumerate() {
        let train = values[band * 64 * 56..][..64 * 56]
            .iter()
            .filter(|v| v.is_finite());
        let lo = train.clone().fold(f32::INFINITY, |m, &v| m.min(v));
        let hi = train.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        assert!(
            plane.iter().all(|v| (lo..=hi).contains(v)),
            "band {band} leaves [{lo}, {hi}]"
        );
        let mean = plane.iter().sum::<f32>() / plane.len() as f32;
        let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / plane.len() as f32;
        assert!(var > 0.0, "band {band} is flat");
    }
    assert!(read(&a, "filled").iter().all(|&f| f == 1.0));
    // The canvas is metadata only: no chunk was ever written to it.
    let canvas = dir.path().join("a.zarr.canvas");
    assert!(canvas.join("zarr.json").exists());
    assert!(chunk_files(&canvas, "data").is_empty());
    let provenance = runtime().block_on(async {
        let s = zarr_io::Scene::open(&a, "data", None).await.unwrap();
        s.group_attributes()["terrafill"].clone()
    });
    assert_eq!(provenance["generate"], true);
    assert_eq!(provenance["phases"], 4);
    // A generated field has no truth: `eval` measures its seams alone, on the recorded grid.
    let out = terrafill_ok(&["eval", &a, "--seams"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let score = json["seams"]["prediction"]["score"].as_f64().unwrap();
    assert!(score.is_finite() && score >= 0.0, "{json}");
    assert_eq!(json["seams"]["tile"], 16);
    // The provenance records the same metric, measured by the stitcher as it finalized.
    let recorded = provenance["seams"]["score"].as_f64().unwrap();
    assert!((recorded - score).abs() < 1e-9, "{provenance} vs {json}");
    let out = terrafill(&["eval", &a]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seams"));

    // --like: the scene's size, dimension names and attributes.
    let like = generate("like.zarr", &["--like", &input]);
    runtime().block_on(async {
        let s = zarr_io::Scene::open(&like, "data", None).await.unwrap();
        assert_eq!(s.shape(), [2, 64, 56]);
        assert_eq!(s.dimension_names(), ["band", "y", "x"]);
        let attrs = s.group_attributes();
        assert_eq!(attrs["crs"], "EPSG:32618");
    });
}

#[test]
fn generate_refuses_a_missing_size_naming_the_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ckpt, _) = trained(dir.path());
    let output = dir.path().join("out.zarr");
    let out_s = output.display().to_string();
    let missing = dir.path().join("nowhere.zarr").display().to_string();
    for (extra, expect) in [
        (vec![], "--shape"),
        (vec!["--shape", "0,64"], "--shape"),
        (vec!["--shape", "64"], "--shape"),
        (vec!["--like", missing.as_str()], "nowhere.zarr"),
    ] {
        let mut args = vec!["generate", &out_s, "--checkpoint", &ckpt];
        args.extend(&extra);
        let out = terrafill(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(expect), "{extra:?}: {stderr}");
        assert!(!output.exists(), "{extra:?} wrote the output");
    }
}

#[test]
fn phased_fills_give_the_same_bytes_whatever_the_workers_and_differ_from_independent_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let (input, ckpt, values) = trained(dir.path());
    let fill = |name: &str, extra: &[&str]| {
        let output = dir.path().join(name).display().to_string();
        let mut args = vec![
            "fill",
            &input,
            &output,
            "--method",
            "diffusion",
            "--checkpoint",
            &ckpt,
            "--ensemble",
            "2",
            "--member",
            "1",
            "--steps",
            "4",
            "--device",
            "cpu",
        ];
        args.extend(extra);
        terrafill_ok(&args);
        read(&output, "data")
    };
    let one = fill("one.zarr", &["--phases", "--workers", "1"]);
    let three = fill("three.zarr", &["--phases", "--workers", "3"]);
    let independent = fill("independent.zarr", &["--workers", "3"]);
    assert_eq!(
        bits(&one),
        bits(&three),
        "completion order changed the bytes"
    );
    assert_ne!(bits(&one), bits(&independent));
    for (i, (&v, &o)) in values.iter().zip(&one).enumerate() {
        if v.is_finite() {
            assert_eq!(v.to_bits(), o.to_bits(), "observed pixel {i} changed");
        } else {
            assert!(o.is_finite(), "gap pixel {i} unfilled");
        }
    }
    // An overlap above half the tile would let tiles of one phase overlap: refused.
    let output = dir.path().join("bad.zarr").display().to_string();
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "diffusion",
        "--checkpoint",
        &ckpt,
        "--phases",
        "--overlap",
        "12",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--phases"));
}

#[test]
fn a_distributed_generate_on_s3_through_killed_workers_and_coordinator_matches_embedded() {
    let amqp = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let (_, ckpt, _) = trained(dir.path());
    // The checkpoint, canvas, staging and output live on S3, as on a cluster.
    let s3 = s3_prefix("generate");
    let remote_ckpt = format!("{s3}/g.safetensors");
    runtime().block_on(async {
        let bytes = std::fs::read(&ckpt).unwrap();
        zarr_io::put_bytes(&remote_ckpt, bytes.into())
            .await
            .unwrap();
    });
    let field = ["--shape", "88,100", "--steps", "3", "--seed", "5"];
    let embedded = dir.path().join("embedded.zarr").display().to_string();
    let mut args = vec![
        "generate",
        &embedded,
        "--checkpoint",
        &ckpt,
        "--device",
        "cpu",
    ];
    args.extend(field);
    terrafill_ok(&args);
    let want = bits(&read(&embedded, "data"));

    let mut fleet = Fleet::cluster(&amqp);
    let output = format!("{s3}/field.zarr");
    let job = format!("generate-{}", std::process::id());
    let mut submit_args = vec![
        "generate",
        &output,
        "--checkpoint",
        &remote_ckpt,
        "--broker",
        &amqp,
        "--job-id",
        &job,
    ];
    submit_args.extend(field);
    let spawn = |args: &[&str]| {
        bin()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut submit = spawn(&submit_args);
    let staging = format!("{output}.staging");
    // A worker dies mid-job, then the coordinator (which is publishing the later phases).
    wait_for_staged(&staging, &job, 6, &mut submit);
    fleet.0[1].kill().unwrap();
    fleet.0[1].wait().unwrap();
    fleet.spawn(&["worker", "--broker", &amqp]);
    wait_for_staged(&staging, &job, 20, &mut submit);
    submit.kill().unwrap();
    submit.wait().unwrap();
    let mut submit = spawn(&submit_args);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = submit.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed().as_secs() < 240, "generate hangs");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "the resumed generate failed");
    assert_eq!(
        bits(&read(&output, "data")),
        want,
        "distributed bytes differ"
    );
    drop(fleet);
}
