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
    previous: Option<u64>,
}

impl Blender {
    /// An empty accumulator for `window` with `lead` leading planes.
    pub fn new(window: Window, lead: usize) -> Self {
        let n = lead * window.area() as usize;
        Self {
            window,
            lead,
            sum: vec![0.0; n],
            weight: vec![0.0; n],
            previous: None,
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
        let weights = grid.blend_weights(tile);
        let (tile_plane, out_plane) = (tw.area() as usize, self.window.area() as usize);
        for y in common.y0..common.y1() {
            let ty = (y - tw.y0) as usize * tw.width as usize;
            let oy = (y - self.window.y0) as usize * self.window.width as usize;
            for x in common.x0..common.x1() {
                let t = ty + (x - tw.x0) as usize;
                let o = oy + (x - self.window.x0) as usize;
                let w = weights[t];
                for l in 0..self.lead {
                    let v = values[l * tile_plane + t];
                    if !v.is_nan() {
                        self.sum[l * out_plane + o] += w * f64::from(v);
                        self.weight[l * out_plane + o] += w;
                    }
                }
            }
        }
        Ok(())
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
