//! `terrafill train` and `fill --method diffusion` end to end with a tiny model: every gap filled,
//! observed pixels kept, `spread` written, the same seed gives the same bytes, and bad
//! checkpoints give clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn tiny_model_fills_deterministically_with_spread() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let ckpt = dir.path().join("m.safetensors").display().to_string();
    let shape = [2u64, 64, 56];
    let values = synthetic(&shape, 0.2, 4);
    write(&input, &shape, (32, 32), &values);
    let out = train_tiny(&input, &ckpt, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 30 steps"));

    let fill_with = |name: &str, seed: &str, extra: &[&str]| {
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
            "--steps",
            "4",
            "--seed",
            seed,
            "--device",
            "cpu",
        ];
        args.extend(extra);
        assert!(terrafill(&args).status.success());
        output
    };
    let fill = |name: &str, seed: &str| fill_with(name, seed, &[]);
    let a = fill("a.zarr", "1");
    let b = fill("b.zarr", "1");
    let c = fill("c.zarr", "2");
    let (da, db, dc) = (read(&a, "data"), read(&b, "data"), read(&c, "data"));
    assert_eq!(bits(&da), bits(&db), "same seed, different bytes");
    assert_ne!(
        bits(&da),
        bits(&dc),
        "a different seed should give different samples"
    );
    let spread = read(&a, "spread");
    let filled = read(&a, "filled");
    for i in 0..values.len() {
        if values[i].is_nan() {
            assert!(da[i].is_finite(), "gap pixel {i} unfilled");
            assert_eq!(filled[i], 1.0);
            assert!(spread[i].is_finite() && spread[i] >= 0.0);
        } else {
            assert_eq!(
                da[i].to_bits(),
                values[i].to_bits(),
                "observed pixel {i} changed"
            );
            assert_eq!(spread[i], 0.0);
        }
    }

    // Every member on request: `members` [member, band, y, x] copies the observed pixels, and
    // in the gaps has `data` as its mean and `spread` as its standard deviation; `data` keeps
    // its bytes.
    let m = fill_with("m.zarr", "1", &["--members"]);
    assert_eq!(bits(&read(&m, "data")), bits(&da));
    let members = runtime().block_on(async {
        let s = zarr_io::Scene::open_members(&m).await.unwrap();
        assert_eq!(s.shape(), [2, 2, 64, 56]);
        assert_eq!(s.dimension_names(), ["member", "band", "y", "x"]);
        let all = zarr_io::Window::new(0, 0, 64, 56);
        s.read_window(all).await.unwrap().values
    });
    let n = values.len();
    let ranges: Vec<(f32, f32)> = values
        .chunks(64 * 56)
        .map(|plane| {
            let observed = plane.iter().filter(|v| v.is_finite());
            let lo = observed.clone().fold(f32::INFINITY, |a, &v| a.min(v));
            (lo, observed.fold(f32::NEG_INFINITY, |a, &v| a.max(v)))
        })
        .collect();
    let (mut var, mut spread2) = (0.0, 0.0);
    for i in 0..n {
        let (a, b) = (members[i], members[n + i]);
        if values[i].is_nan() {
            // Members stay within the band's observed range (clamped, so their mean may leave
            // `data` where a member hits a bound, by less than the spread).
            let band = i / (64 * 56);
            let (lo, hi) = ranges[band];
            assert!(
                (lo..=hi).contains(&a) && (lo..=hi).contains(&b),
                "pixel {i}: {a}, {b}"
            );
            let mean = (f64::from(a) + f64::from(b)) / 2.0;
            let tol = 1e-4 * (1.0 + f64::from(da[i]).abs()) + f64::from(spread[i]);
            assert!(
                (mean - f64::from(da[i])).abs() <= tol,
                "pixel {i}: {a}, {b} vs {}",
                da[i]
            );
            var += (f64::from(a) - f64::from(b)).powi(2) / 2.0;
            spread2 += f64::from(spread[i]).powi(2);
        } else {
            assert_eq!(
                (a.to_bits(), b.to_bits()),
                (values[i].to_bits(), values[i].to_bits())
            );
        }
    }
    // Where tiles overlap the members are blended so as to keep their dispersion: overall it
    // matches `spread` (equal inside a tile, within sampling noise across overlaps), less what
    // clamping to the observed range takes off.
    let ratio = (var / spread2).sqrt();
    assert!(
        (0.8..1.25).contains(&ratio),
        "members' sd / spread = {ratio}"
    );
    // eval scores the members as an ensemble.
    let truth = dir.path().join("truth.zarr").display().to_string();
    write(&truth, &shape, (32, 32), &synthetic(&shape, 0.0, 4));
    let out = terrafill(&["eval", &m, &truth]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ensemble = &report["ensemble"];
    assert_eq!(ensemble["members"], 2);
    let ranks: Vec<u64> = serde_json::from_value(ensemble["rank_histogram"].clone()).unwrap();
    assert_eq!(ranks.len(), 3);
    assert_eq!(
        serde_json::json!(ranks.iter().sum::<u64>()),
        ensemble["pixels"]
    );
    assert!(ensemble["crps_fair"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    write(
        &input,
        &[1, 32, 32],
        (32, 32),
        &synthetic(&[1, 32, 32], 0.2, 1),
    );
    let missing = dir.path().join("missing.safetensors").display().to_string();
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "diffusion",
        "--checkpoint",
        &missing,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.safetensors"));
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let corrupt = corrupt.display().to_string();
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "diffusion",
        "--checkpoint",
        &corrupt,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.safetensors"));
    assert!(!std::path::Path::new(&output).join("zarr.json").exists());
}

#[test]
fn train_serves_its_progress_as_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let ckpt = dir.path().join("m.safetensors").display().to_string();
    let shape = [2u64, 64, 56];
    write(&input, &shape, (32, 32), &synthetic(&shape, 0.2, 5));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bin()
        .args([
            "train",
            &input,
            "--checkpoint",
            &ckpt,
            "--model",
            "small",
            "--steps",
            "100000",
            "--tile",
            "16",
            "--batch",
            "3",
            "--metrics-addr",
            &addr,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut exposition = String::new();
    wait_for(
        "three training steps",
        std::time::Duration::from_secs(120),
        || {
            exposition = http_get(port, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            metric_value(&exposition, "terrafill_train_steps_total").unwrap_or(0.0) >= 3.0
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("{exposition}");
    let value = |m: &str| metric_value(&exposition, m).unwrap_or_else(|| panic!("no {m}"));
    let steps = value("terrafill_train_steps_total");
    assert_eq!(value("terrafill_train_steps_planned"), 100_000.0);
    assert_eq!(value("terrafill_train_batch_size"), 3.0);
    assert_eq!(value("terrafill_train_samples_total"), 3.0 * steps);
    assert_eq!(value("terrafill_train_step_seconds_count"), steps);
    assert!(value("terrafill_train_step_seconds_sum") > 0.0);
    let loss = value("terrafill_train_loss");
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    assert!(
        exposition.contains("service=\"train\""),
        "build info names the service"
    );
    assert_eq!(value("terrafill_build_info"), 1.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") > 0.0);
}
