//! Training batches drawn from a scene's own observed pixels: windows that are mostly observed,
//! a random dihedral augmentation, synthetic gaps, and a forward-process draw (DDPM Algorithm 1).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::gaps::{self, GapKind};
use crate::layout::{write_cond, Layout};
use crate::schedule::NoiseSchedule;
use crate::ModelError;

/// A host-side training batch (N samples, B bands, S×S tiles).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// x_t: N·B·S·S.
    pub x_t: Vec<f32>,
    /// Conditioning: N·cond·S·S.
    pub cond: Vec<f32>,
    /// Step per sample.
    pub t: Vec<u32>,
    /// The noise ε that made x_t.
    pub eps: Vec<f32>,
    /// Loss weight: 1 on synthetic-gap pixels whose truth is observed, else 0 (N·B·S·S).
    pub weight: Vec<f32>,
}

/// Draws training samples from a normalised scene.
#[derive(Debug)]
pub(crate) struct Dataset<'a> {
    layout: Layout,
    z: &'a [f32],
    tile: usize,
    context_dates: usize,
    /// (date, y, x) of windows whose target date is at least `min_observed` observed.
    windows: Vec<(usize, usize, usize)>,
    /// (date, y, x) of windows with 5–70 % real gaps, to transplant as masks.
    real_gaps: Vec<(usize, usize, usize)>,
}

/// Summed-area table of `observed(date, y, x)` (all bands finite).
fn integral(layout: &Layout, z: &[f32], date: usize) -> Vec<u32> {
    let (h, w) = (layout.height, layout.width);
    let mut s = vec![0u32; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut row = 0u32;
        for x in 0..w {
            let ok =
                (0..layout.bands).all(|b| z[layout.plane_offset(date, b) + y * w + x].is_finite());
            row += u32::from(ok);
            s[(y + 1) * (w + 1) + x + 1] = s[y * (w + 1) + x + 1] + row;
        }
    }
    s
}

impl<'a> Dataset<'a> {
    /// Index the windows of `z` (normalised, NaN = missing).
    ///
    /// # Errors
    /// [`ModelError::NoTrainingData`] when no window is observed enough; [`ModelError::Config`]
    /// when the scene is smaller than a tile.
    pub(crate) fn new(
        layout: Layout,
        z: &'a [f32],
        tile: usize,
        context_dates: usize,
        min_observed: f32,
    ) -> Result<Self, ModelError> {
        if layout.height < tile || layout.width < tile {
            return Err(ModelError::Config {
                field: "tile",
                reason: format!(
                    "{tile} exceeds the scene's {}x{} pixels",
                    layout.height, layout.width
                ),
            });
        }
        let stride = (tile / 8).max(1);
        let area = (tile * tile) as f32;
        let (mut windows, mut real_gaps) = (Vec::new(), Vec::new());
        for date in 0..layout.times {
            let s = integral(&layout, z, date);
            let w1 = layout.width + 1;
            let count = |y: usize, x: usize| {
                s[(y + tile) * w1 + x + tile] + s[y * w1 + x]
                    - s[y * w1 + x + tile]
                    - s[(y + tile) * w1 + x]
            };
            for y in (0..=layout.height - tile).step_by(stride) {
                for x in (0..=layout.width - tile).step_by(stride) {
                    let frac = count(y, x) as f32 / area;
                    if frac >= min_observed {
                        windows.push((date, y, x));
                    }
                    if (0.3..=0.95).contains(&frac)
                        && y % (stride * 4) == 0
                        && x % (stride * 4) == 0
                    {
                        real_gaps.push((date, y, x));
                    }
                }
            }
        }
        if windows.is_empty() {
            return Err(ModelError::NoTrainingData {
                tile,
                min_fraction: min_observed,
            });
        }
        Ok(Self {
            layout,
            z,
            tile,
            context_dates,
            windows,
            real_gaps,
        })
    }

    /// Copy the window (y0, x0) of all dates, transformed by dihedral element `aug` (0..8).
    fn extract(&self, y0: usize, x0: usize, aug: u8) -> Vec<f32> {
        let (s, l) = (self.tile, &self.layout);
        let mut out = vec![0f32; l.times * l.bands * s * s];
        for (p, plane) in out.chunks_exact_mut(s * s).enumerate() {
            let base = p * l.plane();
            for y in 0..s {
                for x in 0..s {
                    let (mut sy, mut sx) = if aug & 4 != 0 { (x, y) } else { (y, x) };
                    if aug & 1 != 0 {
                        sy = s - 1 - sy;
                    }
                    if aug & 2 != 0 {
                        sx = s - 1 - sx;
                    }
                    plane[y * s + x] = self.z[base + (y0 + sy) * l.width + x0 + sx];
                }
            }
        }
        out
    }

    fn gap(&self, rng: &mut impl Rng) -> Vec<bool> {
        let kinds = if self.real_gaps.is_empty() { 3 } else { 4 };
        let kind = match rng.random_range(0..kinds) {
            0 => GapKind::Blobs,
            1 => GapKind::Stripes,
            2 => GapKind::Boxes,
            _ => {
                let (d, y, x) = self.real_gaps[rng.random_range(0..self.real_gaps.len())];
                let win = self.extract(y, x, rng.random_range(0..8));
                let plane = self.tile * self.tile;
                let first = d * self.layout.bands * plane;
                return (0..plane)
                    .map(|i| {
                        (0..self.layout.bands).any(|b| !win[first + b * plane + i].is_finite())
                    })
                    .collect();
            }
        };
        gaps::synth(kind, self.tile, rng)
    }

    /// Draw `n` samples into a batch.
    pub(crate) fn batch(&self, n: usize, schedule: &NoiseSchedule, rng: &mut impl Rng) -> Batch {
        let (s, b) = (self.tile, self.layout.bands);
        let local = Layout {
            height: s,
            width: s,
            ..self.layout
        };
        let mut out = Batch::default();
        for _ in 0..n {
            let (date, y0, x0) = self.windows[rng.random_range(0..self.windows.len())];
            let win = self.extract(y0, x0, rng.random_range(0..8));
            let gap = self.gap(rng);
            write_cond(
                &local,
                &win,
                date,
                self.context_dates,
                (0, 0, s, s),
                Some(&gap),
                &mut out.cond,
            );
            let t = rng.random_range(0..schedule.len());
            let (ca, cb) = schedule.q_sample_coefs(t);
            out.t.push(t as u32);
            for band in 0..b {
                let plane = &win[local.plane_offset(date, band)..][..s * s];
                for (i, &v) in plane.iter().enumerate() {
                    let e: f32 = StandardNormal.sample(rng);
                    let x0 = if v.is_finite() { v } else { 0.0 };
                    out.x_t
                        .push((ca * f64::from(x0) + cb * f64::from(e)) as f32);
                    out.eps.push(e);
                    out.weight
                        .push(if v.is_finite() && gap[i] { 1.0 } else { 0.0 });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::schedule::ScheduleConfig;

    #[test]
    fn windows_avoid_missing_areas_and_batches_have_the_right_sizes() -> anyhow::Result<()> {
        // 1 band, 16x16, left half missing.
        let layout = Layout::from_shape(&[1, 16, 16], 256)?;
        let z: Vec<f32> = (0..256)
            .map(|i| if i % 16 < 8 { f32::NAN } else { 1.0 })
            .collect();
        let ds = Dataset::new(layout, &z, 8, 0, 0.9)?;
        assert!(ds.windows.iter().all(|&(_, _, x)| x >= 8));
        assert!(!ds.real_gaps.is_empty());
        let sched = NoiseSchedule::new(&ScheduleConfig::default())?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let b = ds.batch(3, &sched, &mut rng);
        assert_eq!(
            (b.x_t.len(), b.cond.len(), b.t.len(), b.weight.len()),
            (192, 384, 3, 192)
        );
        assert!(b.weight.iter().any(|&w| w > 0.0));
        assert!(Dataset::new(layout, &z, 32, 0, 0.9).is_err());
        Ok(())
    }
}
