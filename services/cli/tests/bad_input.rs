//! Bad input gives a one-line error naming the cause, a non-zero exit and no output that looks
//! complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn fails_with(args: &[&str], needle: &str) -> String {
    let out = terrafill(args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "stderr {err:?} does not mention {needle:?}"
    );
    assert!(
        err.trim_end().lines().count() <= 4,
        "error is not short: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err.into_owned()
}

fn complete(url: &str) -> bool {
    std::path::Path::new(url).join("zarr.json").exists()
}

#[test]
fn missing_input_and_not_a_zarr_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.zarr").display().to_string();
    let missing = dir.path().join("missing.zarr").display().to_string();
    fails_with(&["fill", &missing, &out], "missing.zarr");
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("readme.txt"), "not zarr").unwrap();
    fails_with(
        &["fill", &plain.display().to_string(), &out],
        "is not a Zarr group (it holds objects, but no zarr.json or .zgroup)",
    );
    fails_with(&["fill", &missing, &out], "nothing is stored there");
    assert!(!complete(&out));
    // A wrong or empty --array names the arrays that exist.
    let scene = dir.path().join("scene.zarr").display().to_string();
    write(&scene, &[1, 8, 8], (8, 8), &synthetic(&[1, 8, 8], 0.2, 1));
    write_array(&scene, "mask", &[8, 8], (8, 8), &[0.0; 64]);
    for array in ["nope", ""] {
        fails_with(
            &["fill", &scene, &out, "--array", array],
            &format!("array `{array}` not found in Zarr group `{scene}`; it holds: data, mask"),
        );
    }
    // The array's own path instead of its group's: say which group and --array to give.
    fails_with(
        &["fill", &format!("{scene}/data"), &out],
        &format!("`{scene}/data` is a Zarr array, not a group: give the group that holds it, `{scene}`, with --array data"),
    );
    assert!(!complete(&out));
}

#[test]
fn rank_one_array_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("line.zarr");
    std::fs::create_dir_all(g.join("data")).unwrap();
    std::fs::write(
        g.join("zarr.json"),
        r#"{"zarr_format":3,"node_type":"group","attributes":{}}"#,
    )
    .unwrap();
    std::fs::write(
        g.join("data/zarr.json"),
        r#"{"zarr_format":3,"node_type":"array","shape":[10],"data_type":"float32",
            "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[10]}},
            "chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},
            "fill_value":"NaN","codecs":[{"name":"bytes","configuration":{"endian":"little"}}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out.zarr").display().to_string();
    fails_with(
        &["fill", &g.display().to_string(), &out],
        "has shape [10]; expected [y, x]",
    );
    assert!(!complete(&out));
}

#[test]
fn bad_flags_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let out = dir.path().join("out.zarr").display().to_string();
    write(
        &input,
        &[1, 40, 40],
        (64, 64),
        &synthetic(&[1, 40, 40], 0.2, 1),
    );
    fails_with(
        &["fill", &input, &out, "--tile", "32", "--overlap", "32"],
        "--overlap 32 must be smaller than --tile 32",
    );
    fails_with(&["fill", &input, &out, "--method", "magic"], "magic");
    fails_with(
        &["fill", &input, &out, "--method", "diffusion"],
        "--checkpoint",
    );
    fails_with(
        &["fill", &input, &out, "--tile", "18446744073709551615"],
        "--tile 18446744073709551615 must be from 1 to 8192",
    );
    fails_with(&["fill", &input, &out, "--eta", "NaN"], "--eta NaN must be");
    fails_with(
        &["fill", &input, &out, "--members"],
        "--members needs --method diffusion",
    );
    fails_with(
        &["fill", &input, &out, "--max-distance", "0"],
        "--max-distance must be at least 1",
    );
    // A keep array that does not exist is named with what the group holds.
    let err = fails_with(&["fill", &input, &out, "--keep-array", "collar"], "collar");
    assert!(err.contains("it holds: data"), "{err}");
    // `import` of something that is not a TIFF names the file.
    let not_tiff = dir.path().join("scene.tif");
    std::fs::write(&not_tiff, b"GIF89a, not a TIFF").unwrap();
    let not_tiff = not_tiff.display().to_string();
    let err = fails_with(&["import", &not_tiff, &out], "not a TIFF file");
    assert!(err.contains(&not_tiff), "{err}");
    assert!(!std::path::Path::new(&out).exists());
    // A device that cannot be opened stops the run at once, even for a method that never uses
    // it, instead of failing tile by tile or being ignored.
    fails_with(
        &["fill", &input, &out, "--device", "tpu"],
        "--device tpu: invalid device 'tpu'",
    );
    fails_with(
        &["fill", &input, &out, "--device", "cuda:99"],
        "--device cuda:99: cannot open device cuda:99",
    );
    assert!(!complete(&out));
}

#[test]
fn unreachable_broker_fails_fast_with_the_url_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let out = dir.path().join("out.zarr").display().to_string();
    write(
        &input,
        &[1, 40, 40],
        (64, 64),
        &synthetic(&[1, 40, 40], 0.2, 1),
    );
    let started = std::time::Instant::now();
    fails_with(
        &[
            "submit",
            &input,
            &out,
            "--broker",
            "amqp://guest:s3cret@127.0.0.1:1/%2f",
        ],
        "127.0.0.1:1",
    );
    let out = terrafill(&["worker", "--broker", "amqp://guest:s3cret@127.0.0.1:1/%2f"]);
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("s3cret"),
        "password leaked"
    );
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn bad_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[worker]\nbatchsize = 3\n").unwrap();
    fails_with(
        &[
            "--config",
            &cfg.display().to_string(),
            "status",
            "job-1",
            "--output",
            "x.zarr",
        ],
        "batchsize",
    );
}

#[test]
fn eval_refuses_what_it_cannot_score() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [1, 24, 24];
    write(
        &url("truth.zarr"),
        &shape,
        (64, 64),
        &synthetic(&shape, 0.0, 3),
    );
    // The gapped input itself: no `filled` array and no --mask, so which pixels to score is
    // unknown.
    write(
        &url("gappy.zarr"),
        &shape,
        (64, 64),
        &synthetic(&shape, 0.3, 3),
    );
    fails_with(
        &["eval", &url("gappy.zarr"), &url("truth.zarr")],
        "has no `filled` array",
    );
    // An output that filled nothing (`identity` keeps the gaps): nothing to score.
    let out = terrafill(&[
        "fill",
        &url("gappy.zarr"),
        &url("same.zarr"),
        "--method",
        "identity",
    ]);
    assert!(out.status.success());
    fails_with(
        &["eval", &url("same.zarr"), &url("truth.zarr")],
        "no pixel to score",
    );
}

#[test]
fn bad_pixel_values_are_refused_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [2, 30, 30];
    let plane = 30 * 30;
    let values = synthetic(&shape, 0.2, 5);
    // Masks with NaN, 2 and 255 (GDAL's "valid" value): refused, not read as "missing".
    for (bad, shown) in [(f32::NAN, "NaN"), (2.0, "2"), (255.0, "255")] {
        let input = url(&format!("mask-{shown}.zarr"));
        write(&input, &shape, (64, 64), &values);
        let mut mask = vec![0.0_f32; plane];
        mask[7 * 30 + 11] = 1.0;
        mask[12 * 30 + 3] = bad;
        write_array(&input, "mask", &[30, 30], (64, 64), &mask);
        let out = url(&format!("out-{shown}.zarr"));
        fails_with(
            &["fill", &input, &out, "--mask-array", "mask"],
            &format!(
                "holds {shown} at y=12, x=3; a mask must hold only 0 (observed) and 1 (missing)"
            ),
        );
        assert!(!complete(&out));
    }
    // Infinity in the data would spread into every pixel filled from it.
    let mut with_inf = values.clone();
    let at = plane + 4 * 30 + 9;
    with_inf[at] = f32::NEG_INFINITY;
    write(&url("inf.zarr"), &shape, (64, 64), &with_inf);
    fails_with(
        &["fill", &url("inf.zarr"), &url("out-inf.zarr")],
        "holds -inf at band=1, y=4, x=9",
    );
    assert!(!complete(&url("out-inf.zarr")));
    // A masked-out infinity is missing, not an error.
    let mut mask = vec![0.0_f32; 2 * plane];
    mask[at] = 1.0;
    write_array(&url("inf.zarr"), "mask", &shape, (64, 64), &mask);
    let out = terrafill(&[
        "fill",
        &url("inf.zarr"),
        &url("masked-inf.zarr"),
        "--mask-array",
        "mask",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read(&url("masked-inf.zarr"), "data")
        .iter()
        .all(|v| v.is_finite()));
    // Nothing observed: nothing to fill from.
    write(
        &url("empty.zarr"),
        &shape,
        (64, 64),
        &vec![f32::NAN; 2 * plane],
    );
    fails_with(
        &["fill", &url("empty.zarr"), &url("out-empty.zarr")],
        "has no observed pixel",
    );
    assert!(!complete(&url("out-empty.zarr")));
}

#[test]
fn boolean_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bool.zarr").display().to_string();
    let status = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, numpy as np, zarr\n\
             g = zarr.open_group(sys.argv[1], mode='w')\n\
             a = g.create_array('data', shape=(1, 8, 8), dtype=bool)\n\
             a[:] = np.eye(8, dtype=bool)[None]",
            &input,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.path().join("out.zarr").display().to_string();
    fails_with(&["fill", &input, &out], "unsupported data type `bool");
}

#[test]
fn input_output_and_staging_may_not_nest() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [1, 20, 20];
    write(
        &url("in.zarr"),
        &shape,
        (64, 64),
        &synthetic(&shape, 0.2, 2),
    );
    let before = read(&url("in.zarr"), "data");
    let input = url("in.zarr");
    for (extra, needle) in [
        (vec![input.clone()], "the output"),
        (vec![url("in.zarr/out.zarr")], "the output"),
        (vec![url("in.zarr/../in.zarr/")], "the output"),
        (
            vec![url("out.zarr"), "--staging".into(), input.clone()],
            "the staging",
        ),
        (
            vec![url("out.zarr"), "--staging".into(), url("out.zarr/st")],
            "the staging",
        ),
        (
            vec![url("out.zarr"), "--staging".into(), url("in.zarr/st")],
            "the staging",
        ),
    ] {
        let mut args = vec!["fill".to_owned(), input.clone()];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails_with(&args, needle);
        assert!(err.contains("must not be the"), "{err}");
    }
    // The input is untouched and no output or staging was created.
    assert_eq!(bits(&read(&url("in.zarr"), "data")), bits(&before));
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("in.zarr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !entries
            .iter()
            .any(|e| e.contains("out") || e.contains("st")),
        "{entries:?}"
    );
    assert!(!dir.path().join("out.zarr").exists());
}

#[test]
fn an_output_owned_by_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [1, 64, 64];
    write(
        &url("in.zarr"),
        &shape,
        (32, 32),
        &synthetic(&shape, 0.3, 4),
    );
    // An unfinished output of another job (its coordinator died after creating it).
    runtime()
        .block_on(zarr_io::claim(&url("out.zarr"), "job-other"))
        .unwrap();
    fails_with(
        &["fill", &url("in.zarr"), &url("out.zarr")],
        "belongs to job job-other",
    );
    assert!(!complete(&url("out.zarr")));
    // Two fills with different settings racing for one output: exactly one wins, and the output
    // is that one's mosaic, byte for byte.
    let run = |tile: &str| {
        bin()
            .args(["fill", &url("in.zarr"), &url("race.zarr"), "--tile", tile])
            .args(["--overlap", "8", "--method", "idw"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run("32"), run("48"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_ne!(
        a.status.success(),
        b.status.success(),
        "a: {}\nb: {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (winner, loser) = if a.status.success() {
        ("32", &b)
    } else {
        ("48", &a)
    };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.contains("belongs to job") || err.contains("already holds a complete mosaic"),
        "{err}"
    );
    let clean = terrafill(&[
        "fill",
        &url("in.zarr"),
        &url("clean.zarr"),
        "--tile",
        winner,
        "--overlap",
        "8",
        "--method",
        "idw",
    ]);
    assert!(clean.status.success());
    assert_eq!(
        bits(&read(&url("race.zarr"), "data")),
        bits(&read(&url("clean.zarr"), "data"))
    );
}

#[test]
fn a_missing_bucket_is_named_as_such() {
    let bucket = format!("no-such-bucket-{}", std::process::id());
    let input = s3_prefix("x").replacen(
        &std::env::var("TERRAFILL_TEST_S3_BUCKET").unwrap(),
        &bucket,
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.zarr").display().to_string();
    let err = fails_with(&["fill", &format!("{input}/in.zarr"), &out], &bucket);
    assert!(
        err.contains("NoSuchBucket") || err.to_lowercase().contains("bucket does not exist"),
        "{err}"
    );
    assert!(!err.contains("not a Zarr group"), "{err}");
}

#[test]
fn damaged_files_and_mismatched_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [1, 40, 40];
    let input = url("in.zarr");
    write(&input, &shape, (16, 16), &synthetic(&shape, 0.2, 4));
    // A negative number is an invalid value of the flag, not an unknown argument.
    fails_with(
        &["fill", &input, &url("o1.zarr"), "--overlap", "-1"],
        "invalid value '-1' for '--overlap",
    );
    // Group metadata that is not JSON.
    let broken = url("broken-group.zarr");
    write(&broken, &shape, (16, 16), &synthetic(&shape, 0.2, 4));
    std::fs::write(format!("{broken}/zarr.json"), "{\"zarr_format\": 3, \"node").unwrap();
    fails_with(&["fill", &broken, &url("o2.zarr")], "broken-group.zarr");
    assert!(!complete(&url("o2.zarr")));
    // Array metadata that is not JSON.
    let broken = url("broken-array.zarr");
    write(&broken, &shape, (16, 16), &synthetic(&shape, 0.2, 4));
    std::fs::write(format!("{broken}/data/zarr.json"), "[1, 2").unwrap();
    fails_with(&["fill", &broken, &url("o3.zarr")], "broken-array.zarr");
    assert!(!complete(&url("o3.zarr")));
    // A chunk whose bytes do not decode: the error names the array and the chunk.
    let broken = url("broken-chunk.zarr");
    write(&broken, &shape, (16, 16), &synthetic(&shape, 0.2, 4));
    let chunk = chunk_files(std::path::Path::new(&broken), "data")
        .into_iter()
        .next()
        .expect("a stored chunk");
    std::fs::write(&chunk, b"not a chunk").unwrap();
    fails_with(&["fill", &broken, &url("o4.zarr")], "broken-chunk.zarr");
    assert!(!complete(&url("o4.zarr")));
    // A checkpoint trained on another band count than the scene's.
    let demo = root().join("assets/demo/landsat7_crop.safetensors");
    fails_with(
        &[
            "fill",
            &input,
            &url("o5.zarr"),
            "--method",
            "diffusion",
            "--checkpoint",
            &demo.display().to_string(),
        ],
        "band",
    );
    assert!(!complete(&url("o5.zarr")));
    // eval of two scenes of different shapes.
    let other = url("other.zarr");
    write(
        &other,
        &[1, 40, 41],
        (16, 16),
        &synthetic(&[1, 40, 41], 0.0, 4),
    );
    let filled = url("filled.zarr");
    assert!(terrafill(&["fill", &input, &filled]).status.success());
    fails_with(&["eval", &filled, &other], "shape");
    // train on a scene smaller than the model's tile.
    fails_with(
        &[
            "train",
            &input,
            "--checkpoint",
            &url("m.safetensors"),
            "--model",
            "base",
        ],
        "tile",
    );
    assert!(!std::path::Path::new(&url("m.safetensors")).exists());
}

#[test]
fn missing_aws_credentials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.zarr").display().to_string();
    // No credentials in the environment: object_store asks the instance metadata service, here
    // a closed local port, and the error must say what was missing rather than only that.
    let output = bin()
        .args(["fill", "s3://terrafill-no-credentials/in.zarr", &out])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("no AWS credentials were found in the environment")
            && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!complete(&out));
}
