//! Synthetic gap masks for self-supervised training (true = hidden pixel): cloud-like blobs,
//! Landsat-7 SLC-off wedge stripes, boxes, and real gap masks transplanted from the scene.

use rand::Rng;

/// The kinds of synthetic gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Thresholded smooth random field (cumulus-like blobs).
    Blobs,
    /// SLC-off stripes whose width grows linearly across the tile (the wedges of Landsat 7 after
    /// its scan-line corrector failed in 2003).
    Stripes,
    /// One to three axis-aligned rectangles.
    Boxes,
}

/// Fraction of hidden pixels below which a mask is redrawn.
const MIN_COVER: f64 = 0.02;

/// Draw a mask of `kind` for a `size`×`size` tile.
pub fn synth(kind: GapKind, size: usize, rng: &mut impl Rng) -> Vec<bool> {
    for _ in 0..8 {
        let m = match kind {
            GapKind::Blobs => blobs(size, rng),
            GapKind::Stripes => stripes(size, rng),
            GapKind::Boxes => boxes(size, rng),
        };
        if cover(&m) >= MIN_COVER {
            return m;
        }
    }
    boxes(size, rng)
}

/// Fraction of true values.
pub fn cover(m: &[bool]) -> f64 {
    m.iter().filter(|&&g| g).count() as f64 / m.len().max(1) as f64
}

/// Smooth field: bilinear upsampling of a coarse uniform grid, plus a finer octave; thresholded so
/// that a random fraction in [0.1, 0.6] is hidden.
fn blobs(size: usize, rng: &mut impl Rng) -> Vec<bool> {
    let coarse = rng.random_range(2..=5usize);
    let mut field = vec![0f32; size * size];
    for (octave, amp) in [(coarse, 1.0f32), (coarse * 3, 0.35)] {
        let g: Vec<f32> = (0..(octave + 1) * (octave + 1))
            .map(|_| rng.random::<f32>())
            .collect();
        for y in 0..size {
            let fy = y as f32 / size as f32 * octave as f32;
            let (iy, ty) = (fy as usize, fy.fract());
            for x in 0..size {
                let fx = x as f32 / size as f32 * octave as f32;
                let (ix, tx) = (fx as usize, fx.fract());
                let at = |a: usize, b: usize| g[a * (octave + 1) + b];
                let top = at(iy, ix) * (1.0 - tx) + at(iy, ix + 1) * tx;
                let bot = at(iy + 1, ix) * (1.0 - tx) + at(iy + 1, ix + 1) * tx;
                field[y * size + x] += amp * (top * (1.0 - ty) + bot * ty);
            }
        }
    }
    let target = rng.random_range(0.1..0.6);
    let mut sorted = field.clone();
    sorted.sort_by(f32::total_cmp);
    let k = ((1.0 - target) * (sorted.len() - 1) as f64) as usize;
    let thr = sorted[k];
    field.iter().map(|&v| v > thr).collect()
}

/// SLC-off stripes: period 8–24 px, tilted up to ±12°, width growing linearly across the tile.
fn stripes(size: usize, rng: &mut impl Rng) -> Vec<bool> {
    let period: f32 = rng.random_range(8.0..24.0);
    let angle: f32 = rng.random_range(-12f32..12.0).to_radians();
    let phase: f32 = rng.random_range(0.0..period);
    let (w0, w1) = (
        rng.random_range(0.5..period * 0.5),
        rng.random_range(0.5..period * 0.5),
    );
    let (s, c) = angle.sin_cos();
    let mut m = vec![false; size * size];
    for y in 0..size {
        for x in 0..size {
            let v = y as f32 * c - x as f32 * s + phase;
            let width = w0 + (w1 - w0) * x as f32 / size as f32;
            m[y * size + x] = v.rem_euclid(period) < width;
        }
    }
    m
}

/// One to three rectangles with sides between 1/8 and 1/2 of the tile.
fn boxes(size: usize, rng: &mut impl Rng) -> Vec<bool> {
    let mut m = vec![false; size * size];
    let lo = (size / 8).max(1);
    let hi = (size / 2).max(lo + 1);
    for _ in 0..rng.random_range(1..=3) {
        let (h, w) = (rng.random_range(lo..hi), rng.random_range(lo..hi));
        let (y0, x0) = (
            rng.random_range(0..=size - h),
            rng.random_range(0..=size - w),
        );
        for y in y0..y0 + h {
            m[y * size + x0..y * size + x0 + w].fill(true);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn masks_have_reasonable_cover() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for kind in [GapKind::Blobs, GapKind::Stripes, GapKind::Boxes] {
            for _ in 0..50 {
                let m = synth(kind, 32, &mut rng);
                let c = cover(&m);
                assert!((MIN_COVER..0.95).contains(&c), "{kind:?} cover {c}");
            }
        }
    }

    #[test]
    fn stripes_are_periodic_bands() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let m = stripes(64, &mut rng);
        // Each column alternates between hidden and visible runs several times.
        let col: Vec<bool> = (0..64).map(|y| m[y * 64 + 32]).collect();
        let changes = col.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes >= 4, "{changes}");
    }
}
