//! The bundled real scene (Landsat 7, Zarr v3, float32 with a `mask` array) reads correctly.

use anyhow::ensure;
use zarr_io::{Scene, Window};

/// `../shared/data` beside the repository (the layout CI and every checkout have).
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/data/landsat7_rgb.zarr"
);

#[tokio::test]
async fn landsat_sample_masked_pixels_are_nan() -> anyhow::Result<()> {
    let scene = Scene::open(SAMPLE, "data", Some("mask")).await?;
    ensure!(scene.shape() == [3, 718, 791]);
    ensure!(scene.dimension_names() == ["band", "y", "x"]);
    ensure!(scene.chunk_shape_yx() == (256, 256));
    ensure!(scene.group_attributes().contains_key("crs"));
    // Crosses chunk borders in both directions and includes the no-data collar at the top-left.
    let w = Window::new(200, 0, 120, 300);
    let tile = scene.read_window(w).await?;
    ensure!(tile.shape == vec![3, 120, 300]);
    let mask = Scene::open(SAMPLE, "mask", None)
        .await?
        .read_window(w)
        .await?;
    let raw = Scene::open(SAMPLE, "data", None)
        .await?
        .read_window(w)
        .await?;
    let mut masked = 0;
    for ((v, m), r) in tile.values.iter().zip(&mask.values).zip(&raw.values) {
        if *m != 0.0 {
            masked += 1;
            ensure!(v.is_nan(), "masked pixel is {v}");
        } else {
            // Unmasked pixels come through bit-exactly.
            ensure!(v.to_bits() == r.to_bits() || (v.is_nan() && r.is_nan()));
        }
    }
    ensure!(masked > 0, "window should contain masked pixels");
    ensure!(
        tile.values.iter().any(|v| v.is_finite()),
        "window should contain observed pixels"
    );
    Ok(())
}
