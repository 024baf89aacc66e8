//! Convolutions that run at matmul speed on CPU, forward and backward.
//!
//! candle's CPU `conv2d` is im2col + gemm forward, but its backward pass goes through
//! `conv_transpose2d`, a direct loop that ran a training step at a few percent of candle's own
//! matmul rate. Here a "same" k×k convolution (stride 1, padding k/2) of sample n is
//!
//! ```text
//! y[n] = b + e[n] + W · im2col(x[n])       W: [cout, cin·k²], im2col(x[n]): [cin·k², H·W]
//! ```
//!
//! with the bias (and an optional per-sample shift e, such as a residual block's time embedding)
//! written into the output before the gemm accumulates onto it. The forward does not build
//! im2col's k² copies of the input: it copies each input row once per kernel row, padded by k/2
//! zeros ([`Stencil::padded_rows`]), and runs k gemms, one per horizontal tap dx, each reading that
//! buffer from column dx (a strided view, as is the tap's slice of W), on the padded width; the
//! valid columns are copied out. A 1×1 kernel's columns are the input itself. The backward pass is two more
//! gemms per sample, ∂W += ∂y[n] · colsᵀ and ∂cols = Wᵀ · ∂y[n], and col2im, the adjoint of
//! im2col. The columns are rebuilt in the backward pass instead of being kept: a sample's columns
//! are k² times its input, so keeping them for a whole batch would cost more memory than the rest
//! of the network's activations. Each thread keeps its buffers and reuses them.
//!
//! Every gemm runs on one thread and writes straight into its output; the layer is split across
//! threads by sample and by band of output rows. Many small multi-threaded gemms, one per sample,
//! spent as much time in rayon's fork-join and in copies as in the arithmetic. On CUDA the layer
//! calls candle's `conv2d`, which is fast there. The weights are candle-nn's (`weight` [cout, cin,
//! k, k], `bias` [cout]), so checkpoints are the same on both paths.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Slice};
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

    /// Columns of the output rows `rows` of one sample `x` [C, H·W], written into `cols`
    /// [C·k², rows.len()·W] (resized as needed): row `c·k² + dy·k + dx` holds x[c, y + dy − k/2,
    /// x + dx − k/2] (0 outside the image) at column `(y − rows.start)·W + x`. Every entry is
    /// written once (the zeros of the border too), so the buffer is never cleared first.
    pub fn im2col_rows(&self, x: &[f32], rows: std::ops::Range<usize>, cols: &mut Vec<f32>) {
        let (kk, hw, w) = (self.kernel * self.kernel, self.h * self.w, self.w);
        let band = rows.len() * w;
        cols.resize(x.len() / hw * kk * band, 0.0);
        for (out, plane) in cols.chunks_exact_mut(kk * band).zip(x.chunks_exact(hw)) {
            for (t, dy, dx) in self.taps() {
                let row = &mut out[t * band..][..band];
                let (xs, ys) = (valid_range(dx, w), valid_range(dy, self.h));
                let sx = (xs.start as isize + dx) as usize;
                for (y, dst) in rows.clone().zip(row.chunks_exact_mut(w)) {
                    if !ys.contains(&y) {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = (y as isize + dy) as usize * w + sx;
                    dst[..xs.start].fill(0.0);
                    dst[xs.clone()].copy_from_slice(&plane[src..src + xs.len()]);
                    dst[xs.end..].fill(0.0);
                }
            }
        }
    }

    /// The input rows that the output rows `rows` of one sample `x` [C, H·W] read, each padded
    /// by r = k/2 zeros on both sides, written into `buf` [C·k, stride] (resized as needed) with
    /// Wp = W + 2r and stride = rows.len()·Wp + 2r: entry (c·k + dy, (y − rows.start)·Wp + xp)
    /// holds x[c, y + dy − r, xp − r] (0 outside the image). Row (c, dy) read from column dx on
    /// is then im2col's row of tap (dy, dx), at output column (y − rows.start)·Wp + x; the last 2r
    /// columns of each Wp-wide output row are junk. A third of im2col's k² copies for k = 3.
    /// Returns the stride.
    pub fn padded_rows(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        buf: &mut Vec<f32>,
    ) -> usize {
        let (k, r, w, hw) = (self.kernel, self.kernel / 2, self.w, self.h * self.w);
        let wp = w + 2 * r;
        let stride = rows.len() * wp + 2 * r;
        buf.resize(x.len() / hw * k * stride, 0.0);
        for (out, plane) in buf.chunks_exact_mut(k * stride).zip(x.chunks_exact(hw)) {
            for (dy, row) in out.chunks_exact_mut(stride).enumerate() {
                let (body, tail) = row.split_at_mut(rows.len() * wp);
                tail.fill(0.0);
                for (y, dst) in rows.clone().zip(body.chunks_exact_mut(wp)) {
                    let Some(sy) = (y + dy).checked_sub(r).filter(|&sy| sy < self.h) else {
                        dst.fill(0.0);
                        continue;
                    };
                    dst[..r].fill(0.0);
                    dst[r..r + w].copy_from_slice(&plane[sy * w..][..w]);
                    dst[r + w..].fill(0.0);
                }
            }
        }
        stride
    }

    /// The columns of a whole sample (see [`Stencil::im2col_rows`]).
    pub fn im2col(&self, x: &[f32]) -> Vec<f32> {
        let mut cols = Vec::new();
        self.im2col_rows(x, 0..self.h, &mut cols);
        cols
    }

    /// The adjoint of [`Stencil::im2col`]: `cols` [C·k², H·W] added into `x` [C, H·W], each entry
    /// onto the pixel it was copied from.
    pub fn col2im_add(&self, cols: &[f32], x: &mut [f32]) {
        let (kk, hw) = (self.kernel * self.kernel, self.h * self.w);
        for (plane, rows) in x.chunks_exact_mut(hw).zip(cols.chunks_exact(kk * hw)) {
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
        }
    }

    /// Bands of output rows that split `n` samples into about `4 × threads` pieces of work (at
    /// least [`MIN_BAND_PIXELS`] output pixels each), so a small batch still keeps every core busy.
    fn bands(&self, n: usize) -> Vec<std::ops::Range<usize>> {
        let want = (4 * rayon::current_num_threads()).div_ceil(n.max(1));
        let min_rows = MIN_BAND_PIXELS.div_ceil(self.w.max(1));
        let rows = self.h.div_ceil(want).max(min_rows).min(self.h.max(1));
        (0..self.h)
            .step_by(rows)
            .map(|y| y..(y + rows).min(self.h))
            .collect()
    }
}

/// The fewest output pixels one forward gemm covers: fewer would leave the gemm's micro-kernel
/// starved of columns.
const MIN_BAND_PIXELS: usize = 256;

std::thread_local! {
    /// Each thread's columns buffer, reused across layers and steps: allocating k²× an
    /// activation afresh for every gemm cost as much time as the arithmetic.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's forward output on the padded width (see [`Stencil::padded_rows`]).
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's buffer for the columns' gradient in the backward pass.
    static DCOLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A row-major matrix view of `data` ([rows, cols]), or an error naming the op.
fn matrix(data: &[f32], rows: usize, cols: usize) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((rows, cols), data).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// A mutable row-major matrix view of `data` ([rows, cols]).
fn matrix_mut(data: &mut [f32], rows: usize, cols: usize) -> Result<ArrayViewMut2<'_, f32>> {
    ArrayViewMut2::from_shape((rows, cols), data)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// The convolution as one autograd node of (x [N, C, H, W], W [cout, C·k²], shift [N, cout]).
///
/// Every gemm is single-threaded and written straight into its output (`ndarray`'s
/// `general_mat_mul`); the parallelism is across samples and bands of output rows, so one rayon
/// split covers the whole layer instead of a fork-join per small per-sample gemm.
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
        let (x, wraw, shift) = (
            contiguous_f32(("conv2d", "input"), xs, xl)?,
            contiguous_f32(("conv2d", "weight"), ws, wl)?,
            contiguous_f32(("conv2d", "shift"), ss, sl)?,
        );
        let wm = matrix(wraw, cout, ckk)?;
        let mut y = vec![0f32; n * cout * h * w];
        // Every (sample, band of output rows) as its own piece of work, with its output view.
        let bands = st.bands(n);
        let mut work = Vec::with_capacity(n * bands.len());
        for ((yn, xn), sn) in y
            .chunks_exact_mut(cout * h * w)
            .zip(x.chunks_exact(c * h * w))
            .zip(shift.chunks_exact(cout))
        {
            let mut rest = matrix_mut(yn, cout, h * w)?;
            for band in &bands {
                let (out, tail) = rest.split_at(Axis(1), band.len() * w);
                work.push((xn, sn, band.clone(), out));
                rest = tail;
            }
        }
        // The weights as [cout, C·k, k]: W[:, :, :, dx] is a strided [cout, C·k] matrix.
        let taps = ArrayView3::from_shape((cout, c * st.kernel, st.kernel), wraw)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        work.into_par_iter()
            .try_for_each(|(xn, sn, band, mut out)| {
                if st.kernel == 1 {
                    // A 1×1 kernel's columns are the input itself.
                    for (mut row, &b) in out.rows_mut().into_iter().zip(sn) {
                        row.fill(b);
                    }
                    let xb = matrix(xn, c, h * w)?
                        .slice_axis_move(Axis(1), Slice::from(band.start * w..band.end * w));
                    general_mat_mul(1.0, &wm, &xb, 1.0, &mut out);
                    return Ok(());
                }
                // y = shift + Σ_dx W[:, :, :, dx] · (padded rows from column dx), on the padded
                // width, then the W valid columns of each row are copied out.
                let wp = w + 2 * (st.kernel / 2);
                let px = band.len() * wp;
                COLS.with_borrow_mut(|rows| {
                    WIDE.with_borrow_mut(|wide| {
                        let stride = st.padded_rows(xn, band.clone(), rows);
                        let rows = matrix(rows, c * st.kernel, stride)?;
                        wide.resize(cout * px, 0.0);
                        for (row, &b) in wide.chunks_exact_mut(px).zip(sn) {
                            row.fill(b);
                        }
                        let mut acc = matrix_mut(wide, cout, px)?;
                        for dx in 0..st.kernel {
                            let b = rows.slice_axis(Axis(1), Slice::from(dx..dx + px));
                            general_mat_mul(1.0, &taps.index_axis(Axis(2), dx), &b, 1.0, &mut acc);
                        }
                        for (mut o, a) in out.rows_mut().into_iter().zip(wide.chunks_exact(px)) {
                            let o = o.as_slice_mut().ok_or_else(|| {
                                candle_core::Error::Msg("conv2d: output band not contiguous".into())
                            })?;
                            for (ol, al) in o.chunks_exact_mut(w).zip(a.chunks_exact(wp)) {
                                ol.copy_from_slice(&al[..w]);
                            }
                        }
                        Ok::<_, candle_core::Error>(())
                    })
                })
            })?;
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
        let hw = h * w;
        let dev = x.device();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let wv = wmat.flatten_all()?.to_vec1::<f32>()?;
        let gs = grad.flatten_all()?.to_vec1::<f32>()?;
        let wt = matrix(&wv, cout, ckk)?.reversed_axes();
        let mut dx = vec![0f32; n * c * hw];
        // Per sample: ∂cols = Wᵀ·∂y, col2im into ∂x, and the sample's ∂W, summed afterwards in
        // sample order so the sum does not depend on how rayon split the work (same seed, same
        // bytes).
        let per_sample = dx
            .par_chunks_mut(c * hw)
            .zip(xs.par_chunks(c * hw))
            .zip(gs.par_chunks(cout * hw))
            .map(|((dxn, xn), gn)| {
                let g = matrix(gn, cout, hw)?;
                let mut dw = Array2::<f32>::zeros((cout, ckk));
                if st.kernel == 1 {
                    // Columns are the input and col2im the identity: ∂x = Wᵀ·∂y directly.
                    general_mat_mul(1.0, &g, &matrix(xn, c, hw)?.t(), 0.0, &mut dw);
                    general_mat_mul(1.0, &wt, &g, 0.0, &mut matrix_mut(dxn, c, hw)?);
                    return Ok(dw);
                }
                COLS.with_borrow_mut(|cols| {
                    st.im2col_rows(xn, 0..h, cols);
                    general_mat_mul(1.0, &g, &matrix(cols, ckk, hw)?.t(), 0.0, &mut dw);
                    Ok::<_, candle_core::Error>(())
                })?;
                DCOLS.with_borrow_mut(|dcols| {
                    // Overwritten whole by the gemm (β = 0), so never cleared.
                    dcols.resize(ckk * hw, 0.0);
                    general_mat_mul(1.0, &wt, &g, 0.0, &mut matrix_mut(dcols, ckk, hw)?);
                    st.col2im_add(dcols, dxn);
                    Ok::<_, candle_core::Error>(())
                })?;
                Ok(dw)
            })
            .collect::<Result<Vec<_>>>()?;
        let dw = per_sample
            .into_iter()
            .fold(Array2::<f32>::zeros((cout, ckk)), |sum, d| sum + d);
        let dw = Tensor::from_vec(dw.into_raw_vec_and_offset().0, (cout, ckk), dev)?;
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
    fn bands_of_rows_cover_a_larger_image() -> anyhow::Result<()> {
        // One sample of 40×40 is split into several bands of output rows (see `Stencil::bands`).
        let st = Stencil {
            kernel: 3,
            h: 40,
            w: 40,
        };
        let bands = st.bands(1);
        assert_eq!(bands.first().map(|b| b.start), Some(0));
        assert_eq!(bands.last().map(|b| b.end), Some(40));
        assert!(bands.windows(2).all(|p| p[0].end == p[1].start));
        matches_candle(3, (1, 3, 4, 40, 40))
    }

    #[test]
    fn tiny_images_keep_their_borders() -> anyhow::Result<()> {
        // 1×1 and 2×1 images: every tap but the centre falls outside.
        matches_candle(3, (1, 2, 3, 1, 1))?;
        matches_candle(3, (2, 3, 2, 2, 1))
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() -> anyhow::Result<()> {
        // <im2col(x), c> = <x, col2im(c)> for random x and c.
        let dev = Device::Cpu;
        let (ch, h, w) = (3, 5, 4);
        let st = Stencil { kernel: 3, h, w };
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, ch * h * w, &dev)?.to_vec1()?;
        let c: Vec<f32> = Tensor::randn(0f32, 1.0, ch * 9 * h * w, &dev)?.to_vec1()?;
        let cols = st.im2col(&x);
        let mut back = vec![0f32; x.len()];
        st.col2im_add(&c, &mut back);
        let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f32 = back.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        Ok(())
    }
}
