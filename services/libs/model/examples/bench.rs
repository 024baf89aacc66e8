//! Benchmarks (not tests): UNet throughput against candle's own matmul in the same run, and
//! sampler quality/speed on a small real crop.
//!
//! ```text
//! cargo run --release -p model --example bench -- [unet|train|samplers|all] [ckpt=PATH] [scene=PATH dims=B,H,W]
//! ```

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use model::{FillModel, SampleOptions, Sampler, TileInput, TileOutput, UNet, UNetConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn matmul_gflops(dev: &Device) -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let _ = a.matmul(&a)?.sum_all()?.to_scalar::<f32>()?;
    let reps = 10;
    let t0 = Instant::now();
    for _ in 0..reps {
        let _ = a.matmul(&a)?.sum_all()?.to_scalar::<f32>()?;
    }
    Ok(reps as f64 * 2.0 * (n as f64).powi(3) / t0.elapsed().as_secs_f64() / 1e9)
}

fn bench_unet(dev: &Device, train: bool) -> anyhow::Result<()> {
    let mm = matmul_gflops(dev)?;
    println!("candle matmul 1024x1024 f32: {mm:.1} GFLOP/s");
    for (base, tile, batch) in [
        (16usize, 32usize, 16usize),
        (32, 32, 16),
        (32, 64, 8),
        (16, 64, 8),
    ] {
        let cfg = UNetConfig {
            base_channels: base,
            ..Default::default()
        };
        let vm = VarMap::new();
        let net = UNet::new(VarBuilder::from_varmap(&vm, DType::F32, dev), &cfg)?;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, tile, tile), dev)?;
        let c = Tensor::randn(0f32, 1.0, (batch, cfg.cond_channels, tile, tile), dev)?;
        let t = Tensor::full(500u32, batch, dev)?;
        let flops = cfg.forward_flops(tile, tile) * batch as f64;
        let _ = net
            .forward(&x, &c, &t, None)?
            .sum_all()?
            .to_scalar::<f32>()?;
        let reps = 5;
        let t0 = Instant::now();
        for _ in 0..reps {
            let _ = net
                .forward(&x, &c, &t, None)?
                .sum_all()?
                .to_scalar::<f32>()?;
        }
        let fwd = t0.elapsed().as_secs_f64() / reps as f64;
        print!(
            "unet base={base} tile={tile} batch={batch}: forward {:.1} ms, {:.1} tiles/s, {:.1} GFLOP/s ({:.0}% of matmul)",
            fwd * 1e3,
            batch as f64 / fwd,
            flops / fwd / 1e9,
            100.0 * flops / fwd / 1e9 / mm
        );
        if train {
            let t0 = Instant::now();
            for _ in 0..reps {
                let loss = net.forward(&x, &c, &t, None)?.sqr()?.mean_all()?;
                let _g = loss.backward()?;
            }
            let fb = t0.elapsed().as_secs_f64() / reps as f64;
            print!(
                "; fwd+bwd {:.1} ms ({:.1} GFLOP/s at 3x forward FLOPs)",
                fb * 1e3,
                3.0 * flops / fb / 1e9
            );
        }
        println!();
    }
    Ok(())
}

/// Inverse-distance-weighted fill (power 2) of the gaps of one band plane from its observed pixels.
fn idw(plane: &[f32], size: usize) -> Vec<f32> {
    let known: Vec<(f32, f32, f32)> = plane
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| ((i / size) as f32, (i % size) as f32, v))
        .collect();
    plane
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() {
                return v;
            }
            let (y, x) = ((i / size) as f32, (i % size) as f32);
            let (mut num, mut den) = (0f64, 0f64);
            for &(ky, kx, kv) in &known {
                let w = 1.0 / f64::from((ky - y).powi(2) + (kx - x).powi(2));
                num += w * f64::from(kv);
                den += w;
            }
            (num / den) as f32
        })
        .collect()
}

struct Eval {
    truth: Vec<Vec<f32>>,
    tiles: Vec<TileInput>,
}

/// Fully observed tiles of the scene with synthetic blob gaps.
fn make_eval(scene: &[f32], dims: &[usize], tile: usize, n: usize) -> anyhow::Result<Eval> {
    let [b, h, w] = dims else {
        anyhow::bail!("bench needs a [band,y,x] scene")
    };
    let (b, h, w) = (*b, *h, *w);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut out = Eval {
        truth: Vec::new(),
        tiles: Vec::new(),
    };
    let step = tile / 2;
    let mut cands = Vec::new();
    for y in (0..=h - tile).step_by(step) {
        for x in (0..=w - tile).step_by(step) {
            let ok = (0..b).all(|band| {
                (0..tile).all(|r| {
                    scene[band * h * w + (y + r) * w + x..][..tile]
                        .iter()
                        .all(|v| v.is_finite())
                })
            });
            if ok {
                cands.push((y, x));
            }
        }
    }
    anyhow::ensure!(!cands.is_empty(), "no fully observed {tile}x{tile} window");
    for i in 0..n {
        let (y, x) = cands[(i * cands.len()) / n];
        let mut truth = Vec::with_capacity(b * tile * tile);
        for band in 0..b {
            for r in 0..tile {
                truth.extend_from_slice(&scene[band * h * w + (y + r) * w + x..][..tile]);
            }
        }
        let gap = model::gaps::synth(model::gaps::GapKind::Blobs, tile, &mut rng);
        let values = truth
            .iter()
            .enumerate()
            .map(|(j, &v)| if gap[j % (tile * tile)] { f32::NAN } else { v })
            .collect();
        out.tiles.push(TileInput {
            shape: vec![b, tile, tile],
            values,
            seed: model::tile_seed(7, i as u64),
        });
        out.truth.push(truth);
    }
    Ok(out)
}

/// (RMSE over gap pixels, mean spread over gap pixels).
fn score(ev: &Eval, outs: &[TileOutput]) -> (f64, f64) {
    let (mut se, mut sp, mut n) = (0f64, 0f64, 0usize);
    for ((t, truth), o) in ev.tiles.iter().zip(&ev.truth).zip(outs) {
        for (j, v) in t.values.iter().enumerate() {
            if v.is_nan() {
                se += f64::from(o.values[j] - truth[j]).powi(2);
                sp += f64::from(o.spread[j]);
                n += 1;
            }
        }
    }
    ((se / n as f64).sqrt(), sp / n as f64)
}

fn bench_samplers(dev: &Device, kv: &HashMap<&str, &str>) -> anyhow::Result<()> {
    let ckpt_path = kv
        .get("ckpt")
        .copied()
        .unwrap_or("services/libs/model/assets/landsat7_rgb.safetensors");
    let scene_path = kv
        .get("scene")
        .copied()
        .unwrap_or("services/libs/model/assets/landsat7_crop.f32");
    let dims: Vec<usize> = kv
        .get("dims")
        .copied()
        .unwrap_or("3,192,192")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let n: usize = kv.get("tiles").map_or(Ok(8), |v| v.parse())?;
    let k: usize = kv.get("k").map_or(Ok(4), |v| v.parse())?;
    let ddpm = kv.get("ddpm").is_none_or(|v| *v != "0");
    let model = FillModel::from_checkpoint(
        &std::fs::read(ckpt_path).with_context(|| format!("reading {ckpt_path}"))?,
        dev,
    )?;
    let bytes = std::fs::read(scene_path).with_context(|| format!("reading {scene_path}"))?;
    let scene: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let ev = make_eval(&scene, &dims, model.tile_size(), n)?;
    let gaps: usize = ev
        .tiles
        .iter()
        .map(|t| t.values.iter().filter(|v| v.is_nan()).count())
        .sum();
    println!("scene {scene_path} {dims:?}; {n} tiles of {}px with blob gaps ({gaps} gap values); ensemble K={k}", model.tile_size());
    let t0 = Instant::now();
    let idw_out: Vec<TileOutput> = ev
        .tiles
        .iter()
        .map(|t| {
            let p = model.tile_size().pow(2);
            let values = t
                .values
                .chunks_exact(p)
                .flat_map(|plane| idw(plane, model.tile_size()))
                .collect();
            TileOutput {
                values,
                spread: vec![0.0; t.values.len()],
            }
        })
        .collect();
    let (rmse_idw, _) = score(&ev, &idw_out);
    println!(
        "{:<22} RMSE {rmse_idw:7.3} DN  time {:7.2} s",
        "IDW (power 2)",
        t0.elapsed().as_secs_f64()
    );
    let mut samplers: Vec<(String, Sampler)> = [10, 25, 50]
        .iter()
        .flat_map(|&s| {
            [0.0, 1.0].map(|eta| {
                (
                    format!("DDIM {s} eta={eta}"),
                    Sampler::Ddim { steps: s, eta },
                )
            })
        })
        .collect();
    if ddpm {
        samplers.push(("DDPM 1000".into(), Sampler::Ddpm));
    }
    for (name, sampler) in samplers {
        let t0 = Instant::now();
        let outs = model.fill(
            &ev.tiles,
            &SampleOptions {
                sampler,
                ensemble: k,
                member: None,
            },
        )?;
        let dt = t0.elapsed().as_secs_f64();
        let (rmse, spread) = score(&ev, &outs);
        let one = model.fill(
            &ev.tiles,
            &SampleOptions {
                sampler,
                ensemble: k,
                member: Some(0),
            },
        )?;
        let (rmse1, _) = score(&ev, &one);
        println!(
            "{name:<22} RMSE {rmse:7.3} DN (member 0: {rmse1:.3})  spread {spread:6.3}  spread/RMSE {:.2}  time {dt:7.2} s ({:.1} tile-members/s)",
            spread / rmse,
            (n * k) as f64 / dt
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("all", String::as_str);
    let kv: HashMap<&str, &str> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.split_once('='))
        .collect();
    let dev = Device::Cpu;
    if matches!(what, "unet" | "train" | "all") {
        bench_unet(&dev, what != "unet").context("unet benchmark")?;
    }
    if matches!(what, "samplers" | "all") {
        bench_samplers(&dev, &kv).context("sampler benchmark")?;
    }
    Ok(())
}
