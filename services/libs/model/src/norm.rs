//! GroupNorm (Wu & He 2018), optionally followed by SiLU, fused into one pass forward and one
//! backward on CPU.
//!
//! candle-nn's `GroupNorm` is a chain of about ten tensor ops (mean, subtract, square, mean, sqrt,
//! divide, scale, shift), each a full pass over memory, and autograd adds two to three times as
//! many backward; with the SiLU after it that was more memory traffic per pixel than the 3×3
//! convolution next to it has arithmetic. Here, per (sample, group) with x̂ = (x − μ)/σ,
//! a = γ x̂ + β and y = silu(a) (or a):
//!
//! ```text
//! ∂a = ∂y · silu′(a),  ∂β_c = Σ ∂a,  ∂γ_c = Σ ∂a · x̂,  ∂x̂ = γ ∂a,
//! ∂x = (∂x̂ − mean(∂x̂) − x̂ · mean(∂x̂ · x̂)) / σ
//! ```
//!
//! On CUDA the layer is candle-nn's. Weights are candle-nn's (`weight`, `bias`), so checkpoints are
//! the same on both paths.

use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// GroupNorm over `channels` in `groups`, with an optional fused SiLU.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    op: GroupNormOp,
}

/// GroupNorm with ε = 1e-5 (γ = 1, β = 0 initially), followed by SiLU when `silu`.
///
/// # Errors
/// `groups` does not divide `channels`, or a weight is missing from a loaded `vb`.
pub fn group_norm(groups: usize, channels: usize, silu: bool, vb: VarBuilder) -> Result<GroupNorm> {
    if groups == 0 || channels % groups != 0 {
        candle_core::bail!("group_norm: {groups} groups do not divide {channels} channels");
    }
    Ok(GroupNorm {
        weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?,
        bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?,
        op: GroupNormOp {
            groups,
            eps: 1e-5,
            silu,
        },
    })
}

impl Module for GroupNorm {
    /// `x`: [N, C, …] → same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && !crate::conv::candle_layers() {
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, self.op);
        }
        let c = self.weight.elem_count();
        let y = candle_nn::GroupNorm::new(
            self.weight.clone(),
            self.bias.clone(),
            c,
            self.op.groups,
            self.op.eps,
        )?
        .forward(x)?;
        if self.op.silu {
            y.silu()
        } else {
            Ok(y)
        }
    }
}

/// The fused forward as a custom op of (x, γ, β).
#[derive(Debug, Clone, Copy)]
struct GroupNormOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// The backward as a custom op of (x, [γ, β], ∂y): [∂x (N·C·HW), ∂γ per (n, c) (N·C), ∂β per
/// (n, c) (N·C)], summed over n by the caller.
#[derive(Debug, Clone, Copy)]
struct GroupNormBwd(GroupNormOp);

/// 1 / (1 + e^−a), through [`exp`] so that loops over it vectorise.
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// e^x to within 4 ulp of libm's (tested; Cephes' `expf`: x = n·ln 2 + r, |r| ≤ ln 2 / 2, a degree-6 polynomial for
/// e^r, and 2^n put into the exponent bits), with x clamped to [−87, 88] so 2^n stays a normal
/// float. Branch-free arithmetic only: libm's `expf` is a call per element, which kept the fused
/// GroupNorm + SiLU loops scalar and cost as much as the rest of the layer.
fn exp(x: f32) -> f32 {
    /// 1.5 · 2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + ROUND;
    let n = k - ROUND;
    // ln 2 in two parts: the first (355/512, exact in f32) times n is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let er = p * r * r + r + 1.0;
    // n + 127 into the exponent field: k's bits are ROUND's plus n.
    let scale = f32::from_bits(k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    er * scale
}

/// Σ f(v) over `x`, in f32 lanes over blocks of [`BLOCK`] values and f64 across blocks: the
/// lanes vectorise and the f64 keeps long sums accurate; the order is fixed, so the result is too.
fn sum_by(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum_pairs(x, x, |v, _| f(v))
}

/// Σ f(a, b) over pairs of `a` and `b` (see [`sum_by`]).
fn sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(ab, bb)| {
            let mut lanes = [0f32; LANES];
            let (wa, wb) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
            let tail: f32 = wa
                .remainder()
                .iter()
                .zip(wb.remainder())
                .map(|(&x, &y)| f(x, y))
                .sum();
            for (ca, cb) in wa.zip(wb) {
                for ((l, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
                    *l += f(x, y);
                }
            }
            f64::from(lanes.iter().sum::<f32>() + tail)
        })
        .sum()
}

/// Values summed in f32 before a block's sum goes into f64.
const BLOCK: usize = 256;
/// Independent f32 accumulators (two AVX registers).
const LANES: usize = 16;

/// (N, C, pixels per channel) of a contiguous [N, C, …] layout.
fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("group_norm: input needs [N, C, …], got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn f32s<'a>(what: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    crate::conv::contiguous_f32(("group_norm", what), s, l)
}

/// Mean and 1/σ of one group's values.
fn moments(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = (sum_by(x, |v| v) / n) as f32;
    let var = sum_by(x, |v| (v - mean) * (v - mean)) / n;
    (mean, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "group_norm_silu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, px) = dims(xl)?;
        let (x, gamma, beta) = (
            f32s("x", xs, xl)?,
            f32s("weight", gs, gl)?,
            f32s("bias", bs, bl)?,
        );
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!("group_norm: {c} channels but {} weights", gamma.len());
        }
        let cg = c / self.groups;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(cg * px)
            .zip(x.par_chunks(cg * px))
            .enumerate()
            .for_each(|(i, (yg, xg))| {
                let (mean, inv) = moments(xg, self.eps);
                let c0 = (i % self.groups) * cg;
                for (k, (yc, xc)) in yg.chunks_mut(px).zip(xg.chunks(px)).enumerate() {
                    let (g, b) = (
                        gamma[c0 + k] * inv,
                        beta[c0 + k] - gamma[c0 + k] * inv * mean,
                    );
                    for (o, &v) in yc.iter_mut().zip(xc) {
                        let a = g * v + b;
                        *o = if self.silu { a * sigmoid(a) } else { a };
                    }
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.dim(0)?, x.dim(1)?);
        let params = Tensor::cat(&[gamma, beta], 0)?;
        let packed = x.apply_op3(&params, &grad.contiguous()?, GroupNormBwd(*self))?;
        let len = x.elem_count();
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, n * c)?.reshape((n, c))?.sum(0)?;
        let dbeta = packed
            .narrow(0, len + n * c, n * c)?
            .reshape((n, c))?
            .sum(0)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl CustomOp3 for GroupNormBwd {
    fn name(&self) -> &'static str {
        "group_norm_silu_bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let GroupNormBwd(op) = *self;
        let (n, c, px) = dims(xl)?;
        let (x, params, dy) = (
            f32s("x", xs, xl)?,
            f32s("weight and bias", gs, gl)?,
            f32s("grad", ds, dl)?,
        );
        let (gamma, beta) = params.split_at(c);
        let cg = c / op.groups;
        let len = x.len();
        let mut out = vec![0f32; len + 2 * n * c];
        let (dx, partials) = out.split_at_mut(len);
        let (dgamma, dbeta) = partials.split_at_mut(n * c);
        dx.par_chunks_mut(cg * px)
            .zip(x.par_chunks(cg * px).zip(dy.par_chunks(cg * px)))
            .zip(dgamma.par_chunks_mut(cg).zip(dbeta.par_chunks_mut(cg)))
            .enumerate()
            .for_each(|(i, ((dxg, (xg, dyg)), (dgg, dbg)))| {
                let (mean, inv) = moments(xg, op.eps);
                let c0 = (i % op.groups) * cg;
                let (mut s1, mut s2) = (0f64, 0f64);
                for k in 0..cg {
                    let (g, b) = (gamma[c0 + k], beta[c0 + k]);
                    let (xc, dyc) = (&xg[k * px..][..px], &dyg[k * px..][..px]);
                    let dxc = &mut dxg[k * px..][..px];
                    // ∂a for now; ∂x̂ = γ ∂a.
                    for ((o, &v), &d) in dxc.iter_mut().zip(xc).zip(dyc) {
                        *o = if op.silu {
                            let a = g * (v - mean) * inv + b;
                            let s = sigmoid(a);
                            d * s * (1.0 + a * (1.0 - s))
                        } else {
                            d
                        };
                    }
                    let sb = sum_by(dxc, |da| da);
                    let sg = sum_pairs(dxc, xc, |da, v| da * (v - mean) * inv);
                    dbg[k] = sb as f32;
                    dgg[k] = sg as f32;
                    s1 += f64::from(g) * sb;
                    s2 += f64::from(g) * sg;
                }
                let m = (cg * px) as f64;
                let (m1, m2) = ((s1 / m) as f32, (s2 / m) as f32);
                for (k, (dxc, xc)) in dxg.chunks_mut(px).zip(xg.chunks(px)).enumerate() {
                    let g = gamma[c0 + k];
                    for (o, &v) in dxc.iter_mut().zip(xc) {
                        *o = (g * *o - m1 - (v - mean) * inv * m2) * inv;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(len + 2 * n * c)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    use super::*;
    use crate::testing::rel_err;

    #[test]
    fn exp_is_libm_exp_to_a_few_ulp() {
        let mut worst = 0f32;
        for i in -86_990..=87_990 {
            let x = i as f32 * 1e-3;
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        // Clamped, not overflowing or denormal, far outside.
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(1e4).is_finite());
        assert!(sigmoid(-1e4) >= 0.0 && sigmoid(-1e4) < 1e-37);
        assert_eq!(sigmoid(1e4), 1.0);
    }

    #[test]
    fn lane_sums_are_accurate_on_long_offset_sums() {
        // A large offset and many values: naive f32 accumulation loses digits here.
        let x: Vec<f32> = (0..100_003)
            .map(|i| 1000.0 + (i % 7) as f32 * 0.125)
            .collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        assert!((sum_by(&x, |v| v) - exact).abs() < 1e-7 * exact);
    }

    /// Output and the gradients of x, γ and β against candle-nn's GroupNorm (+ candle's SiLU),
    /// with γ and β away from their initial 1 and 0 and an upstream gradient that is not uniform.
    fn matches_candle(silu: bool) -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let (n, c, h, w, groups) = (3, 8, 5, 7, 4);
        let vm = VarMap::new();
        let norm = group_norm(
            groups,
            c,
            silu,
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
        )?;
        for (name, var) in vm
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .iter()
        {
            let shift = if name == "weight" { 1.0 } else { 0.0 };
            var.set(&(Tensor::randn(0f32, 0.5, c, &dev)? + shift)?)?;
        }
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (n, c, h, w), &dev)? + 0.7)?)?;
        let up = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?;
        let ours = norm.forward(x.as_tensor())?;
        let g_ours = (&ours * &up)?.sum_all()?.backward()?;
        let reference =
            candle_nn::GroupNorm::new(norm.weight.clone(), norm.bias.clone(), c, groups, 1e-5)?
                .forward(x.as_tensor())?;
        let reference = if silu { reference.silu()? } else { reference };
        let g_ref = (&reference * &up)?.sum_all()?.backward()?;
        assert!(rel_err(&ours, &reference)? < 1e-5, "forward");
        for (what, t) in [
            ("x", x.as_tensor()),
            ("weight", &norm.weight),
            ("bias", &norm.bias),
        ] {
            let (Some(a), Some(b)) = (g_ours.get(t), g_ref.get(t)) else {
                anyhow::bail!("no gradient for {what}");
            };
            let e = rel_err(a, b)?;
            assert!(
                e < 1e-4,
                "gradient of {what} (silu {silu}): relative error {e}"
            );
        }
        Ok(())
    }

    #[test]
    fn group_norm_matches_candle() -> anyhow::Result<()> {
        matches_candle(false)
    }

    #[test]
    fn group_norm_silu_matches_candle() -> anyhow::Result<()> {
        matches_candle(true)
    }
}
