//! Conditional UNet ε_θ(x_t, t, cond) for Palette-style inpainting (Saharia et al. 2022): the input
//! is [x_t, observed values (0 in gaps), mask, context channels] stacked on the channel axis.

use candle_core::{Module, Tensor};
type Result<T> = candle_core::Result<T>;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::blocks::{
    conv3, Attention, Downsample, GeoEmbedding, ResBlock, TimeEmbedding, Upsample,
};
use crate::conv::Conv2d;
use crate::norm::{group_norm, GroupNorm};
use crate::ModelError;

/// Sizes of the UNet. `data_channels` and `cond_channels` are set by [`crate::train`] from the scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Channels of x_t and of the predicted noise (the bands of one date).
    pub data_channels: usize,
    /// Conditioning channels: observed values + mask (+ context dates' values and masks).
    pub cond_channels: usize,
    /// Width of the first level.
    pub base_channels: usize,
    /// Width multiplier per level; each level after the first halves the resolution.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level (down path; the up path has the same).
    pub res_blocks: usize,
    /// GroupNorm groups (must divide every width).
    pub groups: usize,
    /// Self-attention at the lowest resolution.
    pub attention: bool,
    /// Add a (latitude, longitude, day-of-year) embedding to the time embedding.
    pub geo_prior: bool,
}

impl Default for UNetConfig {
    /// Small enough to train on a 2-core CPU in minutes: widths 16/32/32, one block per level,
    /// attention at 1/4 resolution (about 0.2 M parameters for 3 bands).
    fn default() -> Self {
        Self {
            data_channels: 3,
            cond_channels: 6,
            base_channels: 16,
            channel_mults: vec![1, 2, 2],
            res_blocks: 1,
            groups: 8,
            attention: true,
            geo_prior: false,
        }
    }
}

impl UNetConfig {
    /// Check widths against GroupNorm and that the config can be built.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field at fault.
    pub fn validate(&self) -> std::result::Result<(), ModelError> {
        let bad = |field, reason: String| Err(ModelError::Config { field, reason });
        if self.data_channels == 0 {
            return bad("unet.data_channels", "must be positive".into());
        }
        if self.channel_mults.is_empty() || self.channel_mults.contains(&0) {
            return bad(
                "unet.channel_mults",
                format!(
                    "must be non-empty and positive, got {:?}",
                    self.channel_mults
                ),
            );
        }
        if self.res_blocks == 0 {
            return bad("unet.res_blocks", "must be at least 1".into());
        }
        if self.groups == 0 || self.base_channels == 0 {
            return bad(
                "unet.groups",
                "groups and base_channels must be positive".into(),
            );
        }
        for m in &self.channel_mults {
            if (m * self.base_channels) % self.groups != 0 {
                return bad(
                    "unet.groups",
                    format!(
                        "{} does not divide width {}",
                        self.groups,
                        m * self.base_channels
                    ),
                );
            }
        }
        Ok(())
    }

    /// Multiply-add FLOPs (2 per MAC) of one forward pass on an `h`×`w` sample, counting
    /// convolutions, linear layers and attention matmuls (the rest is a few percent).
    pub fn forward_flops(&self, h: usize, w: usize) -> f64 {
        let conv =
            |cin: usize, cout: usize, k: usize, px: usize| 2.0 * (cin * cout * k * k * px) as f64;
        let (b, tdim) = (self.base_channels, self.time_dim());
        let res = |cin: usize, cout: usize, px: usize| {
            conv(cin, cout, 3, px)
                + conv(cout, cout, 3, px)
                + if cin == cout {
                    0.0
                } else {
                    conv(cin, cout, 1, px)
                }
                + 2.0 * (tdim * cout) as f64
        };
        let widths: Vec<usize> = self.channel_mults.iter().map(|m| m * b).collect();
        let mut px = h * w;
        let mut f = 2.0 * (b * tdim + tdim * tdim) as f64
            + conv(self.data_channels + self.cond_channels, b, 3, px);
        let mut ch = b;
        for (i, &wd) in widths.iter().enumerate() {
            for _ in 0..self.res_blocks {
                f += res(ch, wd, px);
                ch = wd;
            }
            if i + 1 < widths.len() {
                px /= 4;
                f += conv(wd, wd, 3, px);
            }
        }
        f += 2.0 * res(ch, ch, px);
        if self.attention {
            f += 2.0 * (px * ch * 4 * ch) as f64 + 4.0 * (px * px * ch) as f64;
        }
        for (i, &wd) in widths.iter().enumerate().rev() {
            for _ in 0..self.res_blocks {
                f += res(ch + wd, wd, px);
                ch = wd;
            }
            if i > 0 {
                px *= 4;
                f += conv(wd, wd, 3, px);
            }
        }
        f + conv(b, self.data_channels, 3, px)
    }

    /// Spatial sizes must be multiples of this (2^(levels−1)).
    pub fn size_multiple(&self) -> usize {
        1 << (self.channel_mults.len() - 1)
    }

    /// Width of the time embedding.
    fn time_dim(&self) -> usize {
        4 * self.base_channels
    }
}

#[derive(Debug, Clone)]
struct Level {
    blocks: Vec<ResBlock>,
    down: Option<Downsample>,
}

#[derive(Debug, Clone)]
struct UpLevel {
    blocks: Vec<ResBlock>,
    up: Option<Upsample>,
}

/// The conditional UNet.
#[derive(Debug, Clone)]
pub struct UNet {
    cfg: UNetConfig,
    time: TimeEmbedding,
    geo: Option<GeoEmbedding>,
    conv_in: Conv2d,
    down: Vec<Level>,
    mid1: ResBlock,
    mid_attn: Option<Attention>,
    mid2: ResBlock,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Build the network's variables under `vb`.
    ///
    /// # Errors
    /// [`ModelError::Config`] for a bad config, [`ModelError::Tensor`] when `vb` lacks a variable
    /// or has it with the wrong shape (loading a checkpoint).
    pub fn new(vb: VarBuilder, cfg: &UNetConfig) -> std::result::Result<Self, ModelError> {
        cfg.validate()?;
        Self::build(vb, cfg).map_err(|source| ModelError::Tensor {
            context: "building the UNet",
            source,
        })
    }

    fn build(vb: VarBuilder, cfg: &UNetConfig) -> Result<Self> {
        let (b, g, tdim) = (cfg.base_channels, cfg.groups, cfg.time_dim());
        let widths: Vec<usize> = cfg.channel_mults.iter().map(|m| m * b).collect();
        let last = widths.len() - 1;
        let time = TimeEmbedding::new(vb.pp("time"), b, tdim)?;
        let geo = if cfg.geo_prior {
            Some(GeoEmbedding::new(vb.pp("geo"), tdim)?)
        } else {
            None
        };
        let conv_in = conv3(cfg.data_channels + cfg.cond_channels, b, vb.pp("conv_in"))?;
        let mut down = Vec::new();
        let mut ch = b;
        for (i, &w) in widths.iter().enumerate() {
            let vbl = vb.pp(format!("down.{i}"));
            let mut blocks = Vec::new();
            for r in 0..cfg.res_blocks {
                blocks.push(ResBlock::new(vbl.pp(format!("res.{r}")), ch, w, tdim, g)?);
                ch = w;
            }
            let down_s = if i < last {
                Some(Downsample::new(vbl.pp("down"), w)?)
            } else {
                None
            };
            down.push(Level {
                blocks,
                down: down_s,
            });
        }
        let mid1 = ResBlock::new(vb.pp("mid.res1"), ch, ch, tdim, g)?;
        let mid_attn = if cfg.attention {
            Some(Attention::new(vb.pp("mid.attn"), ch, g)?)
        } else {
            None
        };
        let mid2 = ResBlock::new(vb.pp("mid.res2"), ch, ch, tdim, g)?;
        let mut up = Vec::new();
        for (i, &w) in widths.iter().enumerate().rev() {
            let vbl = vb.pp(format!("up.{i}"));
            let mut blocks = Vec::new();
            for r in 0..cfg.res_blocks {
                // Each block takes the matching down block's output as a skip connection.
                blocks.push(ResBlock::new(
                    vbl.pp(format!("res.{r}")),
                    ch + w,
                    w,
                    tdim,
                    g,
                )?);
                ch = w;
            }
            let up_s = if i > 0 {
                Some(Upsample::new(vbl.pp("up"), w)?)
            } else {
                None
            };
            up.push(UpLevel { blocks, up: up_s });
        }
        Ok(Self {
            cfg: cfg.clone(),
            time,
            geo,
            conv_in,
            down,
            mid1,
            mid_attn,
            mid2,
            up,
            norm_out: group_norm(g, b, true, vb.pp("norm_out"))?,
            conv_out: conv3(b, cfg.data_channels, vb.pp("conv_out"))?,
        })
    }

    /// The config.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Predict ε. `x_t`: [N, data, H, W]; `cond`: [N, cond, H, W]; `t`: [N] (u32 step indices);
    /// `geo`: [N, 3] (lat°, lon°, day of year), used only when the config has `geo_prior`.
    /// H and W must be multiples of [`UNetConfig::size_multiple`].
    pub fn forward(
        &self,
        x_t: &Tensor,
        cond: &Tensor,
        t: &Tensor,
        geo: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut emb = self.time.forward(t)?;
        if let (Some(g), Some(geo)) = (&self.geo, geo) {
            emb = (emb + g.forward(geo)?)?;
        }
        let mut h = self.conv_in.forward(&Tensor::cat(&[x_t, cond], 1)?)?;
        let mut skips = Vec::new();
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(&h, &emb)?;
                skips.push(h.clone());
            }
            if let Some(d) = &level.down {
                h = d.forward(&h)?;
            }
        }
        h = self.mid1.forward(&h, &emb)?;
        if let Some(a) = &self.mid_attn {
            h = a.forward(&h)?;
        }
        h = self.mid2.forward(&h, &emb)?;
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips
                    .pop()
                    .ok_or_else(|| candle_core::Error::Msg("UNet skip stack empty".into()))?;
                h = block.forward(&Tensor::cat(&[&h, &skip], 1)?, &emb)?;
            }
            if let Some(u) = &level.up {
                h = u.forward(&h)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn forward_keeps_shape_and_geo_changes_output() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = UNetConfig {
            data_channels: 2,
            cond_channels: 5,
            base_channels: 8,
            channel_mults: vec![1, 2],
            groups: 4,
            geo_prior: true,
            ..Default::default()
        };
        let vm = VarMap::new();
        let net = UNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), &cfg)?;
        let x = Tensor::randn(0f32, 1.0, (3, 2, 16, 8), &dev)?;
        let c = Tensor::randn(0f32, 1.0, (3, 5, 16, 8), &dev)?;
        let t = Tensor::new(&[0u32, 500, 999], &dev)?;
        let geo = Tensor::new(
            &[[50f32, 4.0, 180.0], [0.0, 0.0, 1.0], [-30.0, 120.0, 90.0]],
            &dev,
        )?;
        let y = net.forward(&x, &c, &t, Some(&geo))?;
        assert_eq!(y.dims(), &[3, 2, 16, 8]);
        let y0 = net.forward(&x, &c, &t, None)?;
        let diff = (y - y0)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(diff > 0.0);
        Ok(())
    }

    #[test]
    fn rejects_groups_that_do_not_divide() {
        let cfg = UNetConfig {
            base_channels: 12,
            groups: 8,
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ModelError::Config {
                field: "unet.groups",
                ..
            })
        ));
    }
}
