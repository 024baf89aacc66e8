//! `demo`: the README's main job. Hides cloud-like gaps in the bundled real scene, fills them in
//! embedded mode and scores each fill against the withheld truth.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use coordinator::FillRequest;
use tiling::Window;
use zarr_io::Scene;

use crate::args::{DemoArgs, MethodArg};
use crate::config::Config;

/// The bundled scene (a clean crop of Landsat 7; see assets/demo/README.md).
const DEMO_SCENE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/demo/landsat7_crop.zarr"
);
/// The bundled checkpoint, trained on the demo scene with `terrafill train`.
const DEMO_CHECKPOINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/demo/landsat7_crop.safetensors"
);
/// Share of pixels hidden under synthetic clouds.
const GAP_FRACTION: f64 = 0.3;
/// Seed of the synthetic clouds.
const GAP_SEED: u64 = 7;

pub async fn demo(args: &DemoArgs, cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let truth = Scene::open(DEMO_SCENE, "data", None)
        .await
        .context("opening the bundled demo scene")?;
    let (h, w) = (truth.height(), truth.width());
    let values = truth.read_window(Window::new(0, 0, h, w)).await?.values;
    let mask = crate::gaps::cloud_mask(h as usize, w as usize, GAP_FRACTION, GAP_SEED);
    let plane = (h * w) as usize;
    let gapped: Vec<f32> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| if mask[i % plane] { f32::NAN } else { v })
        .collect();
    let input = path_url(&args.dir.join("input.zarr"));
    let spec = zarr_io::MosaicSpec::for_scene(&truth, truth.chunk_shape_yx(), false);
    zarr_io::write_scene(&input, "data", &spec, truth.group_attributes(), &gapped).await?;
    let hidden = mask.iter().filter(|&&m| m).count();
    println!(
        "demo scene: {} ({}×{}×{}), {:.1}% of pixels hidden under synthetic clouds",
        DEMO_SCENE.rsplit('/').next().unwrap_or(DEMO_SCENE),
        truth.shape()[0],
        h,
        w,
        100.0 * hidden as f64 / plane as f64
    );
    let methods = match args.method {
        Some(m) => vec![m],
        None if Path::new(DEMO_CHECKPOINT).exists() => vec![MethodArg::Idw, MethodArg::Diffusion],
        None => vec![MethodArg::Idw],
    };
    println!("| method | RMSE (DN) | NRMSE | SSIM | seconds | output |");
    println!("|---|---|---|---|---|---|");
    let select: Vec<bool> = (0..values.len()).map(|i| mask[i % plane]).collect();
    let shutdown = telemetry::shutdown_on_signal();
    for method in methods {
        let name = format!("{method:?}").to_lowercase();
        let output = args.dir.join(format!("filled-{name}.zarr"));
        remove_previous(&output)?;
        let mut req = FillRequest::new(&input, path_url(&output));
        req.method = super::fill::method(method);
        if method == MethodArg::Diffusion {
            req.checkpoint = Some(DEMO_CHECKPOINT.to_owned());
            req.tile = super::train::checkpoint_tile(DEMO_CHECKPOINT).await?;
            req.overlap = req.tile / 4;
        }
        let started = Instant::now();
        let registry = prometheus::Registry::new();
        crate::embedded::fill(&req, args.workers, cfg, &registry, &shutdown).await?;
        let seconds = started.elapsed().as_secs_f64();
        let filled = Scene::open(&path_url(&output), "data", None).await?;
        let pred = filled.read_window(Window::new(0, 0, h, w)).await?.values;
        let r = scoring::score(&pred, &values, Some(&select), h as usize, w as usize).overall;
        println!(
            "| {name} | {:.2} | {:.3} | {:.3} | {:.1} | {} |",
            r.rmse,
            r.nrmse,
            r.ssim,
            seconds,
            output.display()
        );
    }
    println!("input with gaps: {}", args.dir.join("input.zarr").display());
    Ok(())
}

fn path_url(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A demo re-run starts clean (outputs and staging of the previous run).
fn remove_previous(output: &PathBuf) -> anyhow::Result<()> {
    let staging = PathBuf::from(format!("{}.staging", output.display()));
    for p in [output, &staging] {
        if p.exists() {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}
