//! Weighted blending of tile outputs into one output window: Σ w·x / Σ w.

use crate::grid::{Tile, TileGrid};
use crate::window::Window;

/// Why a contribution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlendError {
    /// Contributions must arrive in ascending tile index so that float sums never depend on
    /// the order in which tiles finished.
    #[error(
        "tile {got} added after tile {previous}: contributions must come in ascending tile index"
    )]
    OutOfOrder {
        /// The tile added before.
        previous: u64,
        /// The tile being added.
        got: u64,
    },
    /// The tile's value buffer does not match its window.
    #[error("tile {tile} has {got} values, its window {window} × {lead} leading needs {expected}")]
    WrongLength {
        /// Tile index.
        tile: u64,
        /// Window of the tile.
        window: Window,
        /// Leading (band/time) length.
        lead: usize,
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

/// `n` zeros, written rather than allocated zeroed: the accumulators are read then written, and
/// on lazily zeroed pages (what a zeroed allocation of fresh memory gets) that costs two page
/// faults and a TLB shootdown across cores per page, which made them a quarter of the
/// stitcher's time.
fn zeroed(n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

/// Accumulates tile outputs over one output window (usually an output chunk) in f64.
///
/// Values are laid out `[lead, y, x]` row-major for tiles and for the result. NaN contributions
/// (pixels a method could not fill) are skipped; a pixel nobody filled comes out NaN. Summing
/// identical inputs in f64 and rounding once to f32 reproduces them exactly.
#[derive(Debug)]
pub struct Blender {
    window: Window,
    lead: usize,
    sum: Vec<f64>,
    weight: Vec<f64>,
    /// Only for [`Blender::for_samples`].
    samples: Option<SampleStats>,
    previous: Option<u64>,
}

/// What [`Blender::finish_samples`] needs besides Σw·x and Σw: Σw² and the range of the
/// contributions, per value.
#[derive(Debug)]
struct SampleStats {
    weight_sq: Vec<f64>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Blender {
    /// An empty accumulator for `window` with `lead` leading planes.
    pub fn new(window: Window, lead: usize) -> Self {
        let n = lead * window.area() as usize;
        Self {
            window,
            lead,
            sum: zeroed(n),
            weight: zeroed(n),
            samples: None,
            previous: None,
        }
    }

    /// An accumulator for independent random samples (ensemble members), finished with
    /// [`Blender::finish_samples`].
    pub fn for_samples(window: Window, lead: usize) -> Self {
        let n = lead * window.area() as usize;
        Self {
            samples: Some(SampleStats {
                weight_sq: zeroed(n),
                lo: vec![f32::INFINITY; n],
                hi: vec![f32::NEG_INFINITY; n],
            }),
            ..Self::new(window, lead)
        }
    }

    /// Adds one tile's output, weighted by the grid's blend weights.
    ///
    /// # Errors
    /// [`BlendError`] when tiles come out of index order or `values` has the wrong length.
    pub fn add(&mut self, grid: &TileGrid, tile: &Tile, values: &[f32]) -> Result<(), BlendError> {
        if let Some(previous) = self.previous.filter(|&p| p >= tile.index) {
            return Err(BlendError::OutOfOrder {
                previous,
                got: tile.index,
            });
        }
        let tw = tile.window;
        let expected = self.lead * tw.area() as usize;
        if values.len() != expected {
            return Err(BlendError::WrongLength {
                tile: tile.index,
                window: tw,
                lead: self.lead,
                expected,
                got: values.len(),
            });
        }
        self.previous = Some(tile.index);
        let Some(common) = tw.intersect(&self.window) else {
            return Ok(());
        };
        // Row by row of each plane, so that the inner loop runs over contiguous memory; every
        // value still gets exactly one term per tile, so the sums do not change.
        let (wy, wx) = grid.blend_factors(tile);
        let (tile_plane, out_plane) = (tw.area() as usize, self.window.area() as usize);
        let run = common.width as usize;
        let wx = &wx[(common.x0 - tw.x0) as usize..][..run];
        for l in 0..self.lead {
            for y in common.y0..common.y1() {
                let t = l * tile_plane
                    + (y - tw.y0) as usize * tw.width as usize
                    + (common.x0 - tw.x0) as usize;
                let o = l * out_plane
                    + (y - self.window.y0) as usize * self.window.width as usize
                    + (common.x0 - self.window.x0) as usize;
                let a = wy[(y - tw.y0) as usize];
                let values = &values[t..t + run];
                let sum = &mut self.sum[o..o + run];
                let weight = &mut self.weight[o..o + run];
                for (j, &v) in values.iter().enumerate() {
                    if v.is_nan() {
                        continue;
                    }
                    let w = a * wx[j];
                    sum[j] += w * f64::from(v);
                    weight[j] += w;
                    if let Some(st) = self.samples.as_mut() {
                        let i = o + j;
                        st.weight_sq[i] += w * w;
                        (st.lo[i], st.hi[i]) = (st.lo[i].min(v), st.hi[i].max(v));
                    }
                }
            }
        }
        Ok(())
    }

    /// The blend of independent random samples (ensemble members) around `mean`, the blended
    /// mean of the same tiles (`mean.len()` values, repeated over this blender's leading planes):
    /// `mean + Σw(x − mean) / √Σw²`. A plain weighted average of independent samples shrinks
    /// their dispersion where tiles overlap (by √Σw²/Σw, down to 1/√2 midway); this keeps it,
    /// and equals [`Blender::finish`] where one tile covers the pixel. The result stays within
    /// the range of the contributions, so a sample never leaves the values its tiles produced.
    /// A blender not made by [`Blender::for_samples`] gives [`Blender::finish`].
    pub fn finish_samples(self, mean: &[f32]) -> Vec<f32> {
        let Some(st) = &self.samples else {
            return self.finish();
        };
        (0..self.sum.len())
            .zip(mean.iter().cycle())
            .map(|(i, &m)| {
                let (s, w, w2) = (self.sum[i], self.weight[i], st.weight_sq[i]);
                if w > 0.0 && !m.is_nan() {
                    let m = f64::from(m);
                    ((m + (s - w * m) / w2.sqrt()) as f32).clamp(st.lo[i], st.hi[i])
                } else {
                    f32::NAN
                }
            })
            .collect()
    }

    /// The blended window, `[lead, y, x]`; NaN where no tile contributed a value.
    pub fn finish(self) -> Vec<f32> {
        self.sum
            .iter()
            .zip(&self.weight)
            .map(|(&s, &w)| if w > 0.0 { (s / w) as f32 } else { f32::NAN })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_their_dispersion_where_tiles_overlap() -> Result<(), Box<dyn std::error::Error>>
    {
        // Two tiles side by side, overlapping in x 4..8; members +1 and −1 around a mean of 0.
        let grid = TileGrid::new(8, 12, 8, 4)?;
        let window = Window::new(0, 0, 8, 12);
        let (a, b) = (grid.tile(0)?, grid.tile(1)?);
        let n = (a.window.area()) as usize;
        let mut plain = Blender::new(window, 1);
        let mut samples = Blender::for_samples(window, 1);
        for (tile, v) in [(&a, 1.0_f32), (&b, -1.0)] {
            plain.add(&grid, tile, &vec![v; n])?;
            samples.add(&grid, tile, &vec![v; n])?;
        }
        let mean = vec![0.0_f32; 96];
        let (plain, samples) = (plain.finish(), samples.finish_samples(&mean));
        // Covered by one tile: both give the sample itself.
        assert_eq!((samples[0], samples[11]), (1.0, -1.0));
        assert_eq!((plain[0], plain[11]), (1.0, -1.0));
        // In the overlap the plain average of opposite samples shrinks towards 0 faster:
        // |Σw·x| / Σw ≤ |Σw·x| / √Σw².
        for x in 4..8 {
            assert!(samples[x].abs() >= plain[x].abs() - 1e-6, "x {x}");
        }
        Ok(())
    }
}
