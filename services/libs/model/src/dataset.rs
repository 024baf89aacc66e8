//! Training batches drawn from a scene's own observed pixels: windows that are mostly observed,
//! a random dihedral augmentation, synthetic gaps, the interpolation prior, and a forward-process
//! draw of the residual (DDPM Algorithm 1).

use std::ops::Range;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use tiling::Window;

use crate::corpus::Corpus;
use crate::denoise::v_target;
use crate::gaps::{self, GapKind};
use crate::layout::{write_cond, Layout};
use crate::normalise::Normalisation;
use crate::prior::idw_prior;
use crate::scan::Scan;
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

/// Draws training samples from a corpus (one or several scenes with the same bands), reading
/// each window through the corpus's source.
///
/// Each sample is a tile with a margin of context around it (half a tile each side, less on
/// scenes under three tiles wide): gaps are drawn over the whole context window and the prior
/// is interpolated from all of it, as the worker interpolates from beyond the tile when filling.
/// A window never spans two scenes; scenes are drawn in proportion to their windows.
#[derive(Debug)]
pub(crate) struct Dataset<'a> {
    corpus: &'a Corpus,
    scan: Arc<Scan>,
    /// The model's normalisation (the scan's statistics, or a resumed checkpoint's).
    norm: Normalisation,
    context_dates: usize,
    /// Share of samples whose gap hides the whole window (see `TrainConfig::blank_share`).
    blank_share: f64,
}

impl<'a> Dataset<'a> {
    /// The windows of `corpus` for `tile`-px tiles at least `min_observed` observed (scanned on
    /// first use), normalised by `norm`, with `context_dates` other dates as context.
    ///
    /// # Errors
    /// As [`Scan::new`].
    pub(crate) fn new(
        corpus: &'a Corpus,
        norm: Normalisation,
        tile: usize,
        context_dates: usize,
        min_observed: f32,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            corpus,
            scan: corpus.scan(tile, min_observed)?,
            norm,
            context_dates,
            blank_share: 0.0,
        })
    }

    /// The same windows with `share` of the samples' gaps hiding the whole window. Applied after
    /// [`Dataset::residual_scale`] (the scale is that of ordinary gaps) and taken off again for
    /// the spread calibration; 0 draws exactly the samples it drew before.
    pub(crate) fn with_blank_share(self, share: f64) -> Self {
        Self {
            blank_share: share,
            ..self
        }
    }

    /// Tile side.
    pub(crate) fn tile(&self) -> usize {
        self.scan.tile()
    }

    /// Context on each side of the tile.
    fn margin(&self) -> usize {
        self.scan.margin
    }

    /// Side of a context window.
    fn span(&self) -> usize {
        self.tile() + 2 * self.margin()
    }

    /// The bands per date (every scene's).
    fn bands(&self) -> usize {
        self.corpus.bands()
    }

    /// The `span`² window at (y0, x0) of dates `dates` of scene `part`, normalised and
    /// transformed by dihedral element `aug` (0..8). The tile sits at the centre, so every
    /// transform keeps it there.
    fn extract(
        &self,
        part: usize,
        dates: Range<usize>,
        y0: usize,
        x0: usize,
        aug: u8,
    ) -> Result<Vec<f32>, ModelError> {
        let s = self.span();
        let b = self.bands();
        let raw = self.corpus.source().read(part, dates, (y0, x0, s, s))?;
        let mut out = vec![0f32; raw.len()];
        for (p, (plane, src)) in out
            .chunks_exact_mut(s * s)
            .zip(raw.chunks_exact(s * s))
            .enumerate()
        {
            let band = p % b;
            for y in 0..s {
                for x in 0..s {
                    let (mut sy, mut sx) = if aug & 4 != 0 { (x, y) } else { (y, x) };
                    if aug & 1 != 0 {
                        sy = s - 1 - sy;
                    }
                    if aug & 2 != 0 {
                        sx = s - 1 - sx;
                    }
                    let v = src[sy * s + sx];
                    plane[y * s + x] = if v.is_finite() {
                        self.norm.forward(band, v)
                    } else {
                        f32::NAN
                    };
                }
            }
        }
        Ok(out)
    }

    /// A synthetic gap mask over a context window.
    fn gap(&self, rng: &mut impl Rng) -> Result<Vec<bool>, ModelError> {
        // Drawn only when blank windows are asked for, so that other runs keep their stream.
        if self.blank_share > 0.0 && rng.random_bool(self.blank_share) {
            return Ok(vec![true; self.span() * self.span()]);
        }
        let real = &self.scan.real_gaps;
        let kinds = if real.is_empty() { 3 } else { 4 };
        let kind = match rng.random_range(0..kinds) {
            0 => GapKind::Blobs,
            1 => GapKind::Stripes,
            2 => GapKind::Boxes,
            _ => {
                let (p, d, y, x) = self.scan.real_gap(rng.random_range(0..real.len()));
                let win = self.extract(p, d..d + 1, y, x, rng.random_range(0..8))?;
                let plane = self.span() * self.span();
                let bands = self.bands();
                return Ok((0..plane)
                    .map(|i| (0..bands).any(|b| !win[b * plane + i].is_finite()))
                    .collect());
            }
        };
        Ok(gaps::synth(kind, self.span(), rng))
    }

    /// A random window with synthetic gaps, made into a conditioning stack and a residual.
    ///
    /// # Errors
    /// Read errors of the corpus.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Result<Sample, ModelError> {
        let (s, m, span, b) = (self.tile(), self.margin(), self.span(), self.bands());
        let (part, date, y0, x0) = self.scan.draw_window(rng);
        // The dates the conditioning reads: the nearest `context_dates` others lie within
        // `context_dates` of the target.
        let layout = self.corpus.layouts()[part];
        let k = self.context_dates;
        let dates = date.saturating_sub(k)..(date + k + 1).min(layout.times);
        let target = date - dates.start;
        let local = Layout {
            height: span,
            width: span,
            times: dates.len(),
            ..layout
        };
        let win = self.extract(part, dates, y0 - m, x0 - m, rng.random_range(0..8))?;
        let gap = self.gap(rng)?;
        let tile = Window::new(m as u64, m as u64, s as u64, s as u64);
        let mut prior = Vec::with_capacity(b * s * s);
        for band in 0..b {
            let plane = &win[local.plane_offset(target, band)..][..span * span];
            prior.extend(idw_prior(plane, (span, span), Some(&gap), &tile));
        }
        let gap_tile: Vec<bool> = (0..s * s)
            .map(|i| gap[(m + i / s) * span + m + i % s])
            .collect();
        let mut cond = Vec::new();
        write_cond(
            &local,
            &win,
            target,
            k,
            (m, m, s, s),
            Some(&gap_tile),
            &prior,
            &mut cond,
        );
        let mut residual = Vec::with_capacity(b * s * s);
        for band in 0..b {
            let plane = &win[local.plane_offset(target, band)..][..span * span];
            for (i, &hidden) in gap_tile.iter().enumerate() {
                let v = plane[(m + i / s) * span + m + i % s];
                residual.push(if hidden {
                    v - prior[band * s * s + i]
                } else {
                    f32::NAN
                });
            }
        }
        Ok(Sample { cond, residual })
    }

    /// Per-band root-mean-square of the residual z − prior over `n` samples' synthetic gaps: the
    /// scale that makes the diffused residual about unit-variance.
    ///
    /// # Errors
    /// Read errors of the corpus.
    pub(crate) fn residual_scale(
        &self,
        n: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<f64>, ModelError> {
        let (b, plane) = (self.bands(), self.tile() * self.tile());
        let (mut ss, mut count) = (vec![0f64; b], vec![0usize; b]);
        for _ in 0..n {
            let sample = self.sample(rng)?;
            for (band, r) in sample.residual.chunks_exact(plane).enumerate() {
                for &v in r.iter().filter(|v| v.is_finite()) {
                    ss[band] += f64::from(v).powi(2);
                    count[band] += 1;
                }
            }
        }
        Ok(ss
            .iter()
            .zip(&count)
            .map(|(&s, &c)| (s / c.max(1) as f64).sqrt().max(1e-3))
            .collect())
    }

    /// Draw `n` samples into a batch; `scale` is [`Dataset::residual_scale`]. Sample i draws from
    /// its own stream `mix(seed, i)`, so the samples are assembled in parallel and the batch does
    /// not depend on the thread count. The first `at_last_step` samples take t = T−1, the others a
    /// uniform t.
    ///
    /// # Errors
    /// Read errors of the corpus.
    pub(crate) fn batch(
        &self,
        n: usize,
        at_last_step: usize,
        schedule: &NoiseSchedule,
        scale: &[f64],
        seed: u64,
    ) -> Result<Batch, ModelError> {
        let plane = self.tile() * self.tile();
        let parts: Vec<Batch> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, i as u64));
                let sample = self.sample(&mut rng)?;
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
                Ok(out)
            })
            .collect::<Result<_, ModelError>>()?;
        let mut out = Batch::default();
        for p in parts {
            out.x_t.extend(p.x_t);
            out.cond.extend(p.cond);
            out.t.extend(p.t);
            out.v.extend(p.v);
            out.weight.extend(p.weight);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::schedule::ScheduleConfig;
    use crate::SceneArray;

    fn scene(shape: &[usize], values: Vec<f32>) -> SceneArray {
        SceneArray {
            shape: shape.to_vec(),
            values,
        }
    }

    fn dataset(corpus: &Corpus, tile: usize) -> Result<Dataset<'_>, ModelError> {
        let stats = corpus.scan(tile, 0.9)?.stats.clone();
        Dataset::new(corpus, stats, tile, 0, 0.9)
    }

    fn windows(ds: &Dataset<'_>) -> Vec<(usize, usize, usize, usize)> {
        (0..ds.scan.windows.len())
            .map(|k| ds.scan.window(k))
            .collect()
    }

    #[test]
    fn windows_avoid_missing_areas_and_batches_have_the_right_sizes() -> anyhow::Result<()> {
        // 1 band, 24x24, left half missing; tiles of 8 with 4 pixels of context.
        let z: Vec<f32> = (0..576)
            .map(|i| {
                if i % 24 < 12 {
                    f32::NAN
                } else {
                    (i % 7) as f32
                }
            })
            .collect();
        let corpus = Corpus::in_memory(vec![scene(&[1, 24, 24], z)])?;
        let ds = dataset(&corpus, 8)?;
        assert_eq!(ds.margin(), 4);
        assert!(windows(&ds)
            .iter()
            .all(|&(_, _, y, x)| x == 12 && (4..=12).contains(&y)));
        assert!(!ds.scan.real_gaps.is_empty());
        let sched = NoiseSchedule::new(&ScheduleConfig::default())?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let scale = ds.residual_scale(8, &mut rng)?;
        assert!(scale[0] > 0.0 && scale[0].is_finite());
        let b = ds.batch(3, 0, &sched, &scale, 7)?;
        assert_eq!(
            b.x_t,
            ds.batch(3, 0, &sched, &scale, 7)?.x_t,
            "same seed, same batch"
        );
        assert_eq!(
            (b.x_t.len(), b.cond.len(), b.t.len(), b.weight.len()),
            (192, 576, 3, 192)
        );
        assert!(b.weight.iter().any(|&w| w > 0.0));
        let last = ds.batch(3, 2, &sched, &scale, 7)?;
        let top = sched.len() as u32 - 1;
        assert_eq!(
            last.t,
            vec![top, top, b.t[2]],
            "two samples at T−1, the third unchanged"
        );
        assert_eq!(last.cond, b.cond, "the share changes t, not the windows");
        assert!(dataset(&corpus, 32).is_err());
        Ok(())
    }

    #[test]
    fn several_scenes_share_one_index_and_windows_stay_inside_each() -> anyhow::Result<()> {
        // A 24x24 scene observed on its right half and a fully observed 16x40 one.
        let za: Vec<f32> = (0..576)
            .map(|i| if i % 24 < 12 { f32::NAN } else { 1.0 })
            .collect();
        let (a, b) = (scene(&[1, 24, 24], za), scene(&[1, 16, 40], vec![2.0; 640]));
        let one = Corpus::in_memory(vec![a.clone()])?;
        let both = Corpus::in_memory(vec![a, b])?;
        let (one, both_ds) = (dataset(&one, 8)?, dataset(&both, 8)?);
        // The smaller scene limits the context: (16 − 8) / 4.
        assert_eq!(both_ds.margin(), 2);
        let all = windows(&both_ds);
        assert!(all.iter().any(|w| w.0 == 0) && all.iter().any(|w| w.0 == 1));
        for &(p, _, y, x) in &all {
            let l = both.layouts()[p];
            assert!(y + 8 + 2 <= l.height && x + 8 + 2 <= l.width && y >= 2 && x >= 2);
        }
        // Every sample of scene b reads only b's values: its windows never reach into a.
        let want = [both_ds.norm.forward(0, 1.0), both_ds.norm.forward(0, 2.0)];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let (p, d, y, x) = all[rng.random_range(0..all.len())];
            let win = both_ds.extract(p, d..d + 1, y - 2, x - 2, rng.random_range(0..8))?;
            assert!(win.iter().filter(|v| v.is_finite()).all(|&v| v == want[p]));
        }
        assert!(windows(&one).len() < all.len());
        let wrong = Corpus::in_memory(vec![
            scene(&[1, 24, 24], vec![1.0; 576]),
            scene(&[1, 6, 40], vec![2.0; 240]),
        ])?;
        assert!(dataset(&wrong, 8).is_err());
        Ok(())
    }

    #[test]
    fn a_time_series_window_reads_only_the_dates_its_conditioning_needs() -> anyhow::Result<()> {
        // 6 dates × 1 band × 16×16; date d holds the value d + 1 everywhere.
        let values: Vec<f32> = (0..6 * 256).map(|i| (i / 256 + 1) as f32).collect();
        let corpus = Corpus::in_memory(vec![scene(&[6, 1, 16, 16], values)])?;
        let norm = Normalisation {
            mean: vec![0.0],
            std: vec![1.0],
            min: vec![0.0],
            max: vec![6.0],
        };
        let ds = Dataset::new(&corpus, norm, 8, 2, 0.9)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20 {
            let sample = ds.sample(&mut rng)?;
            // Channels: target (value, mask), two context (value, mask) pairs, the prior.
            let plane = 64;
            let ctx: Vec<f32> = [2, 4].iter().map(|&c| sample.cond[c * plane]).collect();
            let target = sample.cond[..plane]
                .iter()
                .copied()
                .find(|v| *v != 0.0)
                .unwrap_or(0.0);
            // The context dates are the target's nearest others.
            assert!(target > 0.0);
            assert!(ctx
                .iter()
                .all(|&c| c != target && (c - target).abs() <= 2.0));
        }
        Ok(())
    }

    #[test]
    fn a_blank_share_hides_whole_windows_and_zero_keeps_the_stream() -> anyhow::Result<()> {
        let z: Vec<f32> = (0..576).map(|i| ((i * 7) % 13) as f32).collect();
        let corpus = Corpus::in_memory(vec![scene(&[1, 24, 24], z)])?;
        let hidden = |ds: &Dataset<'_>, seed| -> anyhow::Result<Vec<usize>> {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| {
                    Ok(ds
                        .sample(&mut rng)?
                        .residual
                        .iter()
                        .filter(|r| r.is_finite())
                        .count())
                })
                .collect()
        };
        let plain = hidden(&dataset(&corpus, 8)?, 5)?;
        assert_eq!(
            plain,
            hidden(&dataset(&corpus, 8)?.with_blank_share(0.0), 5)?
        );
        let whole = |n: &[usize]| n.iter().filter(|&&n| n == 64).count();
        let blank = hidden(&dataset(&corpus, 8)?.with_blank_share(0.5), 5)?;
        let extra = whole(&blank) - whole(&plain).min(whole(&blank));
        assert!(
            (70..=130).contains(&extra),
            "{extra} of 200 more windows blank"
        );
        Ok(())
    }
}
