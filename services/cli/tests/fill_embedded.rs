//! `terrafill fill` in embedded mode on real Zarr files: identity is bit-exact (3-D and 4-D,
//! sizes that are not multiples of the stride), idw fills every gap and keeps observed pixels,
//! and the output opens in zarr-python and xarray with the input's names and attributes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn identity_reproduces_3d_and_4d_scenes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for (name, shape) in [("s3d", vec![3u64, 300, 257]), ("s4d", vec![2, 3, 130, 97])] {
        let input = dir
            .path()
            .join(format!("{name}.zarr"))
            .display()
            .to_string();
        let output = dir
            .path()
            .join(format!("{name}-out.zarr"))
            .display()
            .to_string();
        let values = synthetic(&shape, 0.2, 3);
        write(&input, &shape, (128, 128), &values);
        let out = terrafill(&[
            "fill",
            &input,
            &output,
            "--method",
            "identity",
            "--tile",
            "64",
            "--overlap",
            "16",
        ]);
        assert!(out.status.success());
        assert_eq!(
            bits(&read(&output, "data")),
            bits(&values),
            "{name}: identity output differs"
        );
        assert!(read(&output, "filled").iter().all(|&f| f == 0.0));
    }
}

#[test]
fn several_stitchers_sharing_a_job_write_the_one_stitcher_mosaic() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| dir.path().join(name).display().to_string();
    let shape = [2u64, 230, 190];
    write(
        &url("in.zarr"),
        &shape,
        (64, 64),
        &synthetic(&shape, 0.3, 9),
    );
    let grid = ["--method", "idw", "--tile", "32", "--overlap", "8"];
    fill_ok(&url("in.zarr"), &url("one.zarr"), &grid);
    let mut shared = grid.to_vec();
    shared.extend(["--stitchers", "3", "--workers", "3"]);
    fill_ok(&url("in.zarr"), &url("three.zarr"), &shared);
    assert_eq!(
        bits(&read(&url("three.zarr"), "data")),
        bits(&read(&url("one.zarr"), "data")),
        "three stitchers wrote another mosaic than one"
    );
    assert_eq!(
        read(&url("three.zarr"), "filled"),
        read(&url("one.zarr"), "filled")
    );
}

#[test]
fn a_sparse_scene_is_planned_from_its_stored_chunks_and_every_gappy_tile_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sparse.zarr").display().to_string();
    interop("sparse_scene.py", &["write", &input]);
    // Both jobs stage in one place, which `status --list` then lists.
    let staging = dir.path().join("jobs.staging").display().to_string();
    // `zeros`: unstored chunks read as observed zeros; `holes`: unstored chunks are gaps.
    for array in ["zeros", "holes"] {
        let output = dir
            .path()
            .join(format!("{array}.zarr"))
            .display()
            .to_string();
        let job = format!("sparse-{array}");
        let grid_args = ["--tile", "64", "--overlap", "16"];
        let mut args = vec!["--array", array, "--method", "idw", "--job-id", &job];
        args.extend(grid_args);
        args.extend(["--staging", &staging]);
        fill_ok(&input, &output, &args);
        let out = terrafill(&["status", &job, "--staging", &staging]);
        assert!(out.status.success());
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let values = read(&input, array);
        let (h, w) = (768u64, 1024u64);
        let grid = tiling::TileGrid::new(h, w, 64, 16).unwrap();
        let gappy = |t: &tiling::Tile| {
            let win = t.window;
            (0..2u64).any(|b| {
                (win.y0..win.y1()).any(|y| {
                    (win.x0..win.x1()).any(|x| values[((b * h + y) * w + x) as usize].is_nan())
                })
            })
        };
        let want = grid.tiles().filter(gappy).count() as u64;
        assert_eq!(
            status["tiles_dirty"].as_u64(),
            Some(want),
            "{array}: the plan's dirty tiles differ from a pixel-by-pixel scan"
        );
        let data = read(&output, "data");
        for (i, (&v, &d)) in values.iter().zip(&data).enumerate() {
            if v.is_nan() {
                assert!(d.is_finite(), "{array}: gap pixel {i} left unfilled");
            } else {
                assert_eq!(
                    d.to_bits(),
                    v.to_bits(),
                    "{array}: observed pixel {i} changed"
                );
            }
        }
        // Of the 6 × 8 output chunks, those the input does not store and no gap touches are never
        // written when they read as observed (`zeros`); every chunk is a gap in `holes`.
        let stored = chunk_files(std::path::Path::new(&output), "data").len();
        match array {
            "zeros" => assert!(stored < 24, "zeros: {stored} of 48 output chunks written"),
            _ => assert_eq!(stored, 48, "holes: every output chunk holds filled pixels"),
        }
    }
    let out = terrafill(&["status", "--list", "--staging", &staging]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<(&str, &str)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job_id"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("sparse-holes", "succeeded"), ("sparse-zeros", "succeeded")]
    );
}

#[test]
fn idw_fills_every_gap_and_keeps_observed_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    let shape = [3u64, 200, 170];
    let values = synthetic(&shape, 0.3, 5);
    write(&input, &shape, (64, 64), &values);
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "idw",
        "--tile",
        "64",
        "--overlap",
        "16",
    ]);
    assert!(out.status.success());
    let data = read(&output, "data");
    let filled = read(&output, "filled");
    let truth = synthetic(&shape, 0.0, 5);
    let (mut err2, mut n) = (0.0f64, 0usize);
    for i in 0..values.len() {
        if values[i].is_nan() {
            assert!(data[i].is_finite(), "gap pixel {i} left unfilled");
            assert_eq!(filled[i], 1.0);
            err2 += f64::from(data[i] - truth[i]).powi(2);
            n += 1;
        } else {
            assert_eq!(
                data[i].to_bits(),
                values[i].to_bits(),
                "observed pixel {i} changed"
            );
            assert_eq!(filled[i], 0.0);
        }
    }
    let rmse = (err2 / n as f64).sqrt();
    // The field varies by ±40 around its band offset; a sensible interpolation stays far below.
    assert!(rmse < 6.0, "idw RMSE {rmse} on a smooth field");

    // `eval` scores exactly the filled pixels against the truth.
    let truth_url = dir.path().join("truth.zarr").display().to_string();
    write(&truth_url, &shape, (64, 64), &truth);
    let out = terrafill(&["eval", &output, &truth_url, "--variogram", "3", "--seams"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["overall"]["pixels"].as_u64(), Some(n as u64));
    let reported = report["overall"]["rmse"].as_f64().unwrap();
    assert!(
        (reported - rmse).abs() < 1e-3 * rmse.max(1.0),
        "eval RMSE {reported} vs {rmse}"
    );
    assert_eq!(report["variogram"].as_array().map(Vec::len), Some(3));
    // The seam metric on the fill's own tile grid (from its provenance), with the truth's as the
    // noise floor: idw tiles are exactly the whole-scene fill, so the fill has no seam of its own.
    let seams = &report["seams"];
    assert_eq!(seams["tile"].as_u64(), Some(64));
    let (pred, truth) = (
        seams["prediction"]["score"].as_f64().unwrap(),
        seams["truth"]["score"].as_f64().unwrap(),
    );
    assert!(pred.is_finite() && truth.is_finite(), "{seams}");
}

#[test]
fn rerunning_a_finished_job_is_a_no_op_and_a_different_job_cannot_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    let shape = [1u64, 90, 80];
    write(&input, &shape, (64, 64), &synthetic(&shape, 0.2, 9));
    assert!(
        terrafill(&["fill", &input, &output, "--tile", "32", "--overlap", "8"])
            .status
            .success()
    );
    let first = read(&output, "data");
    let again = terrafill(&["fill", &input, &output, "--tile", "32", "--overlap", "8"]);
    assert!(again.status.success());
    assert_eq!(bits(&read(&output, "data")), bits(&first));
    let other = terrafill(&["fill", &input, &output, "--tile", "48", "--overlap", "8"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("already holds a complete mosaic"));
}

#[test]
fn output_opens_in_zarr_python_and_xarray_with_names_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    let shape = [2u64, 3, 70, 60];
    write(&input, &shape, (32, 32), &synthetic(&shape, 0.25, 2));
    assert!(
        terrafill(&["fill", &input, &output, "--tile", "32", "--overlap", "8"])
            .status
            .success()
    );
    let script = root().join("tests/interop/check_output.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "interop check failed");
}

/// Runs a Python reference script (it writes a prediction and a truth group and prints its
/// scores) and `terrafill eval` on what it wrote; returns both JSON reports.
fn reference_and_eval(script: &str) -> (serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.zarr").display().to_string();
    let truth = dir.path().join("truth.zarr").display().to_string();
    let out = std::process::Command::new(python())
        .arg(root().join("tests/interop").join(script))
        .arg(&pred)
        .arg(&truth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = terrafill(&["eval", &pred, &truth]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (reference, serde_json::from_slice(&out.stdout).unwrap())
}

/// Asserts `ours[key]` is within a relative `tolerance` of `reference[key]` for each key.
fn close(ours: &serde_json::Value, reference: &serde_json::Value, keys: &[&str], tolerance: f64) {
    for &key in keys {
        let (a, b) = (
            ours[key].as_f64().unwrap(),
            reference[key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < tolerance * b.abs(),
            "{key}: ours {a}, reference {b}"
        );
    }
}

#[test]
fn eval_scores_the_spread_like_properscoring() {
    let (reference, report) = reference_and_eval("crps_reference.py");
    let ours = &report["probabilistic"];
    assert_eq!(ours["pixels"], reference["pixels"]);
    close(ours, &reference, &["crps_gaussian", "spread_skill"], 1e-5);
}

#[test]
fn eval_scores_members_like_properscoring() {
    let (reference, report) = reference_and_eval("ensemble_reference.py");
    let ours = &report["ensemble"];
    for key in ["members", "pixels", "rank_histogram"] {
        assert_eq!(ours[key], reference[key], "{key}");
    }
    close(
        ours,
        &reference,
        &["crps_ensemble", "crps_fair", "spread_skill"],
        1e-6,
    );
}

#[test]
fn max_distance_and_keep_array_leave_pixels_missing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let (h, w) = (60usize, 64usize);
    let shape = [2u64, h as u64, w as u64];
    // A smooth field with a 30×30 hole in both bands and a 3-row no-data collar at the top.
    let mut values: Vec<f32> = (0..2 * h * w)
        .map(|i| ((i % w) as f32 * 0.1).sin() + (i / w % h) as f32 * 0.05)
        .collect();
    let hole = |y: usize, x: usize| (15..45).contains(&y) && (17..47).contains(&x);
    let collar = |y: usize| y < 3;
    for (i, v) in values.iter_mut().enumerate() {
        let (y, x) = (i / w % h, i % w);
        if hole(y, x) || collar(y) {
            *v = f32::NAN;
        }
    }
    write(&input, &shape, (32, 32), &values);
    let keep: Vec<f32> = (0..h * w)
        .map(|i| f32::from(u8::from(collar(i / w))))
        .collect();
    write_array(&input, "collar", &[h as u64, w as u64], (32, 32), &keep);

    let output = dir.path().join("out.zarr").display().to_string();
    let d = 5.0f64;
    let flags = [
        "--max-distance",
        "5",
        "--keep-array",
        "collar",
        "--tile",
        "32",
    ];
    fill_ok(&input, &output, &flags);
    let (data, filled) = (read(&output, "data"), read(&output, "filled"));
    for (i, (&v, &f)) in data.iter().zip(&filled).enumerate() {
        let (y, x) = (i / w % h, i % w);
        if collar(y) {
            assert!(v.is_nan() && f == 0.0, "collar pixel ({y}, {x}) was filled");
        } else if hole(y, x) {
            // Distance to the nearest observed pixel: out of the hole's nearest edge.
            let dy = (y - 14).min(45 - y) as f64;
            let dx = (x - 16).min(47 - x) as f64;
            let near = dy.min(dx) <= d;
            assert_eq!(v.is_finite(), near, "({y}, {x}) at {} px", dy.min(dx));
            assert_eq!(f == 1.0, near, "filled flag at ({y}, {x})");
        } else {
            assert_eq!(
                v.to_bits(),
                values[i].to_bits(),
                "observed ({y}, {x}) changed"
            );
        }
    }
    // Without the rule every gap is filled: the rule, not the method, left those pixels.
    let all = dir.path().join("all.zarr").display().to_string();
    fill_ok(&input, &all, &["--tile", "32"]);
    assert!(read(&all, "data").iter().all(|v| v.is_finite()));
}

#[test]
fn an_xarray_int16_scene_with_a_fill_value_and_coordinates_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("xr.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    let run = |args: &[&str]| interop("xarray_roundtrip.py", args);
    run(&["write", &input]);
    fill_ok(&input, &output, &["--array", "t2m", "--tile", "32"]);
    run(&["check", &input, &output]);
}

#[test]
fn a_geotiff_imports_fills_and_reopens_in_xarray_with_its_crs_and_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let tif = dir.path().join("scene.tif").display().to_string();
    let scene = dir.path().join("scene.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    let run = |args: &[&str]| interop("geotiff_roundtrip.py", args);
    run(&["write", &tif]);
    // `fill` points a GeoTIFF at `import` instead of failing on a missing zarr.json.
    let direct = terrafill(&["fill", &tif, &output]);
    assert!(!direct.status.success());
    assert!(String::from_utf8_lossy(&direct.stderr).contains("terrafill import"));
    let imported = terrafill(&["import", &tif, &scene]);
    assert!(imported.status.success());
    assert!(String::from_utf8_lossy(&imported.stdout).contains("EPSG:32618"));
    fill_ok(&scene, &output, &["--tile", "32"]);
    run(&["check", &tif, &output]);
}

/// Runs `tests/interop/SCRIPT ARGS…` with the test Python and asserts that it succeeded.
fn interop(script: &str, args: &[&str]) {
    let out = std::process::Command::new(python())
        .arg(root().join("tests/interop").join(script))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?}: {text}");
}
