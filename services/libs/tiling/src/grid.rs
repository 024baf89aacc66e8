//! The overlapping tile grid of a scene and the four parity phases.

use crate::axis::Axis;
use crate::window::Window;

/// Why a grid cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// The scene has no pixels.
    #[error("scene of {height}×{width} pixels has nothing to tile")]
    EmptyScene {
        /// Rows of the scene.
        height: u64,
        /// Columns of the scene.
        width: u64,
    },
    /// The overlap leaves no stride.
    #[error("overlap {overlap} must be smaller than the tile size {tile}")]
    OverlapTooLarge {
        /// Requested tile size.
        tile: u64,
        /// Requested overlap.
        overlap: u64,
    },
    /// Tile size zero.
    #[error("tile size must be at least 1")]
    ZeroTile,
    /// A tile index past the end of the grid.
    #[error("tile {index} is outside a grid of {len} tiles")]
    TileOutOfRange {
        /// The index asked for.
        index: u64,
        /// Number of tiles in the grid.
        len: u64,
    },
}

/// Which of the four parity phases a tile belongs to: `(row mod 2) * 2 + (col mod 2)`.
///
/// Stochastic fills run phase 0 first; a tile of a later phase starts once its earlier-phase
/// neighbours are done and takes their outputs in the overlap as known pixels, so independent
/// samples never meet in an overlap unconditioned.
pub type Phase = u8;

/// One tile of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Row-major index in the grid; the order in which contributions are summed.
    pub index: u64,
    /// Grid row.
    pub row: u64,
    /// Grid column.
    pub col: u64,
    /// Pixels the tile covers, clipped to the scene.
    pub window: Window,
}

impl Tile {
    /// The tile's parity phase.
    pub fn phase(&self) -> Phase {
        ((self.row % 2) * 2 + self.col % 2) as Phase
    }
}

/// The tile grid of a `height × width` scene: tile size T, overlap O, stride T − O; the last row
/// and column are shifted back to end at the scene edge; scenes smaller than a tile get one
/// clipped tile (workers pad it by reflection when a model needs the full size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    height: u64,
    width: u64,
    tile: u64,
    overlap: u64,
    rows: Axis,
    cols: Axis,
}

impl TileGrid {
    /// Builds the grid.
    ///
    /// # Errors
    /// [`GridError`] when the scene is empty, the tile size is zero or `overlap >= tile`.
    pub fn new(height: u64, width: u64, tile: u64, overlap: u64) -> Result<Self, GridError> {
        if height == 0 || width == 0 {
            return Err(GridError::EmptyScene { height, width });
        }
        if tile == 0 {
            return Err(GridError::ZeroTile);
        }
        if overlap >= tile {
            return Err(GridError::OverlapTooLarge { tile, overlap });
        }
        Ok(Self {
            height,
            width,
            tile,
            overlap,
            rows: Axis::new(height, tile, overlap),
            cols: Axis::new(width, tile, overlap),
        })
    }

    /// Scene rows.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Scene columns.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Requested tile size (windows may be smaller when the scene is).
    pub fn tile_size(&self) -> u64 {
        self.tile
    }

    /// Requested overlap.
    pub fn overlap(&self) -> u64 {
        self.overlap
    }

    /// Tile rows and columns.
    pub fn shape(&self) -> (u64, u64) {
        (self.rows.count(), self.cols.count())
    }

    /// Number of tiles.
    pub fn len(&self) -> u64 {
        self.rows.count() * self.cols.count()
    }

    /// Always false: a grid has at least one tile.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The tile at grid position (row, col); caller keeps them in range.
    pub fn tile_at(&self, row: u64, col: u64) -> Tile {
        let window = Window::new(
            self.rows.start(row),
            self.cols.start(col),
            self.rows.size(),
            self.cols.size(),
        );
        Tile {
            index: row * self.cols.count() + col,
            row,
            col,
            window,
        }
    }

    /// The tile with the given row-major index.
    ///
    /// # Errors
    /// [`GridError::TileOutOfRange`] past the end of the grid.
    pub fn tile(&self, index: u64) -> Result<Tile, GridError> {
        if index >= self.len() {
            return Err(GridError::TileOutOfRange {
                index,
                len: self.len(),
            });
        }
        Ok(self.tile_at(index / self.cols.count(), index % self.cols.count()))
    }

    /// All tiles in index order.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (0..self.rows.count())
            .flat_map(move |r| (0..self.cols.count()).map(move |c| self.tile_at(r, c)))
    }

    /// The tiles of one grid row, in index order (the coordinator streams the plan row by row).
    pub fn row_tiles(&self, row: u64) -> impl Iterator<Item = Tile> + '_ {
        (0..self.cols.count()).map(move |c| self.tile_at(row, c))
    }

    /// The window covering a whole grid row of tiles.
    pub fn row_window(&self, row: u64) -> Window {
        Window::new(self.rows.start(row), 0, self.rows.size(), self.width)
    }

    /// Per row (`along_y`) or column, its offset within the tile stride where the grid repeats
    /// regularly, else `None`; offsets below [`Self::overlap`] lie where two tiles overlap. What
    /// a seam metric folds positions by.
    pub fn periodic_offsets(&self, along_y: bool) -> Vec<Option<u64>> {
        if along_y {
            self.rows.periodic_offsets()
        } else {
            self.cols.periodic_offsets()
        }
    }

    /// The distance between the starts of neighbouring tiles (`tile - overlap`).
    pub fn stride(&self) -> u64 {
        self.tile - self.overlap
    }

    /// Indices of the tiles that share a pixel with `window`, ascending.
    pub fn tiles_touching(&self, window: &Window) -> Vec<u64> {
        let rows = self.rows.covering(window.y0, window.y1());
        let cols = self.cols.covering(window.x0, window.x1());
        rows.flat_map(|r| cols.clone().map(move |c| r * self.cols.count() + c))
            .collect()
    }

    /// Separable blend weights of a tile, row-major over its window (f64, strictly positive):
    /// the weight of (y, x) is `rows[y] * cols[x]` of [`TileGrid::blend_factors`].
    pub fn blend_weights(&self, tile: &Tile) -> Vec<f64> {
        let (wy, wx) = self.blend_factors(tile);
        wy.iter()
            .flat_map(|a| wx.iter().map(move |b| a * b))
            .collect()
    }

    /// The row and column factors of a tile's blend weights, over its window's rows and columns.
    pub fn blend_factors(&self, tile: &Tile) -> (Vec<f64>, Vec<f64>) {
        (self.rows.weights(tile.row), self.cols.weights(tile.col))
    }

    /// The overlapping neighbours of a tile that come before it, ascending: a stochastic fill of
    /// the tile waits for these and conditions on their outputs. Those are the neighbours in
    /// earlier phases and, where the last row or column (shifted back to end at the scene edge)
    /// overlaps the one two before it, of its own phase, that tile too: tiles go in (phase,
    /// index) order, so the dependencies never form a cycle.
    pub fn phase_dependencies(&self, tile: &Tile) -> Vec<u64> {
        let before = (tile.phase(), tile.index);
        self.tiles_touching(&tile.window)
            .into_iter()
            .filter_map(|i| self.tile(i).ok())
            .filter(|t| t.index != tile.index && (t.phase(), t.index) < before)
            .map(|t| t.index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            TileGrid::new(10, 10, 16, 16),
            Err(GridError::OverlapTooLarge {
                tile: 16,
                overlap: 16
            })
        );
        assert_eq!(
            TileGrid::new(0, 10, 16, 4),
            Err(GridError::EmptyScene {
                height: 0,
                width: 10
            })
        );
        assert_eq!(TileGrid::new(10, 10, 0, 0), Err(GridError::ZeroTile));
    }

    #[test]
    fn tiles_cover_the_scene_in_index_order() -> Result<(), GridError> {
        let g = TileGrid::new(300, 257, 64, 16)?;
        assert_eq!(g.shape(), (6, 6));
        for (i, t) in g.tiles().enumerate() {
            assert_eq!(t.index, i as u64);
            assert_eq!(g.tile(t.index)?, t);
            assert!(t.window.y1() <= 300 && t.window.x1() <= 257);
        }
        assert!(g.tile(36).is_err());
        Ok(())
    }

    #[test]
    fn phase_dependencies_point_backwards() -> Result<(), GridError> {
        let g = TileGrid::new(300, 300, 64, 16)?;
        let t = g.tile_at(1, 1); // phase 3
        assert_eq!(t.phase(), 3);
        let deps = g.phase_dependencies(&t);
        assert_eq!(deps.len(), 8, "all eight neighbours come earlier: {deps:?}");
        assert!(g.phase_dependencies(&g.tile_at(0, 0)).is_empty());
        // 42 columns of 16-px tiles with overlap 4 start at 0, 12, 24 and 26: the last, shifted
        // back to the edge, overlaps column 1, of its own phase, and waits for it.
        let g = TileGrid::new(16, 42, 16, 4)?;
        let (last, second) = (g.tile_at(0, 3), g.tile_at(0, 1));
        assert_eq!((last.window.x0, last.phase()), (26, second.phase()));
        assert_eq!(g.phase_dependencies(&last), [1, 2]);
        assert!(g.phase_dependencies(&second).contains(&0));
        Ok(())
    }
}
