//! One axis of the tile grid: tile starts, extents and Hann blend ramps along y or x.

use std::f64::consts::FRAC_PI_2;

/// Tiles along one axis of length `len`: size `min(tile, len)`, stride `tile - overlap`, the last
/// tile shifted back so it ends exactly at the scene edge (no slivers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Axis {
    len: u64,
    size: u64,
    stride: u64,
    count: u64,
}

impl Axis {
    /// Caller guarantees `len > 0` and `overlap < tile`.
    pub(crate) fn new(len: u64, tile: u64, overlap: u64) -> Self {
        let size = tile.min(len);
        let stride = tile - overlap;
        let count = if len <= tile {
            1
        } else {
            (len - tile).div_ceil(stride) + 1
        };
        Self {
            len,
            size,
            stride,
            count,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn start(&self, i: u64) -> u64 {
        (i * self.stride).min(self.len - self.size)
    }

    pub(crate) fn end(&self, i: u64) -> u64 {
        self.start(i) + self.size
    }

    /// For each position along the axis, its offset within the stride where the tiles repeat
    /// regularly (from the second tile's start to the last tile's), else `None`. Offsets below the
    /// overlap are covered by two tiles.
    pub(crate) fn periodic_offsets(&self) -> Vec<Option<u64>> {
        let regular = if self.count > 2 {
            self.stride..self.start(self.count - 1)
        } else {
            0..0
        };
        (0..self.len)
            .map(|p| regular.contains(&p).then(|| p % self.stride))
            .collect()
    }

    /// Indices of the tiles that share at least one pixel with `a..b`.
    pub(crate) fn covering(&self, a: u64, b: u64) -> std::ops::Range<u64> {
        let first = partition_point(self.count, |i| self.end(i) <= a);
        let last = partition_point(self.count, |i| self.start(i) < b);
        first..last.max(first)
    }

    /// Blend weight of each pixel of tile `i` along this axis: a raised-cosine (Hann) ramp across
    /// the actual overlap with each neighbour, 1 elsewhere and no taper at the scene edges. The
    /// ramps of two neighbours are complementary (sin² + cos² = 1) over their shared pixels.
    pub(crate) fn weights(&self, i: u64) -> Vec<f64> {
        let start = self.start(i);
        let left = (i > 0).then(|| self.end(i - 1).saturating_sub(start));
        let right = (i + 1 < self.count).then(|| self.end(i).saturating_sub(self.start(i + 1)));
        (0..self.size)
            .map(|p| {
                let from_left = left.map_or(1.0, |l| ramp(p, l));
                let from_right = right.map_or(1.0, |r| ramp(self.size - 1 - p, r));
                from_left * from_right
            })
            .collect()
    }
}

/// sin²(π/2 · (p + ½) / len) for p < len, else 1: strictly positive, so every pixel keeps weight.
fn ramp(p: u64, len: u64) -> f64 {
    if p >= len {
        1.0
    } else {
        (FRAC_PI_2 * (p as f64 + 0.5) / len as f64).sin().powi(2)
    }
}

/// First index in `0..n` for which `pred` is false (`pred` must be monotone: true then false).
fn partition_point(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_tile_is_shifted_to_the_edge() {
        let a = Axis::new(257, 64, 16);
        assert_eq!(a.count(), 6);
        assert_eq!(a.start(4), 192);
        assert_eq!(a.start(5), 193);
        assert_eq!(a.end(5), 257);
    }

    #[test]
    fn short_axis_gets_one_clipped_tile() {
        let a = Axis::new(33, 64, 16);
        assert_eq!((a.count(), a.start(0), a.end(0)), (1, 0, 33));
        assert!(a.weights(0).iter().all(|&w| w == 1.0));
    }

    #[test]
    fn neighbour_ramps_are_complementary() {
        let a = Axis::new(112, 64, 16);
        let (w0, w1) = (a.weights(0), a.weights(1));
        for s in a.start(1)..a.end(0) {
            let sum = w0[(s - a.start(0)) as usize] + w1[(s - a.start(1)) as usize];
            assert!((sum - 1.0).abs() < 1e-12, "pixel {s}: {sum}");
        }
        assert_eq!(w0[0], 1.0, "no taper at the scene edge");
    }

    #[test]
    fn covering_finds_exactly_the_overlapping_tiles() {
        let a = Axis::new(300, 64, 16);
        for lo in 0..300 {
            for hi in [lo + 1, (lo + 37).min(300)] {
                let expect: Vec<u64> = (0..a.count())
                    .filter(|&i| a.start(i) < hi && a.end(i) > lo)
                    .collect();
                assert_eq!(a.covering(lo, hi).collect::<Vec<_>>(), expect, "{lo}..{hi}");
            }
        }
    }
}
