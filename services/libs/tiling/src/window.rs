//! Pixel rectangles in the (y, x) plane of a scene.

use serde::{Deserialize, Serialize};

/// A rectangle of pixels in scene coordinates: rows `y0..y0+height`, columns `x0..x0+width`.
///
/// Leading dimensions (band, time) are never cut: a window always spans them whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First row.
    pub y0: u64,
    /// First column.
    pub x0: u64,
    /// Number of rows.
    pub height: u64,
    /// Number of columns.
    pub width: u64,
}

impl Window {
    /// A window from its origin and size.
    pub const fn new(y0: u64, x0: u64, height: u64, width: u64) -> Self {
        Self {
            y0,
            x0,
            height,
            width,
        }
    }

    /// One past the last row.
    pub const fn y1(&self) -> u64 {
        self.y0 + self.height
    }

    /// One past the last column.
    pub const fn x1(&self) -> u64 {
        self.x0 + self.width
    }

    /// Number of pixels in the window.
    pub const fn area(&self) -> u64 {
        self.height * self.width
    }

    /// The overlap of two windows, if they share at least one pixel.
    pub fn intersect(&self, other: &Window) -> Option<Window> {
        let y0 = self.y0.max(other.y0);
        let x0 = self.x0.max(other.x0);
        let y1 = self.y1().min(other.y1());
        let x1 = self.x1().min(other.x1());
        (y0 < y1 && x0 < x1).then(|| Window::new(y0, x0, y1 - y0, x1 - x0))
    }

    /// The window grown by `margin` pixels on every side, clipped to a `height × width` plane.
    pub fn expand(&self, margin: u64, height: u64, width: u64) -> Window {
        let y0 = self.y0.saturating_sub(margin);
        let x0 = self.x0.saturating_sub(margin);
        let y1 = (self.y1() + margin).min(height);
        let x1 = (self.x1() + margin).min(width);
        Window::new(y0, x0, y1.saturating_sub(y0), x1.saturating_sub(x0))
    }

    /// This window in the coordinates of `outer` (which must contain it), e.g. a tile inside the
    /// context read around it.
    pub const fn within(&self, outer: &Window) -> Window {
        Window::new(
            self.y0 - outer.y0,
            self.x0 - outer.x0,
            self.height,
            self.width,
        )
    }

    /// Copies the part of `values` (laid out `[lead, self]`) that lies in `inner` (which must be
    /// inside `self`) into a new `[lead, inner]` buffer.
    pub fn crop<T: Copy>(&self, values: &[T], lead: usize, inner: &Window) -> Vec<T> {
        let plane = self.area() as usize;
        let mut out = Vec::with_capacity(lead * inner.area() as usize);
        for l in 0..lead {
            for y in inner.y0..inner.y1() {
                let row = l * plane + ((y - self.y0) * self.width + (inner.x0 - self.x0)) as usize;
                out.extend_from_slice(&values[row..row + inner.width as usize]);
            }
        }
        out
    }

    /// Whether the pixel (y, x) lies inside the window.
    pub const fn contains(&self, y: u64, x: u64) -> bool {
        y >= self.y0 && y < self.y1() && x >= self.x0 && x < self.x1()
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}..{}, {}..{}]",
            self.y0,
            self.y1(),
            self.x0,
            self.x1()
        )
    }
}

/// Copies the pixels where windows `from` and `to` overlap, for each of `planes` stacked planes,
/// from `src` (`planes × from`, row-major) into `dst` (`planes × to`, row-major). Returns the
/// overlap, `None` (nothing copied) when they do not overlap.
///
/// # Panics
/// When a buffer is shorter than its windows' `planes × area`.
pub fn copy_overlap<T: Copy>(
    src: &[T],
    from: &Window,
    dst: &mut [T],
    to: &Window,
    planes: usize,
) -> Option<Window> {
    let overlap = from.intersect(to)?;
    let (fw, tw) = (from.width as usize, to.width as usize);
    let (fa, ta) = (from.area() as usize, to.area() as usize);
    let run = overlap.width as usize;
    for p in 0..planes {
        for y in overlap.y0..overlap.y1() {
            let s = p * fa + (y - from.y0) as usize * fw + (overlap.x0 - from.x0) as usize;
            let d = p * ta + (y - to.y0) as usize * tw + (overlap.x0 - to.x0) as usize;
            dst[d..d + run].copy_from_slice(&src[s..s + run]);
        }
    }
    Some(overlap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_overlap_moves_each_plane_of_the_shared_pixels() {
        // Two planes of a 2×3 window at (1, 1) copied into a 3×3 window at (0, 0).
        let from = Window::new(1, 1, 2, 3);
        let to = Window::new(0, 0, 3, 3);
        let src: Vec<u32> = (0..12).collect();
        let mut dst = vec![99u32; 18];
        let overlap = copy_overlap(&src, &from, &mut dst, &to, 2);
        assert_eq!(overlap, Some(Window::new(1, 1, 2, 2)));
        assert_eq!(
            dst,
            [99, 99, 99, 99, 0, 1, 99, 3, 4, 99, 99, 99, 99, 6, 7, 99, 9, 10]
        );
        assert_eq!(
            copy_overlap(&src, &from, &mut dst, &Window::new(5, 5, 1, 1), 2),
            None
        );
    }

    #[test]
    fn expand_clips_and_crop_inverts_it() {
        let inner = Window::new(2, 3, 2, 2);
        let outer = inner.expand(2, 5, 6);
        assert_eq!(outer, Window::new(0, 1, 5, 5));
        assert_eq!(inner.within(&outer), Window::new(2, 2, 2, 2));
        let values: Vec<u64> = (0..2)
            .flat_map(|l| {
                (outer.y0..outer.y1())
                    .flat_map(move |y| (outer.x0..outer.x1()).map(move |x| l * 100 + y * 10 + x))
            })
            .collect();
        assert_eq!(
            outer.crop(&values, 2, &inner),
            vec![23, 24, 33, 34, 123, 124, 133, 134]
        );
    }
}
