//! Bad input gives a one-line error naming the cause, a non-zero exit and no output that looks
//! complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn fails_with(args: &[&str], needle: &str) {
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
    fails_with(&["fill", &plain.display().to_string(), &out], "not a Zarr");
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
