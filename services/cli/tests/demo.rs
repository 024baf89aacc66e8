//! The README's main job: `terrafill demo` fills the bundled scene and scores it against the
//! withheld truth (idw here, to keep the test fast; the diffusion path is covered by
//! `diffusion.rs`, and the bundled checkpoint must load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn demo_fills_the_bundled_scene_and_prints_its_score() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = terrafill(&["demo", "--dir", &d, "--method", "idw"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("| idw |"))
        .expect("a score row for idw");
    let rmse: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
    // The bundled scene's bands span ~0-255 DN; a working fill is far below the band spread.
    assert!(rmse > 0.0 && rmse < 100.0, "idw RMSE {rmse}");
    assert!(dir.path().join("input.zarr/zarr.json").exists());
    assert!(dir.path().join("filled-idw.zarr/zarr.json").exists());
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
