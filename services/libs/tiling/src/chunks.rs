//! The output chunk grid and its map to tiles.

use crate::window::Window;

/// Regular chunks of `chunk_h × chunk_w` over a `height × width` plane (edge chunks clipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkGrid {
    height: u64,
    width: u64,
    chunk_h: u64,
    chunk_w: u64,
}

impl ChunkGrid {
    /// A chunk grid; zero chunk sizes are raised to 1.
    pub fn new(height: u64, width: u64, chunk_h: u64, chunk_w: u64) -> Self {
        Self {
            height,
            width,
            chunk_h: chunk_h.max(1),
            chunk_w: chunk_w.max(1),
        }
    }

    /// Chunk rows and columns.
    pub fn shape(&self) -> (u64, u64) {
        (
            self.height.div_ceil(self.chunk_h),
            self.width.div_ceil(self.chunk_w),
        )
    }

    /// Number of chunks.
    pub fn len(&self) -> u64 {
        let (r, c) = self.shape();
        r * c
    }

    /// Whether the plane is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunk size (unclipped).
    pub fn chunk_shape(&self) -> (u64, u64) {
        (self.chunk_h, self.chunk_w)
    }

    /// Row-major index of chunk (row, col).
    pub fn index(&self, row: u64, col: u64) -> u64 {
        row * self.shape().1 + col
    }

    /// (row, col) of a row-major chunk index.
    pub fn position(&self, index: u64) -> (u64, u64) {
        let cols = self.shape().1.max(1);
        (index / cols, index % cols)
    }

    /// Pixels of chunk (row, col), clipped to the plane.
    pub fn window(&self, row: u64, col: u64) -> Window {
        let y0 = row * self.chunk_h;
        let x0 = col * self.chunk_w;
        Window::new(
            y0,
            x0,
            self.chunk_h.min(self.height - y0),
            self.chunk_w.min(self.width - x0),
        )
    }

    /// Indices of the chunks that share a pixel with `window`, ascending.
    pub fn chunks_touching(&self, window: &Window) -> Vec<u64> {
        if window.area() == 0 {
            return Vec::new();
        }
        let rows = window.y0 / self.chunk_h..window.y1().div_ceil(self.chunk_h);
        let cols = window.x0 / self.chunk_w..window.x1().div_ceil(self.chunk_w);
        rows.flat_map(|r| cols.clone().map(move |c| self.index(r, c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_plane() {
        let g = ChunkGrid::new(300, 257, 128, 128);
        assert_eq!(g.shape(), (3, 3));
        assert_eq!(g.window(2, 2), Window::new(256, 256, 44, 1));
        let all = g.chunks_touching(&Window::new(0, 0, 300, 257));
        assert_eq!(all, (0..9).collect::<Vec<_>>());
        assert_eq!(
            g.chunks_touching(&Window::new(120, 120, 10, 10)),
            vec![0, 1, 3, 4]
        );
    }
}
