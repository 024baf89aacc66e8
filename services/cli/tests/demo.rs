//! The README's main job: `terrafill demo` fills the bundled scene and scores it against the
//! withheld truth (idw here, to keep the test fast; the diffusion path is covered by
//! `diffusion.rs`, and the bundled checkpoint must load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn demo_fills_the_bundled_scene_and_prints_its_score() {
    let dir = tempfile::tempdir().unwrap();
    // An installed binary: a copy elsewhere, run from another directory, still finds its assets.
    let installed = dir.path().join("bin/terrafill");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_terrafill"), &installed).unwrap();
    let demo_dir = dir.path().join("demo");
    let d = demo_dir.display().to_string();
    let run = || {
        std::process::Command::new(&installed)
            .args(["demo", "--dir", &d, "--method", "idw"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let started = std::time::Instant::now();
    let out = run();
    let first = started.elapsed();
    let (text, log) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("{text}{log}");
    assert!(out.status.success());
    let row = text
        .lines()
        .find(|l| l.starts_with("| idw |"))
        .expect("a score row for idw");
    let rmse: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
    // The bundled scene's bands span ~0-255 DN; a working fill is far below the band spread.
    assert!(rmse > 0.0 && rmse < 100.0, "idw RMSE {rmse}");
    for written in ["input.zarr", "truth.zarr", "filled-idw.zarr"] {
        assert!(
            demo_dir.join(written).join("zarr.json").exists(),
            "{written}"
        );
    }
    let png = std::fs::read(demo_dir.join("filled-idw.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Not on a terminal: progress comes as plain lines counting tiles.
    assert!(
        log.lines().any(|l| l.contains("tiles") && l.contains('%')),
        "no progress line in: {log}"
    );

    // A re-run prints the stored table at once, with the same row.
    let started = std::time::Instant::now();
    let again = run();
    assert!(again.status.success());
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("previous run"), "{text}");
    assert!(text.lines().any(|l| l == row), "{text}");
    assert!(started.elapsed() < first, "the re-run recomputed");
}

#[test]
fn bundled_checkpoint_loads_and_names_its_tile() {
    let ckpt = root().join("assets/demo/landsat7_crop.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    let model = model::FillModel::from_checkpoint(&bytes, &model::Device::Cpu).unwrap();
    // Trained at `train`'s CPU defaults: the base preset, 64-px tiles.
    assert_eq!(model.tile_size(), 64);
    assert_eq!(model.lead_shape(), &[3]);
    assert_eq!(model.history().preset.as_deref(), Some("base"));
}
