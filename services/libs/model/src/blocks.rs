//! UNet building blocks: sinusoidal time embedding, geographic prior embedding, residual blocks
//! with GroupNorm + SiLU, spatial self-attention, down/upsampling (candle-nn layers and the fast
//! convolutions of [`crate::conv`], candle's config → `new(vb, ..)` → `forward` style).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use crate::conv::{conv2d, Conv2d};
use crate::norm::{group_norm, GroupNorm};

/// 3×3 convolution with padding 1 (spatial size preserved), at matmul speed ([`crate::conv`]).
pub fn conv3(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(cin, cout, 3, vb)
}

/// Sinusoidal embedding of the diffusion step (Vaswani et al. 2017 §3.5, as used by DDPM §4):
/// emb[i] = sin(t·ω_i), emb[half+i] = cos(t·ω_i), ω_i = 10000^(−i/half).
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    Tensor::cat(&[args.sin()?, args.cos()?], 1)
}

/// Two-layer MLP applied to the sinusoidal step embedding: dim → 4·dim → 4·dim with SiLU.
#[derive(Debug, Clone)]
pub struct TimeEmbedding {
    dim: usize,
    l1: Linear,
    l2: Linear,
}

impl TimeEmbedding {
    /// `dim` = width of the sinusoidal features, output width `out`.
    pub fn new(vb: VarBuilder, dim: usize, out: usize) -> Result<Self> {
        Ok(Self {
            dim,
            l1: linear(dim, out, vb.pp("l1"))?,
            l2: linear(out, out, vb.pp("l2"))?,
        })
    }

    /// `t`: [N] step indices (u32 or float) → [N, out].
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let e = timestep_embedding(t, self.dim)?;
        self.l2.forward(&self.l1.forward(&e)?.silu()?)
    }
}

/// Geographic prior: (latitude°, longitude°, day of year) → sin/cos features → MLP, added to the
/// time embedding so the network can learn place- and season-dependent priors.
#[derive(Debug, Clone)]
pub struct GeoEmbedding {
    l1: Linear,
    l2: Linear,
}

/// Number of periodic features derived from (lat, lon, doy).
const GEO_FEATURES: usize = 6;

impl GeoEmbedding {
    /// Output width `out` (the time-embedding width).
    pub fn new(vb: VarBuilder, out: usize) -> Result<Self> {
        Ok(Self {
            l1: linear(GEO_FEATURES, out, vb.pp("l1"))?,
            l2: linear(out, out, vb.pp("l2"))?,
        })
    }

    /// `geo`: [N, 3] = (lat°, lon°, day of year) → [N, out].
    pub fn forward(&self, geo: &Tensor) -> Result<Tensor> {
        let deg = std::f64::consts::PI / 180.0;
        let lat = (geo.narrow(1, 0, 1)? * deg)?;
        let lon = (geo.narrow(1, 1, 1)? * deg)?;
        let doy = (geo.narrow(1, 2, 1)? * (2.0 * std::f64::consts::PI / 365.25))?;
        let f = Tensor::cat(
            &[
                lat.sin()?,
                lat.cos()?,
                lon.sin()?,
                lon.cos()?,
                doy.sin()?,
                doy.cos()?,
            ],
            1,
        )?;
        self.l2.forward(&self.l1.forward(&f)?.silu()?)
    }
}

/// Residual block (DDPM appendix B / Wide-ResNet style): GN → SiLU → conv → + time → GN → SiLU →
/// conv, plus a 1×1 projection of the input when the width changes (GN → SiLU fused, see
/// [`crate::norm`]).
#[derive(Debug, Clone)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    temb: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    /// `cin` → `cout` channels, time embedding width `tdim`, `groups` GroupNorm groups.
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        tdim: usize,
        groups: usize,
    ) -> Result<Self> {
        let skip = if cin == cout {
            None
        } else {
            Some(conv2d(cin, cout, 1, vb.pp("skip"))?)
        };
        Ok(Self {
            norm1: group_norm(groups, cin, true, vb.pp("norm1"))?,
            conv1: conv3(cin, cout, vb.pp("conv1"))?,
            temb: linear(tdim, cout, vb.pp("temb"))?,
            norm2: group_norm(groups, cout, true, vb.pp("norm2"))?,
            conv2: conv3(cout, cout, vb.pp("conv2"))?,
            skip,
        })
    }

    /// `x`: [N, cin, H, W], `emb`: [N, tdim] → [N, cout, H, W].
    pub fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let t = self.temb.forward(&emb.silu()?)?;
        let h = self.conv1.forward_with(&self.norm1.forward(x)?, Some(&t))?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        match &self.skip {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Single-head spatial self-attention over all H·W positions (DDPM uses it at 16×16).
#[derive(Debug, Clone)]
pub struct Attention {
    norm: GroupNorm,
    qkv: Linear,
    proj: Linear,
    channels: usize,
}

impl Attention {
    /// Attention over `channels` features.
    pub fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            norm: group_norm(groups, channels, false, vb.pp("norm"))?,
            qkv: linear(channels, 3 * channels, vb.pp("qkv"))?,
            proj: linear(channels, channels, vb.pp("proj"))?,
            channels,
        })
    }

    /// softmax(QKᵀ/√C)·V with a residual connection; `x`: [N, C, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let seq = self
            .norm
            .forward(x)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()?; // [N, HW, C]
        let qkv = self.qkv.forward(&seq)?;
        let q = qkv.narrow(D::Minus1, 0, c)?.contiguous()?;
        let k = qkv.narrow(D::Minus1, c, c)?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (self.channels as f64).sqrt()))?;
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = self.proj.forward(&attn.matmul(&v)?)?; // [N, HW, C]
        let out = out.transpose(1, 2)?.reshape((n, c, h, w))?;
        x + out
    }
}

/// 2× downsampling: 2×2 average pooling then a 3×3 convolution (cheaper than a strided conv's
/// backward pass on CPU and alias-free).
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    /// `channels` in and out.
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            conv: conv3(channels, channels, vb.pp("conv"))?,
        })
    }

    /// [N, C, H, W] → [N, C, H/2, W/2].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&x.avg_pool2d(2)?)
    }
}

/// 2× upsampling: nearest neighbour then a 3×3 convolution (DDPM's upsampler).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    /// `channels` in and out.
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            conv: conv3(channels, channels, vb.pp("conv"))?,
        })
    }

    /// [N, C, H, W] → [N, C, 2H, 2W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        self.conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)
    }
}
