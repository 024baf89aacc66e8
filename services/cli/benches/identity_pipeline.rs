//! Benchmark (not a test): `identity` through the whole embedded pipeline (plan, tasks, workers,
//! staging, stitcher, blend) against a plain chunk-by-chunk copy of the same Zarr with the same
//! I/O layer, in the same run. Prints medians and their ratio.
//!
//!     cargo bench -p terrafill-cli --bench identity_pipeline [-- SIDE]   (default SIDE = 1024)

use std::process::Command;
use std::time::{Duration, Instant};

use tiling::{ChunkGrid, Window};
use zarr_io::{Mosaic, MosaicSpec, Scene};

const RUNS: usize = 3;
const CHUNK: u64 = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let side: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.zarr").display().to_string();
    let shape = vec![3, side, side];
    let values: Vec<f32> = (0..3 * side * side)
        .map(|i| {
            if i % 97 == 0 {
                f32::NAN
            } else {
                ((i % 1013) as f32).sqrt()
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let spec = MosaicSpec {
            shape: shape.clone(),
            chunk_yx: (CHUNK, CHUNK),
            dimension_names: vec!["band".into(), "y".into(), "x".into()],
            with_spread: false,
            members: 0,
            array_attributes: Default::default(),
            data_fill: f32::NAN,
        };
        zarr_io::write_scene(&input, "data", &spec, Default::default(), &values).await
    })?;
    let mb = (values.len() * 4) as f64 / 1e6;
    println!(
        "scene 3×{side}×{side} float32 ({mb:.0} MB), chunks {CHUNK}×{CHUNK}, {RUNS} runs each"
    );

    let mut copy = Vec::new();
    let mut pipeline = Vec::new();
    for run in 0..RUNS {
        let out = dir
            .path()
            .join(format!("copy{run}.zarr"))
            .display()
            .to_string();
        let t = Instant::now();
        rt.block_on(chunk_copy(&input, &out))?;
        copy.push(t.elapsed());

        let out = dir
            .path()
            .join(format!("pipe{run}.zarr"))
            .display()
            .to_string();
        let t = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_terrafill"))
            .args([
                "fill",
                &input,
                &out,
                "--method",
                "identity",
                "--tile",
                "256",
                "--overlap",
                "32",
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        pipeline.push(t.elapsed());
        assert!(status.success(), "terrafill fill failed");
    }
    let (c, p) = (median(&mut copy), median(&mut pipeline));
    println!(
        "plain chunk copy        : {:>8.3} s  ({:.0} MB/s)",
        c.as_secs_f64(),
        mb / c.as_secs_f64()
    );
    println!(
        "identity pipeline (fill): {:>8.3} s  ({:.0} MB/s)",
        p.as_secs_f64(),
        mb / p.as_secs_f64()
    );
    println!(
        "ratio pipeline / copy   : {:>8.2}",
        p.as_secs_f64() / c.as_secs_f64()
    );
    Ok(())
}

/// Reads every chunk of `data` and writes it to a new mosaic: the floor any pipeline pays.
async fn chunk_copy(input: &str, output: &str) -> Result<(), Box<dyn std::error::Error>> {
    let scene = Scene::open(input, "data", None).await?;
    let spec = MosaicSpec::for_scene(&scene, (CHUNK, CHUNK), false);
    let mosaic = Mosaic::create(output, &spec, "identity-pipeline-bench").await?;
    let grid = ChunkGrid::new(scene.height(), scene.width(), CHUNK, CHUNK);
    let (rows, cols) = grid.shape();
    for r in 0..rows {
        for c in 0..cols {
            let w: Window = grid.window(r, c);
            let data = scene.read_window(w).await?.values;
            let filled = vec![0u8; data.len()];
            mosaic.write_chunk(r, c, &data, &filled, None).await?;
        }
    }
    mosaic.finalize(scene.group_attributes()).await?;
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
