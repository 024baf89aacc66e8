//! Train on a raw little-endian f32 scene file (NaN = missing) and write a checkpoint.
//!
//! ```text
//! cargo run --release -p model --example train_demo -- SCENE.f32 3,718,791 OUT.safetensors \
//!     [model=small|base|large] [steps=N] [tile=N] [batch=N] [base=N] [lr=X] [seed=N] [resume=CKPT]
//! ```
//! Unset options take the preset's values (`base` by default, as `terrafill train` on CPU).

use std::time::Instant;

use anyhow::Context;
use model::{train, Device, Preset, SceneArray, TrainProgress};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scene, dims, out, opts @ ..] = args.as_slice() else {
        anyhow::bail!("usage: train_demo SCENE.f32 DIMS OUT.safetensors [key=value ...]");
    };
    let bytes = std::fs::read(scene).with_context(|| format!("reading {scene}"))?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("DIMS")?;
    // `model=NAME` first picks the preset the other options then adjust (default: base, the CPU
    // default of `terrafill train`).
    let preset = opts
        .iter()
        .find_map(|o| o.strip_prefix("model="))
        .unwrap_or("base")
        .parse::<Preset>()?;
    let mut cfg = preset.train_config();
    let mut resume = None;
    for o in opts.iter().filter(|o| !o.starts_with("model=")) {
        let (k, v) = o.split_once('=').context("options are key=value")?;
        match k {
            "steps" => cfg.steps = v.parse()?,
            "tile" => cfg.tile = v.parse()?,
            "batch" => cfg.batch = v.parse()?,
            "base" => cfg.unet.base_channels = v.parse()?,
            "mults" => {
                cfg.unet.channel_mults = v.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "lr" => cfg.lr = v.parse()?,
            "seed" => cfg.seed = v.parse()?,
            "resume" => resume = Some(std::fs::read(v)?),
            _ => anyhow::bail!("unknown option {k}"),
        }
    }
    eprintln!("config: {cfg:?}");
    let start = Instant::now();
    let mut acc = (0f32, 0usize);
    let ckpt = train(
        &model::Corpus::in_memory(vec![SceneArray { shape, values }])?,
        &cfg,
        resume.as_deref(),
        &Device::Cpu,
        &mut |p: &TrainProgress| {
            acc = (acc.0 + p.loss, acc.1 + 1);
            if p.step % 50 == 0 || p.step == p.steps {
                eprintln!(
                    "step {:5}/{} loss {:.4} (mean of last {}) {:.1}s",
                    p.step,
                    p.steps,
                    acc.0 / acc.1 as f32,
                    acc.1,
                    start.elapsed().as_secs_f64()
                );
                acc = (0.0, 0);
            }
        },
    )?;
    std::fs::write(out, &ckpt).with_context(|| format!("writing {out}"))?;
    eprintln!(
        "wrote {out} ({} bytes) in {:.1}s",
        ckpt.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
