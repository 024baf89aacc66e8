//! Shared fixtures: small synthetic scenes made in code.

#![allow(dead_code)]

use model::{SceneArray, TrainConfig, UNetConfig};

/// A smooth 3-band scene with texture, `size`×`size`, with a missing disc of radius `size/6`.
pub fn scene(size: usize) -> SceneArray {
    let mut values = Vec::with_capacity(3 * size * size);
    for b in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let (fy, fx) = (y as f32 / 7.0, x as f32 / 9.0);
                let v = 100.0
                    + 40.0 * (fy + b as f32).sin() * (fx * 0.7).cos()
                    + 15.0 * ((fx + fy) * 1.3).sin()
                    + 10.0 * b as f32;
                let (dy, dx) = (y as f32 - size as f32 * 0.7, x as f32 - size as f32 * 0.3);
                let hole = (dy * dy + dx * dx).sqrt() < size as f32 / 6.0;
                values.push(if hole { f32::NAN } else { v });
            }
        }
    }
    SceneArray {
        shape: vec![3, size, size],
        values,
    }
}

/// A tiny training config that runs in seconds in the dev profile.
pub fn tiny(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        tile: 16,
        batch: 8,
        lr: 3e-3,
        unet: UNetConfig {
            base_channels: 8,
            channel_mults: vec![1, 2],
            groups: 4,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The tensors of a checkpoint by name (not its metadata, which records wall times).
pub fn tensors(bytes: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    out.sort();
    Ok(out)
}
