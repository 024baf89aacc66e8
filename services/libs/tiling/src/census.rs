//! Counts of flagged pixels over any sub-window of a window, each in O(1): a summed-area table.
//! The planner flags a chunk's missing pixels once and asks, for every tile touching the chunk,
//! whether its part of the chunk holds any.

use crate::Window;

/// A summed-area table of the flagged pixels of `window`.
#[derive(Debug, Clone)]
pub struct Census {
    window: Window,
    /// `(height + 1) × (width + 1)` prefix sums; row 0 and column 0 are zero.
    sums: Vec<u64>,
}

impl Census {
    /// Counts the pixels of `window` (row-major, `window.area()` long) for which `flagged` holds.
    ///
    /// # Panics
    /// When `flags` does not hold exactly `window.area()` values.
    pub fn new(window: Window, flags: &[bool]) -> Self {
        let (h, w) = (window.height as usize, window.width as usize);
        assert_eq!(flags.len(), h * w, "one flag per pixel of the window");
        let stride = w + 1;
        let mut sums = vec![0u64; (h + 1) * stride];
        for y in 0..h {
            let mut row = 0u64;
            for x in 0..w {
                row += u64::from(flags[y * w + x]);
                sums[(y + 1) * stride + x + 1] = sums[y * stride + x + 1] + row;
            }
        }
        Self { window, sums }
    }

    /// Flagged pixels in the part of `other` that lies inside this census's window.
    pub fn count(&self, other: &Window) -> u64 {
        let Some(part) = self.window.intersect(other) else {
            return 0;
        };
        let inner = part.within(&self.window);
        let stride = self.window.width as usize + 1;
        let (y0, x0) = (inner.y0 as usize, inner.x0 as usize);
        let (y1, x1) = (inner.y1() as usize, inner.x1() as usize);
        let at = |y: usize, x: usize| self.sums[y * stride + x];
        at(y1, x1) + at(y0, x0) - at(y0, x1) - at(y1, x0)
    }

    /// Flagged pixels in the whole window.
    pub fn total(&self) -> u64 {
        self.count(&self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_brute_force_on_every_sub_window() {
        let window = Window::new(10, 20, 7, 9);
        let flags: Vec<bool> = (0..63u64).map(|i| (i * 7919) % 5 == 0).collect();
        let census = Census::new(window, &flags);
        for y0 in 8..19 {
            for x0 in 18..31 {
                for (h, w) in [(1, 1), (3, 4), (7, 9), (20, 20)] {
                    let probe = Window::new(y0, x0, h, w);
                    let want = (0..7u64)
                        .flat_map(|y| (0..9u64).map(move |x| (y, x)))
                        .filter(|&(y, x)| {
                            let (py, px) = (10 + y, 20 + x);
                            py >= y0 && py < y0 + h && px >= x0 && px < x0 + w
                        })
                        .filter(|&(y, x)| flags[(y * 9 + x) as usize])
                        .count() as u64;
                    assert_eq!(census.count(&probe), want, "{probe:?}");
                }
            }
        }
        assert_eq!(census.total(), flags.iter().filter(|&&f| f).count() as u64);
    }
}
