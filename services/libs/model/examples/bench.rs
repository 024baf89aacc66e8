//! Compute benchmark (not a test): the UNet of each preset against candle's own matmul and a bare
//! convolution of the preset's widest layer, in the same run, on the same threads. Every network
//! figure is measured twice: through candle's own `conv2d` and candle-nn's GroupNorm (the layers
//! before `model::conv` and `model::norm`) and through the model's own layers. The sampler benchmark (DDIM 10/25/50
//! against DDPM) runs the whole pipeline on a sample scene: `services/cli/benches/samplers.sh`.
//!
//! ```text
//! cargo run --release -p model --example bench -- [small base large ...] [--device cuda:0] [--model-only] [--profile-forward]
//! ```
//!
//! The machines this runs on are shared and their speed drifts by ±30 % within a minute, so every
//! timing is paired with a 1024² matmul timed right before it, and the "of matmul" figures are the
//! median of the per-pair ratios; the matmul figure in the header is the median of those pairs.
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
const REPS: usize = 6;

/// Side of the reference matmul.
const MATMUL: usize = 1024;

/// The reference: candle's own matmul of two `MATMUL`² f32 matrices.
struct Matmul(Tensor);

impl Matmul {
    fn new(dev: &Device) -> anyhow::Result<Self> {
        Ok(Self(Tensor::randn(0f32, 1.0, (MATMUL, MATMUL), dev)?))
    }

    /// GFLOP/s of one matmul, timed now.
    fn gflops(&self) -> anyhow::Result<f64> {
        let t0 = Instant::now();
        sync(&self.0.matmul(&self.0)?)?;
        Ok(2.0 * (MATMUL as f64).powi(3) / t0.elapsed().as_secs_f64() / 1e9)
    }
}

/// One timing paired with the matmul rate measured just before it.
#[derive(Clone, Copy)]
struct Paired {
    secs: f64,
    matmul: f64,
}

/// The median of `v`.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Achieved GFLOP/s of `flops` per timing, and its median fraction of the paired matmul rate.
fn rate(flops: f64, runs: &[Paired]) -> (f64, f64) {
    let gf = |p: &Paired| flops / p.secs / 1e9;
    (
        median(runs.iter().map(gf).collect()),
        median(runs.iter().map(|p| gf(p) / p.matmul).collect()),
    )
}

/// `reps` timings of `f`, each after a matmul timing, after one warm-up run of both.
fn time(
    mm: &Matmul,
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Paired>> {
    mm.gflops()?;
    f()?;
    (0..reps)
        .map(|_| {
            let matmul = mm.gflops()?;
            let t0 = Instant::now();
            f()?;
            Ok(Paired {
                secs: t0.elapsed().as_secs_f64(),
                matmul,
            })
        })
        .collect()
}

fn sync(t: &Tensor) -> anyhow::Result<()> {
    t.sum_all()?.to_scalar::<f32>()?;
    Ok(())
}

/// Timings of a bare 3×3 conv `c`→`c` on `n`×`c`×`px`×`px`, (forward, forward + backward), and
/// the forward FLOPs.
fn conv_runs(
    mm: &Matmul,
    dev: &Device,
    (n, c, px): (usize, usize, usize),
) -> anyhow::Result<(Vec<Paired>, Vec<Paired>, f64)> {
    let vm = VarMap::new();
    let conv = conv2d(c, c, 3, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, px, px), dev)?)?;
    let flops = 2.0 * (n * c * c * 9 * px * px) as f64;
    let fwd = time(mm, REPS, || sync(&conv.forward(x.as_tensor())?))?;
    let fb = time(mm, REPS, || {
        let g = conv.forward(x.as_tensor())?.sqr()?.sum_all()?.backward()?;
        sync(g.get(x.as_tensor()).context("no gradient")?)
    })?;
    Ok((fwd, fb, flops))
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

/// Training steps of `cfg`, each paired with a matmul timed in the progress report before it
/// (the step's interval starts after that matmul), warm-up steps dropped.
fn train_steps(
    mm: &Matmul,
    cfg: &TrainConfig,
    dev: &Device,
    steps: usize,
) -> anyhow::Result<Vec<Paired>> {
    let cfg = TrainConfig {
        steps,
        calibration_windows: 0,
        save_optimizer: false,
        ..cfg.clone()
    };
    let data = scene(512);
    // (before the report's matmul, after it, its rate)
    let mut marks: Vec<(Instant, Instant, f64)> = Vec::new();
    let mut failed = None;
    model::train(
        &model::Corpus::in_memory(vec![data.clone()])?,
        &cfg,
        None,
        dev,
        &mut |_| {
            let before = Instant::now();
            match mm.gflops() {
                Ok(matmul) => marks.push((before, Instant::now(), matmul)),
                Err(e) => failed = Some(e),
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(marks
        .windows(2)
        .skip(1)
        .map(|w| Paired {
            secs: (w[1].0 - w[0].1).as_secs_f64(),
            matmul: w[0].2,
        })
        .collect())
}

/// What to run besides the presets' rows.
#[derive(Clone, Copy)]
struct Options {
    /// Also run candle's own layers.
    compare: bool,
    /// Only run the forward, 40 times, for a profiler.
    profile_forward: bool,
}

/// One row per (preset, layer path).
fn bench_preset(p: Preset, dev: &Device, mm: &Matmul, opts: Options) -> anyhow::Result<()> {
    let cfg = p.train_config();
    let unet = UNetConfig {
        data_channels: 3,
        cond_channels: Layout::cond_channels(3, 0),
        ..cfg.unet.clone()
    };
    let (s, n) = (cfg.tile, cfg.batch);
    let flops = unet.forward_flops(s, s) * n as f64;
    let vm = VarMap::new();
    let net = UNet::new(VarBuilder::from_varmap(&vm, DType::F32, dev), &unet)?;
    let x = Tensor::randn(0f32, 1.0, (n, 3, s, s), dev)?;
    let c = Tensor::randn(0f32, 1.0, (n, unet.cond_channels, s, s), dev)?;
    let t = Tensor::full(500u32, n, dev)?;
    let widest = unet.channel_mults.iter().max().copied().unwrap_or(1) * unet.base_channels;
    let steps = if dev.is_cpu() { 8 } else { 20 };
    let paths = [("candle ops", true), ("model::conv + norm", false)];
    for (path, candle) in paths.into_iter().skip(usize::from(!opts.compare)) {
        use_candle_layers(candle);
        let forward = || sync(&net.forward(&x, &c, &t, None)?);
        if opts.profile_forward {
            let (gf, of) = rate(flops, &time(mm, 40, forward)?);
            println!(
                "| {p} | {path} | forward {gf:.0} GFLOP/s ({:.0} % of matmul) |",
                100.0 * of
            );
            continue;
        }
        let fwd = time(mm, REPS, forward)?;
        let (conv_f, conv_fb, conv_flops) = conv_runs(mm, dev, (n, widest, s))?;
        let step = train_steps(mm, &cfg, dev, steps)?;
        let all: Vec<f64> = [&fwd, &conv_f, &conv_fb, &step]
            .iter()
            .flat_map(|r| r.iter().map(|p| p.matmul))
            .collect();
        let pct = |(g, of): (f64, f64)| format!("{g:.0} ({:.0} %)", 100.0 * of);
        println!(
            "| {p} | {path} | {:.2} | {:.0} | {} | {} | {} / {} | {:.0} | {:.0} ms |",
            flops / n as f64 / 1e9,
            median(all),
            pct(rate(flops, &fwd)),
            pct(rate(3.0 * flops, &step)),
            pct(rate(conv_flops, &conv_f)),
            pct(rate(3.0 * conv_flops, &conv_fb)),
            n as f64 / median(fwd.iter().map(|p| p.secs).collect()),
            1e3 * median(step.iter().map(|p| p.secs).collect()),
        );
    }
    use_candle_layers(false);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut presets = Vec::new();
    let mut dev = Device::Cpu;
    let mut opts = Options {
        compare: true,
        profile_forward: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model-only" => opts.compare = false,
            "--profile-forward" => opts.profile_forward = true,
            "--device" => {
                let spec = args.next().context("--device needs a value")?;
                dev = spec.parse::<model::DeviceSpec>()?.device()?;
            }
            _ => presets.push(a.parse::<Preset>()?),
        }
    }
    if presets.is_empty() {
        presets = vec![Preset::Small, Preset::Base];
    }
    let mm = Matmul::new(&dev)?;
    println!(
        "device {dev:?}, {} threads; \"of matmul\": median ratio to a {MATMUL}² f32 matmul timed before each run",
        candle_core::utils::get_num_threads()
    );
    println!(
        "| preset | layers | GFLOP/sample (fwd) | matmul GFLOP/s (median) | forward GFLOP/s (of matmul) | train step GFLOP/s (of matmul) | widest conv fwd / fwd+bwd GFLOP/s (of matmul) | samples/s (fwd) | train step |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in presets {
        bench_preset(p, &dev, &mm, opts).with_context(|| format!("preset {p}"))?;
    }
    Ok(())
}
