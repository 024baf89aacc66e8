//! One pass over a corpus, block by block: the per-band statistics that normalise it and the
//! index of the windows training draws from.
//!
//! Tile origins lie on a grid of stride tile/8 inside a margin of context. A window is a
//! *training window* when its tile is at least `min_observed` observed on the target date, and a
//! *real-gap window* (a mask to transplant, on a grid four times coarser) when its tile is
//! 30–95 % observed. The index keeps one bit per grid position and date, about 1/500 of the
//! scene's float32 values per band, so memory stays far below the corpus; the pass reads one
//! block of about 512² pixels (plus a tile) of one date at a time.

use rand::Rng;

use crate::corpus::Corpus;
use crate::layout::Layout;
use crate::normalise::{Moments, Normalisation};
use crate::ModelError;

/// Block side in grid positions (× stride pixels).
const BLOCK_PX: usize = 512;

/// The result of scanning a corpus for one tile size.
#[derive(Debug)]
pub(crate) struct Scan {
    tile: usize,
    min_observed: f32,
    /// Context on each side of a tile.
    pub margin: usize,
    /// Distance between grid positions.
    stride: usize,
    /// Statistics over every observed pixel of every scene and date.
    pub stats: Normalisation,
    /// Tile origins of training windows.
    pub windows: Index,
    /// Tile origins of real-gap windows.
    pub real_gaps: Index,
    /// How training draws scenes when their sampling weights differ.
    draw: Option<Draw>,
}

/// Scene-weighted drawing: scene `p` is drawn with probability ∝ its weight × its windows, then
/// one of its windows uniformly.
#[derive(Debug)]
struct Draw {
    /// The windows of each scene: `windows.nth` positions `start..end`.
    ranges: Vec<std::ops::Range<u64>>,
    /// Weighted window mass of scenes 0..=p.
    cumulative: Vec<f64>,
}

/// Set positions of the grid of every (scene, date), in (scene, date, row, column) order.
#[derive(Debug, Default)]
pub(crate) struct Index {
    planes: Vec<Plane>,
    /// Set positions in planes 0..=i.
    cumulative: Vec<u64>,
}

#[derive(Debug)]
struct Plane {
    part: usize,
    date: usize,
    rows: usize,
    cols: usize,
    bits: Vec<u64>,
    /// Set bits in words before each word.
    before: Vec<u32>,
}

impl Plane {
    fn new(part: usize, date: usize, rows: usize, cols: usize) -> Self {
        Self {
            part,
            date,
            rows,
            cols,
            bits: vec![0; (rows * cols).div_ceil(64)],
            before: Vec::new(),
        }
    }

    fn set(&mut self, gy: usize, gx: usize) {
        let i = gy * self.cols + gx;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// Fills `before`; returns the number of set positions.
    fn seal(&mut self) -> u64 {
        let mut n = 0u32;
        self.before = self
            .bits
            .iter()
            .map(|w| {
                let b = n;
                n += w.count_ones();
                b
            })
            .collect();
        u64::from(n)
    }

    /// (row, column) of the `k`-th set position.
    fn nth(&self, k: u32) -> (usize, usize) {
        let word = self.before.partition_point(|&b| b <= k) - 1;
        let mut w = self.bits[word];
        for _ in 0..k - self.before[word] {
            w &= w - 1;
        }
        let i = word * 64 + w.trailing_zeros() as usize;
        debug_assert!(i < self.rows * self.cols);
        (i / self.cols, i % self.cols)
    }
}

impl Index {
    /// Number of set positions.
    pub fn len(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (scene, date, grid row, grid column) of the `k`-th set position (k < len).
    fn nth(&self, k: u64) -> (usize, usize, usize, usize) {
        let p = self.cumulative.partition_point(|&c| c <= k);
        let first = if p == 0 { 0 } else { self.cumulative[p - 1] };
        let plane = &self.planes[p];
        let (gy, gx) = plane.nth((k - first) as u32);
        (plane.part, plane.date, gy, gx)
    }

    /// The positions `k` of each of `parts` scenes (planes are in scene order).
    fn part_ranges(&self, parts: usize) -> Vec<std::ops::Range<u64>> {
        let mut ranges = vec![0..0; parts];
        let mut first = 0;
        for (plane, &end) in self.planes.iter().zip(&self.cumulative) {
            let r = &mut ranges[plane.part];
            if r.start == r.end {
                *r = first..first;
            }
            r.end = end;
            first = end;
        }
        ranges
    }

    fn push(&mut self, mut plane: Plane) {
        let n = plane.seal();
        if n > 0 {
            self.cumulative.push(self.len() + n);
            self.planes.push(plane);
        }
    }
}

impl Scan {
    /// Scans every scene of `corpus`.
    ///
    /// # Errors
    /// [`ModelError::Config`] when a scene is smaller than a tile or a band has no observed
    /// pixel, [`ModelError::NoTrainingData`] when no window is observed enough, and read errors.
    pub(crate) fn new(corpus: &Corpus, tile: usize, min_observed: f32) -> Result<Self, ModelError> {
        let (h, w) = corpus.smallest();
        if h < tile || w < tile {
            return Err(ModelError::Config {
                field: "tile",
                reason: format!("{tile} exceeds the scene's {h}x{w} pixels"),
            });
        }
        // Half a tile of context, less on scenes too small to leave tiles room to move.
        let margin = (tile / 2).min(h.min(w).saturating_sub(tile) / 4);
        let stride = (tile / 8).max(1);
        let mut scan = Self {
            tile,
            min_observed,
            margin,
            stride,
            stats: Normalisation {
                mean: Vec::new(),
                std: Vec::new(),
                min: Vec::new(),
                max: Vec::new(),
            },
            windows: Index::default(),
            real_gaps: Index::default(),
            draw: None,
        };
        let mut moments = Moments::new(corpus.bands());
        for (part, layout) in corpus.layouts().iter().enumerate() {
            scan.scene(corpus, part, layout, &mut moments)?;
        }
        scan.stats = moments.finish()?;
        if scan.windows.is_empty() {
            return Err(ModelError::NoTrainingData {
                tile,
                min_fraction: min_observed,
            });
        }
        let weights: Vec<f64> = (0..corpus.layouts().len())
            .map(|p| corpus.source().weight(p))
            .collect();
        if weights.iter().any(|&w| w != weights[0]) {
            let ranges = scan.windows.part_ranges(weights.len());
            let mut mass = 0.0;
            let cumulative = ranges
                .iter()
                .zip(&weights)
                .map(|(r, w)| {
                    mass += w * (r.end - r.start) as f64;
                    mass
                })
                .collect();
            scan.draw = Some(Draw { ranges, cumulative });
        }
        Ok(scan)
    }

    /// Whether this scan is for `tile` and `min_observed`.
    pub(crate) fn matches(&self, tile: usize, min_observed: f32) -> bool {
        self.tile == tile && self.min_observed.to_bits() == min_observed.to_bits()
    }

    /// Tile side.
    pub(crate) fn tile(&self) -> usize {
        self.tile
    }

    /// (scene, date, y, x) of the `k`-th training window's tile origin.
    pub(crate) fn window(&self, k: u64) -> (usize, usize, usize, usize) {
        let (p, d, gy, gx) = self.windows.nth(k);
        (p, d, self.origin(gy), self.origin(gx))
    }

    /// Number of training windows of each scene.
    pub(crate) fn windows_per_scene(&self, parts: usize) -> Vec<u64> {
        self.windows
            .part_ranges(parts)
            .iter()
            .map(|r| r.end - r.start)
            .collect()
    }

    /// (scene, date, y, x) of a random training window: uniform over the corpus when every scene
    /// has the same sampling weight, else a scene by weight × windows, then one of its windows.
    pub(crate) fn draw_window(&self, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
        let k = match &self.draw {
            None => rng.random_range(0..self.windows.len()),
            Some(d) => {
                let total = d.cumulative.last().copied().unwrap_or(0.0);
                let u = rng.random::<f64>() * total;
                let p = d
                    .cumulative
                    .partition_point(|&c| c <= u)
                    .min(d.ranges.len() - 1);
                // A scene of weight × 0 windows has no mass, so `p` has windows unless rounding
                // ran past the last: step back to the nearest scene with some.
                let r = d.ranges[..=p]
                    .iter()
                    .rev()
                    .find(|r| r.start < r.end)
                    .expect("the scan has windows");
                rng.random_range(r.clone())
            }
        };
        self.window(k)
    }

    /// (scene, date, y, x) of the `k`-th real-gap window's context origin.
    pub(crate) fn real_gap(&self, k: u64) -> (usize, usize, usize, usize) {
        let (p, d, gy, gx) = self.real_gaps.nth(k);
        let m = self.margin;
        (p, d, self.origin(gy) - m, self.origin(gx) - m)
    }

    fn origin(&self, g: usize) -> usize {
        self.margin + g * self.stride
    }

    /// Grid positions along a side of `len` pixels.
    fn positions(&self, len: usize) -> usize {
        (len - self.tile - 2 * self.margin) / self.stride + 1
    }

    /// The pixels a block of grid positions `g0..g1` (of `n`) owns for the statistics, and the
    /// end of what it must read to see its windows' tiles, along a side of `len` pixels.
    fn block_span(&self, g0: usize, g1: usize, n: usize, len: usize) -> (usize, usize, usize) {
        let own0 = if g0 == 0 { 0 } else { self.origin(g0) };
        let own1 = if g1 == n { len } else { self.origin(g1) };
        let end = own1.max(self.origin(g1 - 1) + self.tile).min(len);
        (own0, own1, end)
    }

    fn scene(
        &mut self,
        corpus: &Corpus,
        part: usize,
        l: &Layout,
        moments: &mut Moments,
    ) -> Result<(), ModelError> {
        let (rows, cols) = (self.positions(l.height), self.positions(l.width));
        let step = (BLOCK_PX / self.stride).max(1);
        let area = (self.tile * self.tile) as f32;
        let coarse = self.stride * 4;
        for date in 0..l.times {
            let mut windows = Plane::new(part, date, rows, cols);
            let mut gaps = Plane::new(part, date, rows, cols);
            for gy0 in (0..rows).step_by(step) {
                let gy1 = (gy0 + step).min(rows);
                let (y0, own_y1, y1) = self.block_span(gy0, gy1, rows, l.height);
                for gx0 in (0..cols).step_by(step) {
                    let gx1 = (gx0 + step).min(cols);
                    let (x0, own_x1, x1) = self.block_span(gx0, gx1, cols, l.width);
                    let (bh, bw) = (y1 - y0, x1 - x0);
                    let v = corpus
                        .source()
                        .read(part, date..date + 1, (y0, x0, bh, bw))?;
                    for (band, plane) in v.chunks_exact(bh * bw).enumerate() {
                        for row in plane.chunks_exact(bw).take(own_y1 - y0) {
                            moments.add(band, &row[..own_x1 - x0]);
                        }
                    }
                    let s = observed_integral(&v, l.bands, bh, bw);
                    let w1 = bw + 1;
                    for gy in gy0..gy1 {
                        let y = self.origin(gy);
                        let ly = y - y0;
                        for gx in gx0..gx1 {
                            let x = self.origin(gx);
                            let lx = x - x0;
                            let t = self.tile;
                            let count = s[(ly + t) * w1 + lx + t] + s[ly * w1 + lx]
                                - s[ly * w1 + lx + t]
                                - s[(ly + t) * w1 + lx];
                            let frac = count as f32 / area;
                            if frac >= self.min_observed {
                                windows.set(gy, gx);
                            }
                            if (0.3..=0.95).contains(&frac) && y % coarse == 0 && x % coarse == 0 {
                                gaps.set(gy, gx);
                            }
                        }
                    }
                }
            }
            self.windows.push(windows);
            self.real_gaps.push(gaps);
        }
        Ok(())
    }
}

/// Summed-area table ((h+1)×(w+1)) of "all `bands` finite" over `v` (bands × h × w).
fn observed_integral(v: &[f32], bands: usize, h: usize, w: usize) -> Vec<u32> {
    let mut s = vec![0u32; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut row = 0u32;
        for x in 0..w {
            let ok = (0..bands).all(|b| v[(b * h + y) * w + x].is_finite());
            row += u32::from(ok);
            s[(y + 1) * (w + 1) + x + 1] = s[y * (w + 1) + x + 1] + row;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SceneArray;

    /// Every tile origin with its observed fraction, by brute force.
    fn brute(z: &[f32], w: usize, tile: usize, y: usize, x: usize) -> f32 {
        let mut n = 0;
        for yy in y..y + tile {
            for xx in x..x + tile {
                n += usize::from(z[yy * w + xx].is_finite());
            }
        }
        n as f32 / (tile * tile) as f32
    }

    #[test]
    fn block_scan_matches_brute_force_windows_and_whole_scene_statistics() -> anyhow::Result<()> {
        // 1 band, 300×1100 (three blocks across at tile 64), a missing disc and a missing
        // stripe; values vary so the statistics test the blocks' ownership of pixels.
        let (h, w) = (300, 1100);
        let z: Vec<f32> = (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f32, (i % w) as f32);
                let disc = (y - 150.0).powi(2) + (x - 700.0).powi(2) < 90.0f32.powi(2);
                if disc || (400..430).contains(&(i % w)) {
                    f32::NAN
                } else {
                    (y * 0.5 + x * 0.25).sin() * 10.0 + y / 30.0
                }
            })
            .collect();
        let corpus = Corpus::in_memory(vec![SceneArray {
            shape: vec![1, h, w],
            values: z.clone(),
        }])?;
        let scan = Scan::new(&corpus, 64, 0.9)?;
        let layout = Layout::from_shape(&[1, h, w], z.len())?;
        let want = Normalisation::from_values(&layout, &z)?;
        assert_eq!(scan.stats.min, want.min);
        assert_eq!(scan.stats.max, want.max);
        for b in 0..1 {
            assert!((scan.stats.mean[b] - want.mean[b]).abs() < 1e-9);
            assert!((scan.stats.std[b] - want.std[b]).abs() < 1e-9);
        }
        let (m, stride) = (scan.margin, 8);
        let mut expect = Vec::new();
        let mut gaps = Vec::new();
        for y in (m..=h - 64 - m).step_by(stride) {
            for x in (m..=w - 64 - m).step_by(stride) {
                let f = brute(&z, w, 64, y, x);
                if f >= 0.9 {
                    expect.push((0, 0, y, x));
                }
                if (0.3..=0.95).contains(&f) && y % 32 == 0 && x % 32 == 0 {
                    gaps.push((0, 0, y - m, x - m));
                }
            }
        }
        let got: Vec<_> = (0..scan.windows.len()).map(|k| scan.window(k)).collect();
        assert_eq!(got, expect);
        let got: Vec<_> = (0..scan.real_gaps.len())
            .map(|k| scan.real_gap(k))
            .collect();
        assert_eq!(got, gaps);
        assert!(!gaps.is_empty());
        Ok(())
    }

    /// Two fully observed scenes, the second weighted ×3 per window.
    struct Weighted(Vec<(Vec<usize>, f64)>);

    impl crate::SceneSource for Weighted {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn shape(&self, part: usize) -> Vec<usize> {
            self.0[part].0.clone()
        }
        fn name(&self, part: usize) -> String {
            format!("scene {part}")
        }
        fn weight(&self, part: usize) -> f64 {
            self.0[part].1
        }
        fn read(
            &self,
            _part: usize,
            dates: std::ops::Range<usize>,
            (y0, x0, h, w): (usize, usize, usize, usize),
        ) -> Result<Vec<f32>, ModelError> {
            let n = dates.len() * h * w;
            Ok((0..n).map(|i| ((i + y0 * 7 + x0) % 13) as f32).collect())
        }
    }

    #[test]
    fn weights_draw_scenes_by_weight_times_windows() -> anyhow::Result<()> {
        use rand::SeedableRng;
        let corpus = Corpus::new(Box::new(Weighted(vec![
            (vec![1, 96, 96], 1.0),
            (vec![1, 96, 192], 3.0),
        ])))?;
        let shares = corpus.draw_shares(32, 0.9)?;
        let (n0, n1) = (shares[0].0 as f64, shares[1].0 as f64);
        assert!(n1 > n0 && n0 > 0.0);
        let want = 3.0 * n1 / (n0 + 3.0 * n1);
        assert!((shares[1].1 - want).abs() < 1e-12);
        let scan = corpus.scan(32, 0.9)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let draws = 20_000;
        let second = (0..draws)
            .filter(|_| scan.draw_window(&mut rng).0 == 1)
            .count() as f64;
        assert!((second / draws as f64 - want).abs() < 0.01, "{second}");
        // Equal weights draw uniformly over the corpus, as without weights.
        let even = Corpus::new(Box::new(Weighted(vec![
            (vec![1, 96, 96], 2.0),
            (vec![1, 96, 192], 2.0),
        ])))?;
        let share = even.draw_shares(32, 0.9)?[1].1;
        assert!((share - n1 / (n0 + n1)).abs() < 1e-12);
        assert!(
            Corpus::new(Box::new(Weighted(vec![(vec![1, 96, 96], 0.0)])))
                .unwrap_err()
                .to_string()
                .contains("scene 0")
        );
        Ok(())
    }
}
