//! Benchmark (not a test): UNet throughput against candle's own matmul in the same run. The
//! sampler benchmark (DDIM 10/25/50 against DDPM) runs the whole pipeline on a sample scene:
//! `services/cli/benches/samplers.sh`.
//!
//! ```text
//! cargo run --release -p model --example bench -- [unet|train]
//! ```

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use model::{UNet, UNetConfig};

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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("all", String::as_str);
    let dev = Device::Cpu;
    if matches!(what, "unet" | "train" | "all") {
        bench_unet(&dev, what != "unet").context("unet benchmark")?;
    }
    Ok(())
}
