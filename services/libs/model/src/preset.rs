//! Model sizes that follow the device: `small` (the original 0.2 M-parameter net, for tests and
//! quick looks), `base` (the CPU default) and `large` (the GPU default). A preset fixes the UNet's
//! widths and depth, the tile, the batch, the steps and the learning rate; `train` stores its
//! name in the checkpoint and `fill` takes its tile from there.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::train::TrainConfig;
use crate::unet::UNetConfig;
use crate::ModelError;

/// A named training configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Widths 16/32/32, one block per level, 32-px tiles: about 0.2 M parameters.
    Small,
    /// The CPU default: widths 24/48/48/48 (a level deeper), 64-px tiles; trains in under ten
    /// minutes on two cores.
    Base,
    /// The GPU default: widths 32/64/64/64, two blocks per level, 128-px tiles, batch 32 (about
    /// 100× the FLOPs per sample of `small`).
    Large,
}

impl Preset {
    /// All presets, smallest first.
    pub const ALL: [Preset; 3] = [Preset::Small, Preset::Base, Preset::Large];

    /// The default for a device: `large` on CUDA, `base` on CPU.
    pub fn for_device(device: &Device) -> Self {
        if device.is_cuda() {
            Preset::Large
        } else {
            Preset::Base
        }
    }

    /// The preset's name as `--model` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Small => "small",
            Preset::Base => "base",
            Preset::Large => "large",
        }
    }

    /// The training configuration (scene-dependent channel counts are set by `train`).
    pub fn train_config(self) -> TrainConfig {
        let small = TrainConfig::default();
        let unet = |base_channels, channel_mults: Vec<usize>, res_blocks| UNetConfig {
            base_channels,
            channel_mults,
            res_blocks,
            ..small.unet.clone()
        };
        let cfg = match self {
            Preset::Small => small,
            Preset::Base => TrainConfig {
                steps: 400,
                tile: 64,
                batch: 8,
                lr: 1e-3,
                unet: unet(24, vec![1, 2, 2, 2], 1),
                calibration_windows: 16,
                estimate_share: 0.5,
                ..small
            },
            Preset::Large => TrainConfig {
                steps: 2000,
                tile: 128,
                batch: 32,
                lr: 5e-4,
                unet: unet(32, vec![1, 2, 2, 2], 2),
                estimate_share: 0.5,
                ..small
            },
        };
        TrainConfig {
            preset: Some(self.name().to_owned()),
            ..cfg
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ModelError::Config {
                field: "model",
                reason: format!("unknown model preset '{s}' (expected small, base or large)"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flops(p: Preset) -> f64 {
        let cfg = p.train_config();
        let unet = UNetConfig {
            data_channels: 3,
            cond_channels: crate::layout::Layout::cond_channels(3, 0),
            ..cfg.unet
        };
        unet.forward_flops(cfg.tile, cfg.tile)
    }

    #[test]
    fn presets_validate_and_grow() {
        for p in Preset::ALL {
            let cfg = p.train_config();
            cfg.unet.validate().expect("valid preset");
            assert_eq!(cfg.tile % cfg.unet.size_multiple(), 0, "{p}");
            assert_eq!(p.name().parse::<Preset>().expect("round trip"), p);
        }
        // The floor: CPU default ≥ 8× and GPU default ≥ 50× the original FLOPs/sample.
        let small = flops(Preset::Small);
        assert!(
            flops(Preset::Base) >= 8.0 * small,
            "{}",
            flops(Preset::Base) / small
        );
        assert!(
            flops(Preset::Large) >= 50.0 * small,
            "{}",
            flops(Preset::Large) / small
        );
        assert!("huge".parse::<Preset>().is_err());
    }
}
