//! Convolutions that run at matmul speed on CPU, forward and backward.
//!
//! candle's CPU `conv2d` is im2col + gemm forward, but its backward pass goes through
//! `conv_transpose2d`, a direct loop that ran a training step at a few percent of candle's own
//! matmul rate. Here a "same" k×k convolution (stride 1, padding k/2) of sample n is
//!
//! ```text
//! y[n] = [W | b + e[n]] · [im2col(x[n]); 1]       W: [cout, cin·k²], im2col(x[n]): [cin·k², H·W]
//! ```
//!
//! one gemm per sample, with the bias (and an optional per-sample shift e, such as a residual
//! block's time embedding) carried by a row of ones, so no separate pass adds it. The backward
//! pass is two more gemms per sample, ∂W += ∂y[n] · colsᵀ and ∂cols = Wᵀ · ∂y[n], and col2im, the
//! adjoint of im2col. The columns are rebuilt in the backward pass instead of being kept: a
//! sample's columns are k² times its input, so keeping them for a whole batch would cost more
//! memory than the rest of the network's activations, and allocating them afresh for every layer
//! cost as much time as the arithmetic. On CUDA the layer calls candle's `conv2d`, which is fast
//! there. The weights are candle-nn's (`weight` [cout, cin, k, k], `bias` [cout]), so checkpoints
//! are the same on both paths.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

/// Route CPU layers through candle's own ops instead (see [`use_candle_layers`]).
static CANDLE_LAYERS: AtomicBool = AtomicBool::new(false);

/// Run every convolution through candle's own `conv2d` and every GroupNorm through candle-nn's
/// (the layers before this module and [`crate::norm`]), so a benchmark can put the two side by
/// side in one run. Process-wide; results agree to float rounding (tested).
pub fn use_candle_layers(on: bool) {
    CANDLE_LAYERS.store(on, Ordering::Relaxed);
}

/// Whether [`use_candle_layers`] is on.
pub(crate) fn candle_layers() -> bool {
    CANDLE_LAYERS.load(Ordering::Relaxed)
}

/// A stride-1 "same" convolution with an odd square kernel (1 or 3 here).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
}

/// A `kernel`×`kernel` convolution `cin` → `cout` with padding `kernel / 2`, weights under `vb`
/// (`weight`, `bias`; initialised as candle-nn's `conv2d`).
///
/// # Errors
/// An even kernel, or a weight missing from a loaded `vb`.
pub fn conv2d(cin: usize, cout: usize, kernel: usize, vb: VarBuilder) -> Result<Conv2d> {
    if kernel % 2 == 0 {
        candle_core::bail!(
            "conv2d: kernel {kernel} is even; only odd 'same' kernels are supported"
        );
    }
    let weight = vb.get_with_hints(
        (cout, cin, kernel, kernel),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bound = 1. / ((cin * kernel * kernel) as f64).sqrt();
    let bias = vb.get_with_hints(
        cout,
        "bias",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    Ok(Conv2d { weight, bias })
}

impl Conv2d {
    /// `x`: [N, cin, H, W] → [N, cout, H, W], plus `extra` [N, cout] (a per-sample shift of each
    /// output channel, such as the time embedding of a residual block) when given.
    pub fn forward_with(&self, x: &Tensor, extra: Option<&Tensor>) -> Result<Tensor> {
        let (cout, cin, k, _) = self.weight.dims4()?;
        let (n, c, h, w) = x.dims4()?;
        if c != cin {
            candle_core::bail!("conv2d: input has {c} channels, the layer takes {cin}");
        }
        let shift = match extra {
            Some(e) => e.broadcast_add(&self.bias.unsqueeze(0)?)?,
            None => self.bias.unsqueeze(0)?.broadcast_as((n, cout))?,
        };
        if !x.device().is_cpu() || candle_layers() {
            return x
                .conv2d(&self.weight, k / 2, 1, 1, 1)?
                .broadcast_add(&shift.reshape((n, cout, 1, 1))?);
        }
        let wmat = self.weight.reshape((cout, cin * k * k))?;
        if k == 1 {
            let y = wmat.broadcast_left(n)?.matmul(&x.reshape((n, c, h * w))?)?;
            return y
                .broadcast_add(&shift.unsqueeze(2)?)?
                .reshape((n, cout, h, w));
        }
        x.contiguous()?.apply_op3(
            &wmat.contiguous()?,
            &shift.contiguous()?,
            ConvOp(Stencil { kernel: k, h, w }),
        )
    }
}

impl Module for Conv2d {
    /// `x`: [N, cin, H, W] → [N, cout, H, W].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }
}

/// A "same" k×k stencil on H×W images: im2col and its adjoint for one sample.
#[derive(Debug, Clone, Copy)]
pub struct Stencil {
    /// Kernel side (odd).
    pub kernel: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
}

/// For a kernel offset `d` (−k/2..=k/2) along an axis of length `len`: the output positions whose
/// source `i + d` lies inside the axis.
fn valid_range(d: isize, len: usize) -> std::ops::Range<usize> {
    let lo = (-d).max(0) as usize;
    let hi = (len as isize - d.max(0)).max(0) as usize;
    lo..hi.max(lo)
}

impl Stencil {
    /// (tap index, dy, dx) of every kernel position.
    fn taps(&self) -> impl Iterator<Item = (usize, isize, isize)> {
        let (k, r) = (self.kernel, (self.kernel / 2) as isize);
        (0..k * k).map(move |t| (t, (t / k) as isize - r, (t % k) as isize - r))
    }

    /// `x` [C, H·W] → [C·k² + 1, H·W]: row `c·k² + dy·k + dx` holds x[c, y + dy − k/2,
    /// x + dx − k/2] (0 outside the image) at column `y·W + x`; the last row is ones.
    pub fn im2col(&self, x: &[f32]) -> Vec<f32> {
        let (kk, hw) = (self.kernel * self.kernel, self.h * self.w);
        let c = x.len() / hw;
        let mut cols = vec![0f32; (c * kk + 1) * hw];
        let (taps, ones) = cols.split_at_mut(c * kk * hw);
        ones.fill(1.0);
        taps.par_chunks_mut(kk * hw)
            .zip(x.par_chunks(hw))
            .for_each(|(rows, plane)| {
                for (t, dy, dx) in self.taps() {
                    let row = &mut rows[t * hw..][..hw];
                    let xs = valid_range(dx, self.w);
                    for y in valid_range(dy, self.h) {
                        let src = (y as isize + dy) as usize * self.w;
                        let sx = (xs.start as isize + dx) as usize;
                        row[y * self.w + xs.start..y * self.w + xs.end]
                            .copy_from_slice(&plane[src + sx..src + sx + xs.len()]);
                    }
                }
            });
        cols
    }

    /// The adjoint of [`Stencil::im2col`] without its ones row: `cols` [C·k², H·W] → [C, H·W],
    /// each entry added back to the pixel it was copied from.
    pub fn col2im(&self, cols: &[f32]) -> Vec<f32> {
        let (kk, hw) = (self.kernel * self.kernel, self.h * self.w);
        let c = cols.len() / (kk * hw);
        let mut x = vec![0f32; c * hw];
        x.par_chunks_mut(hw)
            .zip(cols.par_chunks(kk * hw))
            .for_each(|(plane, rows)| {
                for (t, dy, dx) in self.taps() {
                    let row = &rows[t * hw..][..hw];
                    let xs = valid_range(dx, self.w);
                    for y in valid_range(dy, self.h) {
                        let dst = (y as isize + dy) as usize * self.w;
                        let sx = (xs.start as isize + dx) as usize;
                        let out = &mut plane[dst + sx..dst + sx + xs.len()];
                        let src = &row[y * self.w + xs.start..y * self.w + xs.end];
                        for (o, v) in out.iter_mut().zip(src) {
                            *o += v;
                        }
                    }
                }
            });
        x
    }
}

/// The convolution as one autograd node of (x [N, C, H, W], W [cout, C·k²], shift [N, cout]).
#[derive(Debug, Clone, Copy)]
struct ConvOp(Stencil);

/// The f32 values of a contiguous storage, or an error naming the op and the argument.
pub(crate) fn contiguous_f32<'a>(
    (op, what): (&str, &str),
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: {what} must be f32, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d_im2col"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ConvOp(st) = *self;
        let (n, c, h, w) = xl.shape().dims4()?;
        let (cout, ckk) = wl.shape().dims2()?;
        if (h, w) != (st.h, st.w) || ckk != c * st.kernel * st.kernel {
            candle_core::bail!(
                "conv2d: input {:?} does not fit weights {:?}",
                xl.dims(),
                wl.dims()
            );
        }
        let (x, wm, shift) = (
            contiguous_f32(("conv2d", "input"), xs, xl)?,
            contiguous_f32(("conv2d", "weight"), ws, wl)?,
            contiguous_f32(("conv2d", "shift"), ss, sl)?,
        );
        let dev = candle_core::Device::Cpu;
        let mut y = Vec::with_capacity(n * cout * h * w);
        for (xn, sn) in x.chunks_exact(c * h * w).zip(shift.chunks_exact(cout)) {
            let cols = Tensor::from_vec(st.im2col(xn), (ckk + 1, h * w), &dev)?;
            let mut lhs = Vec::with_capacity(cout * (ckk + 1));
            for (row, &b) in wm.chunks_exact(ckk).zip(sn) {
                lhs.extend_from_slice(row);
                lhs.push(b);
            }
            let lhs = Tensor::from_vec(lhs, (cout, ckk + 1), &dev)?;
            y.extend(lhs.matmul(&cols)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, cout, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wmat: &Tensor,
        _shift: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ConvOp(st) = *self;
        let (n, c, h, w) = x.dims4()?;
        let (cout, ckk) = wmat.dims2()?;
        let dev = x.device();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let (wt, grad) = (wmat.detach().t()?, grad.detach().contiguous()?);
        let mut dw = Tensor::zeros((cout, ckk), x.dtype(), dev)?;
        let mut dx = Vec::with_capacity(n * c * h * w);
        for (i, xi) in xs.chunks_exact(c * h * w).enumerate() {
            // The columns again (cheaper than keeping them), without the bias's ones row.
            let cols = Tensor::from_vec(st.im2col(xi), (ckk + 1, h * w), dev)?.narrow(0, 0, ckk)?;
            let gi = grad.get(i)?.reshape((cout, h * w))?;
            dw = (dw + gi.matmul(&cols.t()?)?)?;
            let dcols = wt.matmul(&gi)?.flatten_all()?.to_vec1::<f32>()?;
            dx.extend(st.col2im(&dcols));
        }
        let dshift = grad.sum((2, 3))?;
        let dx = Tensor::from_vec(dx, (n, c, h, w), dev)?;
        Ok((Some(dx), Some(dw), Some(dshift)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    use super::*;
    use crate::testing::rel_err;

    /// Output, input gradient and weight/bias gradients (and those of the per-sample shift)
    /// against candle's own conv2d, on random inputs and an upstream gradient that is not all ones.
    fn matches_candle(k: usize, dims: (usize, usize, usize, usize, usize)) -> anyhow::Result<()> {
        let (n, cin, cout, h, w) = dims;
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let conv = conv2d(cin, cout, k, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev)?)?;
        let extra = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, cout), &dev)?)?;
        let up = Tensor::randn(0f32, 1.0, (n, cout, h, w), &dev)?;
        for with_extra in [false, true] {
            let e = with_extra.then(|| extra.as_tensor());
            let ours = conv.forward_with(x.as_tensor(), e)?;
            let g_ours = (&ours * &up)?.sum_all()?.backward()?;
            let mut reference = x
                .as_tensor()
                .conv2d(&conv.weight, k / 2, 1, 1, 1)?
                .broadcast_add(&conv.bias.reshape((1, cout, 1, 1))?)?;
            if let Some(e) = e {
                reference = reference.broadcast_add(&e.reshape((n, cout, 1, 1))?)?;
            }
            let g_ref = (&reference * &up)?.sum_all()?.backward()?;

            assert!(rel_err(&ours, &reference)? < 1e-5, "forward");
            let mut wrt = vec![
                ("x", x.as_tensor()),
                ("weight", &conv.weight),
                ("bias", &conv.bias),
            ];
            if with_extra {
                wrt.push(("extra", extra.as_tensor()));
            }
            for (what, t) in wrt {
                let (Some(a), Some(b)) = (g_ours.get(t), g_ref.get(t)) else {
                    anyhow::bail!("no gradient for {what}");
                };
                let err = rel_err(a, b)?;
                assert!(err < 1e-4, "gradient of {what}: relative error {err}");
            }
        }
        Ok(())
    }

    #[test]
    fn conv3_forward_and_gradients_match_candle() -> anyhow::Result<()> {
        matches_candle(3, (2, 5, 7, 9, 6))
    }

    #[test]
    fn conv1_forward_and_gradients_match_candle() -> anyhow::Result<()> {
        matches_candle(1, (3, 4, 6, 5, 8))
    }

    #[test]
    fn tiny_images_keep_their_borders() -> anyhow::Result<()> {
        // 1×1 and 2×1 images: every tap but the centre falls outside.
        matches_candle(3, (1, 2, 3, 1, 1))?;
        matches_candle(3, (2, 3, 2, 2, 1))
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() -> anyhow::Result<()> {
        // <im2col(x), c> = <x, col2im(c)> for random x and c (the ones row aside).
        let dev = Device::Cpu;
        let (ch, h, w) = (3, 5, 4);
        let st = Stencil { kernel: 3, h, w };
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, ch * h * w, &dev)?.to_vec1()?;
        let c: Vec<f32> = Tensor::randn(0f32, 1.0, ch * 9 * h * w, &dev)?.to_vec1()?;
        let cols = st.im2col(&x);
        assert!(cols[ch * 9 * h * w..].iter().all(|&v| v == 1.0));
        let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f32 = st.col2im(&c).iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        Ok(())
    }
}
