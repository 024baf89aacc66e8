//! `demo`: the README's main job. Hides cloud-like gaps in the bundled real scene, fills them in
//! embedded mode, scores each fill against the withheld truth and draws a preview of each.
//!
//! The scene and checkpoint are compiled into the binary and unpacked into the demo directory, so
//! an installed or moved binary runs the demo too. A re-run with the same binary and methods prints
//! the stored results at once; delete the directory (or pass another `--dir`) to recompute.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use coordinator::FillRequest;
use serde::{Deserialize, Serialize};
use tiling::Window;
use zarr_io::Scene;

use crate::args::{DemoArgs, MethodArg};
use crate::config::Config;

/// The bundled scene (a clean crop of Landsat 7; see assets/demo/README.md), file by file.
const SCENE: [(&str, &[u8]); 6] = [
    (
        "zarr.json",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/zarr.json"),
    ),
    (
        "data/zarr.json",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/data/zarr.json"),
    ),
    (
        "data/c/0/0/0",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/data/c/0/0/0"),
    ),
    (
        "data/c/0/0/1",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/data/c/0/0/1"),
    ),
    (
        "data/c/0/1/0",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/data/c/0/1/0"),
    ),
    (
        "data/c/0/1/1",
        include_bytes!("../../../../assets/demo/landsat7_crop.zarr/data/c/0/1/1"),
    ),
];
/// The bundled checkpoint, trained on the demo's gapped input with `terrafill train`.
const CHECKPOINT: &[u8] = include_bytes!("../../../../assets/demo/landsat7_crop.safetensors");
/// Share of pixels hidden under synthetic clouds.
const GAP_FRACTION: f64 = 0.3;
/// Seed of the synthetic clouds.
const GAP_SEED: u64 = 7;
/// Where a run's results are kept, for re-runs.
const RESULTS: &str = "results.json";

/// One row of the demo's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    method: String,
    rmse: f64,
    nrmse: f64,
    ssim: f64,
    seconds: f64,
    output: String,
    preview: String,
}

/// What a run wrote: the rows, and what they depend on.
#[derive(Debug, Serialize, Deserialize)]
struct Results {
    /// The binary that wrote them (see [`binary_fingerprint`]).
    binary: String,
    methods: Vec<String>,
    rows: Vec<Row>,
}

pub async fn demo(args: &DemoArgs, cfg: &Config) -> anyhow::Result<()> {
    let dir = &args.dir;
    let methods = match args.method {
        Some(m) => vec![m],
        None => vec![MethodArg::Idw, MethodArg::Diffusion],
    };
    let names: Vec<String> = methods.iter().map(|m| method_name(*m)).collect();
    if let Some(previous) = previous_results(dir, &names) {
        println!(
            "results of the previous run in {} (remove it to recompute):",
            dir.display()
        );
        print_table(&previous.rows);
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (scene_dir, checkpoint) = unpack_assets(dir)?;
    let truth = Scene::open(&path_url(&scene_dir), "data", None)
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
    let spec = zarr_io::MosaicSpec::for_scene(&truth, truth.chunk_shape_yx(), false);
    let input = path_url(&dir.join("input.zarr"));
    let truth_url = path_url(&dir.join("truth.zarr"));
    for (url, v) in [(&input, &gapped), (&truth_url, &values)] {
        remove_previous(Path::new(url))?;
        zarr_io::write_scene(url, "data", &spec, truth.group_attributes(), v).await?;
    }
    let hidden = mask.iter().filter(|&&m| m).count();
    println!(
        "demo scene: landsat7_crop.zarr ({}×{h}×{w}), {:.1}% of pixels hidden under synthetic clouds",
        truth.shape()[0],
        100.0 * hidden as f64 / plane as f64
    );
    println!("input with gaps: {input}; the hidden truth: {truth_url}");
    let select: Vec<bool> = (0..values.len()).map(|i| mask[i % plane]).collect();
    let shutdown = telemetry::shutdown_on_signal();
    let mut rows = Vec::new();
    for (method, name) in methods.iter().zip(&names) {
        let output = dir.join(format!("filled-{name}.zarr"));
        remove_previous(&output)?;
        let mut req = FillRequest::new(&input, path_url(&output));
        req.method = super::fill::method(*method);
        if *method == MethodArg::Diffusion {
            let checkpoint = path_url(&checkpoint);
            req.tile = super::train::checkpoint_tile(&checkpoint).await?;
            req.overlap = req.tile / 4;
            req.checkpoint = Some(checkpoint);
        }
        eprintln!("filling with {name} …");
        let started = Instant::now();
        let registry = prometheus::Registry::new();
        crate::embedded::fill(
            &req,
            crate::embedded::Services {
                workers: args.workers,
                stitchers: 1,
            },
            cfg,
            &registry,
            &shutdown,
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        let filled = Scene::open(&path_url(&output), "data", None).await?;
        let pred = filled.read_window(Window::new(0, 0, h, w)).await?.values;
        let r = scoring::score(&pred, &values, Some(&select), h as usize, w as usize).overall;
        let preview = dir.join(format!("filled-{name}.png"));
        super::preview::write_preview(&path_url(&output), None, &preview).await?;
        rows.push(Row {
            method: name.clone(),
            rmse: r.rmse,
            nrmse: r.nrmse,
            ssim: r.ssim,
            seconds,
            output: output.display().to_string(),
            preview: preview.display().to_string(),
        });
    }
    print_table(&rows);
    let results = Results {
        binary: binary_fingerprint(),
        methods: names,
        rows,
    };
    let path = dir.join(RESULTS);
    std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn method_name(m: MethodArg) -> String {
    format!("{m:?}").to_lowercase()
}

fn print_table(rows: &[Row]) {
    println!("| method | RMSE (DN) | NRMSE | SSIM | seconds | output | preview |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.3} | {:.3} | {:.1} | {} | {} |",
            r.method, r.rmse, r.nrmse, r.ssim, r.seconds, r.output, r.preview
        );
    }
}

/// The results of an earlier run of the same binary and methods in `dir`, when all its outputs
/// are still complete.
fn previous_results(dir: &Path, methods: &[String]) -> Option<Results> {
    let results: Results = serde_json::from_slice(&std::fs::read(dir.join(RESULTS)).ok()?).ok()?;
    let complete = results
        .rows
        .iter()
        .all(|r| Path::new(&r.output).join("zarr.json").exists() && Path::new(&r.preview).exists());
    (results.binary == binary_fingerprint() && results.methods == methods && complete)
        .then_some(results)
}

/// The version and modification time of the running binary: a rebuilt or reinstalled binary
/// recomputes the demo.
fn binary_fingerprint() -> String {
    let modified = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {modified}", env!("CARGO_PKG_VERSION"))
}

/// Writes the bundled scene and checkpoint under `dir/assets`; returns their paths.
fn unpack_assets(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let assets = dir.join("assets");
    let scene = assets.join("landsat7_crop.zarr");
    for (name, bytes) in SCENE {
        write_file(&scene.join(name), bytes)?;
    }
    let checkpoint = assets.join("landsat7_crop.safetensors");
    write_file(&checkpoint, CHECKPOINT)?;
    Ok((scene, checkpoint))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn path_url(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A demo re-run starts clean (outputs and staging of the previous run).
fn remove_previous(output: &Path) -> anyhow::Result<()> {
    let staging = PathBuf::from(format!("{}.staging", output.display()));
    for p in [output, &staging] {
        if p.exists() {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}
