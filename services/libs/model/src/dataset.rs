//! Training batches drawn from a scene's own observed pixels: windows that are mostly observed,
//! a random dihedral augmentation, synthetic gaps, the interpolation prior, and a forward-process
//! draw of the residual (DDPM Algorithm 1).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use tiling::Window;

use crate::denoise::v_target;
use crate::gaps::{self, GapKind};
use crate::layout::{write_cond, Layout};
use crate::prior::idw_prior;
use crate::schedule::NoiseSchedule;
use crate::seed::mix;
use crate::ModelError;

/// A host-side training batch (N samples, B bands, S×S tiles).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// x_t of the residual r (see [`crate::prior`]): N·B·S·S.
    pub x_t: Vec<f32>,
    /// Conditioning: N·cond·S·S.
    pub cond: Vec<f32>,
    /// Step per sample.
    pub t: Vec<u32>,
    /// The v-prediction target (see [`crate::denoise`]).
    pub v: Vec<f32>,
    /// Loss weight: 1 on synthetic-gap pixels whose truth is observed, else 0 (N·B·S·S).
    pub weight: Vec<f32>,
}

/// One training window before noising: its conditioning stack and unscaled residual z − prior
/// (B·S·S; NaN where the loss does not look: observed pixels and pixels without truth).
pub(crate) struct Sample {
    pub cond: Vec<f32>,
    pub residual: Vec<f32>,
}

/// Draws training samples from normalised scenes (one or several with the same bands).
///
/// Each sample is a tile with a margin of context around it (half a tile each side, less on
/// scenes under three tiles wide): gaps are drawn over the whole context window and the prior
/// is interpolated from all of it, as the worker interpolates from beyond the tile when filling.
/// A window never spans two scenes; scenes are drawn in proportion to their windows.
#[derive(Debug)]
pub(crate) struct Dataset<'a> {
    /// The scenes: their layouts and normalised values.
    parts: Vec<(Layout, &'a [f32])>,
    tile: usize,
    /// Context on each side of the tile.
    margin: usize,
    context_dates: usize,
    /// (scene, date, y, x) of tiles whose target date is at least `min_observed` observed.
    windows: Vec<(usize, usize, usize, usize)>,
    /// (scene, date, y, x) of context windows with 5–70 % real gaps, to transplant as masks.
    real_gaps: Vec<(usize, usize, usize, usize)>,
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
    /// Index the windows of the scenes in `parts` (normalised, NaN = missing), which share their
    /// bands and dates.
    ///
    /// # Errors
    /// [`ModelError::NoTrainingData`] when no window is observed enough; [`ModelError::Config`]
    /// when a scene is smaller than a tile.
    pub(crate) fn new(
        parts: Vec<(Layout, &'a [f32])>,
        tile: usize,
        context_dates: usize,
        min_observed: f32,
    ) -> Result<Self, ModelError> {
        let mut smallest = usize::MAX;
        for (layout, _) in &parts {
            if layout.height < tile || layout.width < tile {
                return Err(ModelError::Config {
                    field: "tile",
                    reason: format!(
                        "{tile} exceeds the scene's {}x{} pixels",
                        layout.height, layout.width
                    ),
                });
            }
            smallest = smallest.min(layout.height.min(layout.width));
        }
        // Half a tile of context, less on scenes too small to leave tiles room to move.
        let margin = (tile / 2).min(smallest.saturating_sub(tile) / 4);
        let stride = (tile / 8).max(1);
        let area = (tile * tile) as f32;
        let (mut windows, mut real_gaps) = (Vec::new(), Vec::new());
        for (part, (layout, z)) in parts.iter().enumerate() {
            for date in 0..layout.times {
                let s = integral(layout, z, date);
                let w1 = layout.width + 1;
                let count = |y: usize, x: usize| {
                    s[(y + tile) * w1 + x + tile] + s[y * w1 + x]
                        - s[y * w1 + x + tile]
                        - s[(y + tile) * w1 + x]
                };
                for y in (margin..=layout.height - tile - margin).step_by(stride) {
                    for x in (margin..=layout.width - tile - margin).step_by(stride) {
                        let frac = count(y, x) as f32 / area;
                        if frac >= min_observed {
                            windows.push((part, date, y, x));
                        }
                        if (0.3..=0.95).contains(&frac)
                            && y % (stride * 4) == 0
                            && x % (stride * 4) == 0
                        {
                            real_gaps.push((part, date, y - margin, x - margin));
                        }
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
            parts,
            tile,
            margin,
            context_dates,
            windows,
            real_gaps,
        })
    }

    /// Tile side.
    pub(crate) fn tile(&self) -> usize {
        self.tile
    }

    /// Side of a context window.
    fn span(&self) -> usize {
        self.tile + 2 * self.margin
    }

    /// The bands per date (every scene's).
    fn bands(&self) -> usize {
        self.parts[0].0.bands
    }

    /// Copy the `span`² window at (y0, x0) of all dates of scene `part`, transformed by
    /// dihedral element `aug` (0..8). The tile sits at the centre, so every transform keeps it
    /// there.
    fn extract(&self, part: usize, y0: usize, x0: usize, aug: u8) -> Vec<f32> {
        let s = self.span();
        let (l, z) = (&self.parts[part].0, self.parts[part].1);
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
                    plane[y * s + x] = z[base + (y0 + sy) * l.width + x0 + sx];
                }
            }
        }
        out
    }

    /// A synthetic gap mask over a context window.
    fn gap(&self, rng: &mut impl Rng) -> Vec<bool> {
        let kinds = if self.real_gaps.is_empty() { 3 } else { 4 };
        let kind = match rng.random_range(0..kinds) {
            0 => GapKind::Blobs,
            1 => GapKind::Stripes,
            2 => GapKind::Boxes,
            _ => {
                let (p, d, y, x) = self.real_gaps[rng.random_range(0..self.real_gaps.len())];
                let win = self.extract(p, y, x, rng.random_range(0..8));
                let plane = self.span() * self.span();
                let bands = self.bands();
                let first = d * bands * plane;
                return (0..plane)
                    .map(|i| (0..bands).any(|b| !win[first + b * plane + i].is_finite()))
                    .collect();
            }
        };
        gaps::synth(kind, self.span(), rng)
    }

    /// A random window with synthetic gaps, made into a conditioning stack and a residual.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Sample {
        let (s, m, span, b) = (self.tile, self.margin, self.span(), self.bands());
        let (part, date, y0, x0) = self.windows[rng.random_range(0..self.windows.len())];
        let win = self.extract(part, y0 - m, x0 - m, rng.random_range(0..8));
        let gap = self.gap(rng);
        let local = Layout {
            height: span,
            width: span,
            ..self.parts[part].0
        };
        let tile = Window::new(m as u64, m as u64, s as u64, s as u64);
        let mut prior = Vec::with_capacity(b * s * s);
        for band in 0..b {
            let plane = &win[local.plane_offset(date, band)..][..span * span];
            prior.extend(idw_prior(plane, (span, span), Some(&gap), &tile));
        }
        let gap_tile: Vec<bool> = (0..s * s)
            .map(|i| gap[(m + i / s) * span + m + i % s])
            .collect();
        let mut cond = Vec::new();
        write_cond(
            &local,
            &win,
            date,
            self.context_dates,
            (m, m, s, s),
            Some(&gap_tile),
            &prior,
            &mut cond,
        );
        let mut residual = Vec::with_capacity(b * s * s);
        for band in 0..b {
            let plane = &win[local.plane_offset(date, band)..][..span * span];
            for (i, &hidden) in gap_tile.iter().enumerate() {
                let v = plane[(m + i / s) * span + m + i % s];
                residual.push(if hidden {
                    v - prior[band * s * s + i]
                } else {
                    f32::NAN
                });
            }
        }
        Sample { cond, residual }
    }

    /// Per-band root-mean-square of the residual z − prior over `n` samples' synthetic gaps: the
    /// scale that makes the diffused residual about unit-variance.
    pub(crate) fn residual_scale(&self, n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let (b, plane) = (self.bands(), self.tile * self.tile);
        let (mut ss, mut count) = (vec![0f64; b], vec![0usize; b]);
        for _ in 0..n {
            let sample = self.sample(rng);
            for (band, r) in sample.residual.chunks_exact(plane).enumerate() {
                for &v in r.iter().filter(|v| v.is_finite()) {
                    ss[band] += f64::from(v).powi(2);
                    count[band] += 1;
                }
            }
        }
        ss.iter()
            .zip(&count)
            .map(|(&s, &c)| (s / c.max(1) as f64).sqrt().max(1e-3))
            .collect()
    }

    /// Draw `n` samples into a batch; `scale` is [`Dataset::residual_scale`]. Sample i draws from
    /// its own stream `mix(seed, i)`, so the samples are assembled in parallel and the batch does
    /// not depend on the thread count. The first `at_last_step` samples take t = T−1, the others a
    /// uniform t.
    pub(crate) fn batch(
        &self,
        n: usize,
        at_last_step: usize,
        schedule: &NoiseSchedule,
        scale: &[f64],
        seed: u64,
    ) -> Batch {
        let plane = self.tile * self.tile;
        let parts: Vec<Batch> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, i as u64));
                let sample = self.sample(&mut rng);
                let drawn = rng.random_range(0..schedule.len());
                let t = if i < at_last_step {
                    schedule.len() - 1
                } else {
                    drawn
                };
                let (ca, cb) = schedule.q_sample_coefs(t);
                let len = sample.residual.len();
                let mut out = Batch {
                    x_t: Vec::with_capacity(len),
                    cond: sample.cond,
                    t: vec![t as u32],
                    v: Vec::with_capacity(len),
                    weight: Vec::with_capacity(len),
                };
                for (band, r) in sample.residual.chunks_exact(plane).enumerate() {
                    for &v in r {
                        let e: f32 = StandardNormal.sample(&mut rng);
                        let r0 = if v.is_finite() {
                            f64::from(v) / scale[band]
                        } else {
                            0.0
                        };
                        out.x_t.push((ca * r0 + cb * f64::from(e)) as f32);
                        out.v.push(v_target(schedule, t, r0, f64::from(e)) as f32);
                        out.weight.push(if v.is_finite() { 1.0 } else { 0.0 });
                    }
                }
                out
            })
            .collect();
        let mut out = Batch::default();
        for p in parts {
            out.x_t.extend(p.x_t);
            out.cond.extend(p.cond);
            out.t.extend(p.t);
            out.v.extend(p.v);
            out.weight.extend(p.weight);
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
        // 1 band, 24x24, left half missing; tiles of 8 with 4 pixels of context.
        let layout = Layout::from_shape(&[1, 24, 24], 576)?;
        let z: Vec<f32> = (0..576)
            .map(|i| if i % 24 < 12 { f32::NAN } else { 1.0 })
            .collect();
        let ds = Dataset::new(vec![(layout, &z)], 8, 0, 0.9)?;
        assert_eq!(ds.margin, 4);
        assert!(ds
            .windows
            .iter()
            .all(|&(_, _, y, x)| x == 12 && (4..=12).contains(&y)));
        assert!(!ds.real_gaps.is_empty());
        let sched = NoiseSchedule::new(&ScheduleConfig::default())?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let scale = ds.residual_scale(8, &mut rng);
        assert!(scale[0] > 0.0 && scale[0].is_finite());
        let b = ds.batch(3, 0, &sched, &scale, 7);
        assert_eq!(
            b.x_t,
            ds.batch(3, 0, &sched, &scale, 7).x_t,
            "same seed, same batch"
        );
        assert_eq!(
            (b.x_t.len(), b.cond.len(), b.t.len(), b.weight.len()),
            (192, 576, 3, 192)
        );
        assert!(b.weight.iter().any(|&w| w > 0.0));
        let last = ds.batch(3, 2, &sched, &scale, 7);
        let top = sched.len() as u32 - 1;
        assert_eq!(
            last.t,
            vec![top, top, b.t[2]],
            "two samples at T−1, the third unchanged"
        );
        assert_eq!(last.cond, b.cond, "the share changes t, not the windows");
        assert!(Dataset::new(vec![(layout, &z)], 32, 0, 0.9).is_err());
        Ok(())
    }

    #[test]
    fn several_scenes_share_one_index_and_windows_stay_inside_each() -> anyhow::Result<()> {
        // A 24x24 scene observed on its right half and a fully observed 16x40 one.
        let a = Layout::from_shape(&[1, 24, 24], 576)?;
        let za: Vec<f32> = (0..576)
            .map(|i| if i % 24 < 12 { f32::NAN } else { 1.0 })
            .collect();
        let b = Layout::from_shape(&[1, 16, 40], 640)?;
        let zb = vec![2.0f32; 640];
        let one = Dataset::new(vec![(a, &za)], 8, 0, 0.9)?;
        let both = Dataset::new(vec![(a, &za), (b, &zb)], 8, 0, 0.9)?;
        // The smaller scene limits the context: (16 − 8) / 4.
        assert_eq!(both.margin, 2);
        assert!(both.windows.iter().any(|w| w.0 == 0) && both.windows.iter().any(|w| w.0 == 1));
        for &(p, _, y, x) in &both.windows {
            let l = [a, b][p];
            assert!(y + 8 + 2 <= l.height && x + 8 + 2 <= l.width && y >= 2 && x >= 2);
        }
        // Every sample of scene b reads only b's values (2.0): its windows never reach into a.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let (p, _, y, x) = both.windows[rng.random_range(0..both.windows.len())];
            let win = both.extract(p, y - 2, x - 2, rng.random_range(0..8));
            let want = if p == 1 { 2.0 } else { 1.0 };
            assert!(win.iter().filter(|v| v.is_finite()).all(|&v| v == want));
        }
        assert!(one.windows.len() < both.windows.len());
        let wrong = Layout::from_shape(&[1, 6, 40], 240)?;
        assert!(Dataset::new(vec![(a, &za), (wrong, &zb[..240])], 8, 0, 0.9).is_err());
        Ok(())
    }
}
