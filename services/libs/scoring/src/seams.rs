//! A seam metric for tiled outputs: how much the texture changes where tiles overlap.
//!
//! Gradients alone miss seams between independent samples: blending two samples lowers the
//! amplitude in their overlap while the hand-over between them adds gradient, and at some
//! correlation lengths the two cancel. So two profiles are measured along each axis, folded by
//! the position's offset within the tile stride (every overlap zone of the regular grid lands on
//! the same offsets): the mean |difference to the next pixel| and the RMS of the high-pass
//! residual (the field minus a Gaussian blur of σ = overlap / 2). Each profile is divided by its
//! mean over the offsets inside the tiles (no overlap); the score is the largest deviation from 1
//! over the overlap offsets, of either profile, along either axis. 0 is seamless.

use std::ops::Range;

use serde::Serialize;
use tiling::TileGrid;

/// The seam metric of a field and its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seams {
    /// The largest deviation from 1 of any normalised profile in an overlap zone.
    pub score: f64,
    /// That deviation for the gradient profile across columns (vertical seams), rows.
    pub gradient_x: f64,
    /// The same along rows (horizontal seams).
    pub gradient_y: f64,
    /// That deviation for the high-pass RMS profile across columns.
    pub highpass_x: f64,
    /// The same along rows.
    pub highpass_y: f64,
}

/// How a tile grid lays out one field: per row and per column, its offset within the stride where
/// the grid repeats regularly (else `None`), and the overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeamLayout {
    /// Offsets of the rows (`TileGrid::periodic_offsets(true)`).
    pub rows: Vec<Option<u64>>,
    /// Offsets of the columns (`TileGrid::periodic_offsets(false)`).
    pub cols: Vec<Option<u64>>,
    /// The tile stride.
    pub stride: u64,
    /// The tile overlap (offsets below it lie in overlap zones).
    pub overlap: u64,
}

impl SeamLayout {
    /// The layout of a field tiled by `grid`.
    pub fn of(grid: &TileGrid) -> Self {
        Self {
            rows: grid.periodic_offsets(true),
            cols: grid.periodic_offsets(false),
            stride: grid.stride(),
            overlap: grid.overlap(),
        }
    }
}

/// Seam metric of `field` (`[lead, h, w]`, NaN ignored) laid out by `layout`, over the pixels
/// `select`ed (same length as `field`; all when `None`; a gradient needs both its pixels). `None`
/// when the grid has no regular overlap zone and interior along either axis (too few tiles, or no
/// overlap), or nothing is selected there.
pub fn seams(
    field: &[f32],
    select: Option<&[bool]>,
    h: usize,
    w: usize,
    layout: &SeamLayout,
) -> Option<Seams> {
    let plane = h * w;
    let mut acc = SeamAccumulator::new(h, w, layout.clone())?;
    let whole = Region {
        rows: 0..h,
        cols: 0..w,
    };
    for (b, band) in field.chunks(plane).enumerate() {
        let chosen = select.map(|s| &s[b * plane..(b + 1) * plane]);
        acc.add(band, chosen, &whole, &whole);
    }
    acc.finish()
}

/// Rows and columns of a rectangle of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Rows, top to bottom.
    pub rows: Range<usize>,
    /// Columns, left to right.
    pub cols: Range<usize>,
}

/// The seam metric of a field too large to hold, measured block by block: each block of one
/// band is read with a margin of [`SeamAccumulator::halo`] pixels (clipped to the field) around
/// the pixels it counts, so the blur and gradients there are those of the whole field and the
/// score equals [`seams`] of the whole field. Blocks must be added in the same order for the same
/// bytes (the sums are floating point).
pub struct SeamAccumulator {
    layout: SeamLayout,
    h: usize,
    w: usize,
    gx: Profile,
    gy: Profile,
    rx: Profile,
    ry: Profile,
}

impl SeamAccumulator {
    /// An accumulator for a `h × w` field laid out by `layout`; `None` without an overlap or when
    /// the layout's offsets are not `h` rows and `w` columns.
    pub fn new(h: usize, w: usize, layout: SeamLayout) -> Option<Self> {
        if h * w == 0 || layout.overlap == 0 || layout.rows.len() != h || layout.cols.len() != w {
            return None;
        }
        let s = layout.stride as usize;
        Some(Self {
            layout,
            h,
            w,
            gx: Profile::new(s),
            gy: Profile::new(s),
            rx: Profile::new(s),
            ry: Profile::new(s),
        })
    }

    /// The blur's standard deviation: half the overlap.
    fn sigma(&self) -> f64 {
        self.layout.overlap as f64 / 2.0
    }

    /// Margin a block needs around the pixels it counts: the blur's radius, and one pixel more
    /// for the gradient to the next pixel.
    pub fn halo(&self) -> usize {
        blur_radius(self.sigma()) + 1
    }

    /// Adds the pixels in `core` of one band, given as `band` over `block` (row-major,
    /// `block.rows.len() × block.cols.len()`, NaN ignored) with `select` alike (all when `None`).
    /// `block` must hold `core` grown by [`SeamAccumulator::halo`], clipped to the field.
    ///
    /// # Panics
    /// When `band` or `select` does not match `block`, or `core` is not inside it.
    pub fn add(&mut self, band: &[f32], select: Option<&[bool]>, block: &Region, core: &Region) {
        let (bh, bw) = (block.rows.len(), block.cols.len());
        assert_eq!(band.len(), bh * bw, "band does not match its block");
        assert!(select.is_none_or(|s| s.len() == band.len()));
        assert!(
            block.rows.start <= core.rows.start
                && core.rows.end <= block.rows.end
                && block.cols.start <= core.cols.start
                && core.cols.end <= block.cols.end,
            "core {core:?} is not inside block {block:?}"
        );
        let blurred = gaussian_blur(band, bh, bw, self.sigma());
        let at = |y: usize, x: usize| {
            let i = (y - block.rows.start) * bw + (x - block.cols.start);
            let chosen = select.is_none_or(|s| s[i]);
            (chosen && !band[i].is_nan()).then(|| (f64::from(band[i]), blurred[i]))
        };
        let next = |y: usize, x: usize| {
            (y < block.rows.end && x < block.cols.end)
                .then(|| at(y, x))
                .flatten()
                .map(|(v, _)| v)
        };
        for y in core.rows.clone() {
            for x in core.cols.clone() {
                let Some((v, b)) = at(y, x) else {
                    continue;
                };
                let r = v - b;
                if let Some(o) = self.layout.cols[x] {
                    self.rx.add(o, r * r);
                    if let Some(n) = (x + 1 < self.w).then(|| next(y, x + 1)).flatten() {
                        self.gx.add(o, (n - v).abs());
                    }
                }
                if let Some(o) = self.layout.rows[y] {
                    self.ry.add(o, r * r);
                    if let Some(n) = (y + 1 < self.h).then(|| next(y + 1, x)).flatten() {
                        self.gy.add(o, (n - v).abs());
                    }
                }
            }
        }
    }

    /// The metric of everything added; `None` when the grid has no regular overlap zone and
    /// interior along either axis, or nothing was selected there.
    pub fn finish(&self) -> Option<Seams> {
        let o = self.layout.overlap;
        let parts = Seams {
            gradient_x: self.gx.deviation(o, false)?,
            gradient_y: self.gy.deviation(o, false)?,
            highpass_x: self.rx.deviation(o, true)?,
            highpass_y: self.ry.deviation(o, true)?,
            score: 0.0,
        };
        Some(Seams {
            score: parts
                .gradient_x
                .max(parts.gradient_y)
                .max(parts.highpass_x)
                .max(parts.highpass_y),
            ..parts
        })
    }
}

/// Sums and counts per offset within the stride.
struct Profile {
    sum: Vec<f64>,
    n: Vec<u64>,
}

impl Profile {
    fn new(stride: usize) -> Self {
        Self {
            sum: vec![0.0; stride],
            n: vec![0; stride],
        }
    }

    fn add(&mut self, offset: u64, v: f64) {
        if let (Some(s), Some(n)) = (
            self.sum.get_mut(offset as usize),
            self.n.get_mut(offset as usize),
        ) {
            *s += v;
            *n += 1;
        }
    }

    /// Mean at each offset (RMS when `rms`), `None` where nothing was added.
    fn level(&self, offset: usize, rms: bool) -> Option<f64> {
        let n = *self.n.get(offset)?;
        (n > 0).then(|| {
            let mean = self.sum[offset] / n as f64;
            if rms {
                mean.sqrt()
            } else {
                mean
            }
        })
    }

    /// The largest |level / interior level - 1| over the overlap offsets (`< overlap`).
    fn deviation(&self, overlap: u64, rms: bool) -> Option<f64> {
        let overlap = overlap as usize;
        let inside: Vec<f64> = (overlap..self.sum.len())
            .filter_map(|o| self.level(o, rms))
            .collect();
        if inside.is_empty() {
            return None;
        }
        let reference = inside.iter().sum::<f64>() / inside.len() as f64;
        if reference <= 0.0 {
            return Some(0.0);
        }
        (0..overlap.min(self.sum.len()))
            .filter_map(|o| self.level(o, rms))
            .map(|l| (l / reference - 1.0).abs())
            .reduce(f64::max)
    }
}

/// The blur's radius for `sigma`: 3σ, rounded up.
fn blur_radius(sigma: f64) -> usize {
    (3.0 * sigma).ceil() as usize
}

/// Separable Gaussian blur with standard deviation `sigma` (radius 3σ); NaN pixels and pixels past
/// the edges carry no weight (normalised convolution).
fn gaussian_blur(band: &[f32], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let radius = blur_radius(sigma) as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let values: Vec<f64> = band.iter().map(|&v| f64::from(v)).collect();
    let pass = |input: &[f64], along_x: bool| -> Vec<f64> {
        let mut out = vec![f64::NAN; h * w];
        for y in 0..h {
            for x in 0..w {
                let (mut acc, mut weight) = (0.0, 0.0);
                for (k, d) in kernel.iter().zip(-radius..=radius) {
                    let (yy, xx) = if along_x {
                        (y as isize, x as isize + d)
                    } else {
                        (y as isize + d, x as isize)
                    };
                    if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                        continue;
                    }
                    let v = input[yy as usize * w + xx as usize];
                    if !v.is_nan() {
                        acc += k * v;
                        weight += k;
                    }
                }
                if weight > 0.0 {
                    out[y * w + x] = acc / weight;
                }
            }
        }
        out
    };
    let across = pass(&values, true);
    pass(&across, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiling::{Blender, Window};

    /// A smooth random field: white noise (xorshift) blurred with σ = `corr`.
    fn gaussian_field(h: usize, w: usize, corr: f64, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let noise: Vec<f32> = (0..h * w)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect();
        let blurred = gaussian_blur(&noise, h, w, corr);
        let rms = (blurred.iter().map(|v| v * v).sum::<f64>() / blurred.len() as f64).sqrt();
        blurred.iter().map(|v| (v / rms) as f32).collect()
    }

    /// [`seams`] of a whole `field` on `grid`.
    fn seams_on(grid: &TileGrid, field: &[f32]) -> Option<Seams> {
        let layout = SeamLayout::of(grid);
        seams(field, None, layout.rows.len(), layout.cols.len(), &layout)
    }

    #[test]
    fn a_seamless_field_scores_low_and_independent_blended_tiles_score_high() {
        let (h, w) = (512usize, 512usize);
        let grid = TileGrid::new(h as u64, w as u64, 32, 8).unwrap();
        for corr in [1.0, 2.0, 4.0, 8.0] {
            let seamless = gaussian_field(h, w, corr, 7);
            let s = seams_on(&grid, &seamless).unwrap();
            assert!(s.score < 0.1, "seamless field, corr {corr}: {s:?}");

            // Every tile an independent field of the same statistics, Hann-blended.
            let mut blend = Blender::new(Window::new(0, 0, h as u64, w as u64), 1);
            // (Each drawn with a margin of 3σ so that its edges are as smooth as its centre.)
            let margin = (3.0 * corr) as usize;
            for tile in grid.tiles() {
                let win = tile.window;
                let (th, tw) = (win.height as usize, win.width as usize);
                let side = tw + 2 * margin;
                let own = gaussian_field(th + 2 * margin, side, corr, 100 + tile.index);
                let values: Vec<f32> = (0..th)
                    .flat_map(|y| (0..tw).map(move |x| (y, x)))
                    .map(|(y, x)| own[(y + margin) * side + x + margin])
                    .collect();
                blend.add(&grid, &tile, &values).unwrap();
            }
            let tiled = blend.finish();
            let t = seams_on(&grid, &tiled).unwrap();
            assert!(t.score > 0.2, "independent tiles, corr {corr}: {t:?}");
            eprintln!(
                "corr {corr}: seamless {:.3}, independent tiles {:.3}",
                s.score, t.score
            );
        }
    }

    #[test]
    fn block_by_block_scores_equal_the_whole_field() {
        let (h, w) = (150usize, 170usize);
        let grid = TileGrid::new(h as u64, w as u64, 32, 8).unwrap();
        let layout = SeamLayout::of(&grid);
        // Two bands; a NaN hole and a selection that leaves some pixels out.
        let mut field = gaussian_field(h, w, 2.0, 3);
        field.extend(gaussian_field(h, w, 4.0, 4));
        for v in field.iter_mut().skip(40 * w + 30).take(25) {
            *v = f32::NAN;
        }
        let select: Vec<bool> = (0..field.len()).map(|i| i % 7 != 0).collect();
        let whole = seams(&field, Some(&select), h, w, &layout).unwrap();

        let mut acc = SeamAccumulator::new(h, w, layout).unwrap();
        let halo = acc.halo();
        let plane = h * w;
        for band in 0..2 {
            for y0 in (0..h).step_by(40) {
                for x0 in (0..w).step_by(64) {
                    let core = Region {
                        rows: y0..(y0 + 40).min(h),
                        cols: x0..(x0 + 64).min(w),
                    };
                    let block = Region {
                        rows: y0.saturating_sub(halo)..(core.rows.end + halo).min(h),
                        cols: x0.saturating_sub(halo)..(core.cols.end + halo).min(w),
                    };
                    let pick = |v: &[f32]| -> Vec<f32> {
                        block
                            .rows
                            .clone()
                            .flat_map(|y| block.cols.clone().map(move |x| (y, x)))
                            .map(|(y, x)| v[band * plane + y * w + x])
                            .collect()
                    };
                    let chosen: Vec<bool> = block
                        .rows
                        .clone()
                        .flat_map(|y| block.cols.clone().map(move |x| (y, x)))
                        .map(|(y, x)| select[band * plane + y * w + x])
                        .collect();
                    acc.add(&pick(&field), Some(&chosen), &block, &core);
                }
            }
        }
        let blocks = acc.finish().unwrap();
        for (a, b) in [
            (whole.gradient_x, blocks.gradient_x),
            (whole.gradient_y, blocks.gradient_y),
            (whole.highpass_x, blocks.highpass_x),
            (whole.highpass_y, blocks.highpass_y),
        ] {
            assert!((a - b).abs() < 1e-9, "whole {whole:?}, blocks {blocks:?}");
        }
    }

    #[test]
    fn no_overlap_or_too_few_tiles_gives_no_score() {
        let field = vec![1.0f32; 64 * 64];
        let grid = TileGrid::new(64, 64, 64, 16).unwrap();
        assert_eq!(seams_on(&grid, &field), None);
    }
}
