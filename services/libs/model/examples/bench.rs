//! Compute benchmark (not a test): the UNet of each preset against candle's own matmul and a bare
//! convolution of the preset's widest layer, in the same run, on the same threads. Every network
//! figure is measured twice: through candle's own `conv2d` and candle-nn's GroupNorm (the layers
//! before `model::conv` and `model::norm`) and through the model's own layers. The sampler benchmark (DDIM 10/25/50
//! against DDPM) runs the whole pipeline on a sample scene: `services/cli/benches/samplers.sh`.
//!
//! ```text
//! cargo run --release -p model --example bench -- [small base large ...] [--device cuda:0] [--model-only]
//! ```
//!
//! FLOPs are counted from the architecture (`UNetConfig::forward_flops`, 2 per multiply-add);
//! a training step counts 3× the forward (forward, input and weight gradients). The training step
//! is `model::train`'s own (batch assembly with the IDW prior, forward, backward, AdamW with
//! gradient clipping), timed between its progress reports on a synthetic 3-band scene.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use model::conv::{conv2d, use_candle_layers};
use model::{Layout, Preset, SceneArray, TrainConfig, UNet, UNetConfig};

/// As in the `terrafill` binary (see its `main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Repetitions of each timed forward.
const REPS: usize = 4;

/// Median of `reps` timings of `f`, after one warm-up run.
fn time(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[reps / 2])
}

fn sync(t: &Tensor) -> anyhow::Result<()> {
    t.sum_all()?.to_scalar::<f32>()?;
    Ok(())
}

fn matmul_gflops(dev: &Device) -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let s = time(10, || sync(&a.matmul(&a)?))?;
    Ok(2.0 * (n as f64).powi(3) / s / 1e9)
}

/// GFLOP/s of a bare 3×3 conv `c`→`c` on `n`×`c`×`px`×`px`: (forward, forward + backward).
fn conv_gflops(dev: &Device, n: usize, c: usize, px: usize) -> anyhow::Result<(f64, f64)> {
    let vm = VarMap::new();
    let conv = conv2d(c, c, 3, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, px, px), dev)?)?;
    let flops = 2.0 * (n * c * c * 9 * px * px) as f64;
    let fwd = time(REPS, || sync(&conv.forward(x.as_tensor())?))?;
    let fb = time(REPS, || {
        let g = conv.forward(x.as_tensor())?.sqr()?.sum_all()?.backward()?;
        sync(g.get(x.as_tensor()).context("no gradient")?)
    })?;
    Ok((flops / fwd / 1e9, 3.0 * flops / fb / 1e9))
}

/// A smooth synthetic 3-band scene with a few holes, so `train` has windows to learn from.
fn scene(side: usize) -> SceneArray {
    let mut values = Vec::with_capacity(3 * side * side);
    for b in 0..3 {
        for y in 0..side {
            for x in 0..side {
                let (fy, fx) = (y as f32 / 17.0, x as f32 / 23.0);
                let v = (fy + b as f32).sin() * (fx * 1.3).cos()
                    + 0.3 * (0.37 * (x + 2 * y) as f32).sin();
                let hole = (y / 40 + x / 40) % 7 == 0 && (y % 40) < 20 && (x % 40) < 20;
                values.push(if hole { f32::NAN } else { v });
            }
        }
    }
    SceneArray {
        shape: vec![3, side, side],
        values,
    }
}

/// Seconds per training step of `cfg` (median of the step-to-step intervals after warm-up).
fn train_step(cfg: &TrainConfig, dev: &Device, steps: usize) -> anyhow::Result<f64> {
    let cfg = TrainConfig {
        steps,
        calibration_windows: 0,
        save_optimizer: false,
        ..cfg.clone()
    };
    let data = scene(512);
    let mut marks = Vec::new();
    model::train(&data, &cfg, None, dev, &mut |_| marks.push(Instant::now()))?;
    let mut dt: Vec<f64> = marks
        .windows(2)
        .skip(1)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    dt.sort_by(f64::total_cmp);
    Ok(dt[dt.len() / 2])
}

/// One row per (preset, layer path).
fn bench_preset(p: Preset, dev: &Device, mm: f64, compare: bool) -> anyhow::Result<()> {
    let cfg = p.train_config();
    let unet = UNetConfig {
        data_channels: 3,
        cond_channels: Layout::cond_channels(3, 0),
        ..cfg.unet.clone()
    };
    let (s, n) = (cfg.tile, cfg.batch);
    let flops = unet.forward_flops(s, s);
    let vm = VarMap::new();
    let net = UNet::new(VarBuilder::from_varmap(&vm, DType::F32, dev), &unet)?;
    let x = Tensor::randn(0f32, 1.0, (n, 3, s, s), dev)?;
    let c = Tensor::randn(0f32, 1.0, (n, unet.cond_channels, s, s), dev)?;
    let t = Tensor::full(500u32, n, dev)?;
    let widest = unet.channel_mults.iter().max().copied().unwrap_or(1) * unet.base_channels;
    let steps = if dev.is_cpu() { 6 } else { 20 };
    let paths = [("candle ops", true), ("model::conv + norm", false)];
    for (path, candle) in paths.into_iter().skip(usize::from(!compare)) {
        use_candle_layers(candle);
        let fwd = time(REPS, || sync(&net.forward(&x, &c, &t, None)?))?;
        let (cf, cb) = conv_gflops(dev, n, widest, s)?;
        let step = train_step(&cfg, dev, steps)?;
        let (gf, gs) = (
            flops * n as f64 / fwd / 1e9,
            3.0 * flops * n as f64 / step / 1e9,
        );
        println!(
            "| {p} | {path} | {:.2} | {:.0} ({:.0} %) | {:.0} ({:.0} %) | {:.0} / {:.0} | {:.0} | {:.0} ms |",
            flops / 1e9,
            gf,
            100.0 * gf / mm,
            gs,
            100.0 * gs / mm,
            cf,
            cb,
            n as f64 / fwd,
            step * 1e3,
        );
    }
    use_candle_layers(false);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut presets = Vec::new();
    let mut dev = Device::Cpu;
    let mut compare = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--model-only" {
            compare = false;
        } else if a == "--device" {
            let spec = args.next().context("--device needs a value")?;
            dev = spec.parse::<model::DeviceSpec>()?.device()?;
        } else {
            presets.push(a.parse::<Preset>()?);
        }
    }
    if presets.is_empty() {
        presets = vec![Preset::Small, Preset::Base];
    }
    let mm = matmul_gflops(&dev)?;
    println!(
        "device {dev:?}, {} threads; candle matmul 1024² f32: {mm:.0} GFLOP/s",
        candle_core::utils::get_num_threads()
    );
    println!(
        "| preset | layers | GFLOP/sample (fwd) | forward GFLOP/s (of matmul) | train step GFLOP/s (of matmul) | widest conv fwd / fwd+bwd GFLOP/s | samples/s (fwd) | train step |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in presets {
        bench_preset(p, &dev, mm, compare).with_context(|| format!("preset {p}"))?;
    }
    Ok(())
}
