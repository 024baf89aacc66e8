//! The model API the worker calls: a batch of tiles in, filled tiles with ensemble spread out.

use candle_core::{DType, Device, Tensor};
use tiling::Window;

use crate::checkpoint::{Checkpoint, ModelMeta, TrainingHistory};
use crate::denoise::predict_eps;
use crate::error::TensorContext;
use crate::layout::{write_cond, Layout};
use crate::normalise::Normalisation;
use crate::prior::idw_prior;
use crate::sampler::{sample, Known, Noise, SampleOptions, Sampler};
use crate::schedule::NoiseSchedule;
use crate::seed::mix;
use crate::unet::UNet;
use crate::ModelError;

/// Pixels per forward pass (samples × H × W) unless [`FillModel::set_max_batch`] says otherwise:
/// on CPU 16 samples of 64 px already keep both cores busy (the convolutions run one gemm per
/// sample); a GPU wants large batches.
const CPU_BATCH_PIXELS: usize = 1 << 16;
const GPU_BATCH_PIXELS: usize = 1 << 22;

/// One tile to fill: `[lead..., h, w]` values with NaN where missing, and its seed
/// (see [`crate::tile_seed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TileInput {
    /// `[bands, h, w]` or `[times, bands, h, w]`.
    pub shape: Vec<usize>,
    /// Row-major values, NaN = missing.
    pub values: Vec<f32>,
    /// Seed of this tile.
    pub seed: u64,
    /// The interpolation the model refines (see the crate's `prior` module), same shape as
    /// `values`, in data units: the observed values with the gaps filled by IDW. The worker
    /// interpolates from beyond the tile; `None` interpolates from the tile alone. NaN entries
    /// fall back to that.
    pub prior: Option<Vec<f32>>,
    /// Per ensemble member (member-major, `ensemble × values.len()`), the values that member
    /// conditions on: `values` with more pixels known, such as a neighbouring tile's member k
    /// where the tiles overlap (parity phases), so that each member continues its own
    /// neighbour. `None`: every member conditions on `values`. The output is assembled as
    /// without it (the caller owns the extra pixels).
    pub member_values: Option<Vec<f32>>,
}

/// A filled tile.
#[derive(Debug, Clone, PartialEq)]
pub struct TileOutput {
    /// The point estimate in gaps (the mean over members of the network's minimum-MSE estimate,
    /// [`crate::sampler::Sampled::estimate`]), or the chosen member's sample; observed pixels
    /// bit-identical to the input.
    pub values: Vec<f32>,
    /// Standard deviation over members (K−1 denominator; 0 when K = 1) times the checkpoint's
    /// spread calibration (see the crate's `calibrate` module), 0 on observed pixels.
    pub spread: Vec<f32>,
    /// With [`SampleOptions::keep_members`] (else empty), the K members, member-major
    /// (`K × values.len()`): in gaps the point estimate plus each sample's deviation from the
    /// samples' mean times the same calibration (so that their mean is the point estimate and
    /// their standard deviation `spread`), clamped to the band's range in the training scene;
    /// observed pixels copied.
    pub members: Vec<f32>,
}

/// A trained fill model on a device.
#[derive(Debug)]
pub struct FillModel {
    unet: UNet,
    meta: ModelMeta,
    norm: Normalisation,
    history: TrainingHistory,
    schedule: NoiseSchedule,
    device: Device,
    max_batch: Option<usize>,
}

/// One (tile, date, member) to sample.
struct Job {
    tile: usize,
    date: usize,
    member: usize,
    seed: u64,
}

/// A tile's normalised values and prior: shared by its members, or one pair per member
/// ([`TileInput::member_values`]).
struct Conditioning {
    z: Vec<Vec<f32>>,
    prior: Vec<Vec<f32>>,
}

impl Conditioning {
    /// Member `k`'s values and prior.
    fn of(&self, k: usize) -> (&[f32], &[f32]) {
        let k = k.min(self.z.len() - 1);
        (&self.z[k], &self.prior[k])
    }
}

/// One ensemble member's normalised values for a date's bands (B·H·W each).
pub(crate) struct Member {
    /// A draw from the model's distribution (the end of the reverse process).
    pub sample: Vec<f32>,
    /// The network's minimum-MSE estimate at the first step ([`crate::sampler::Sampled`]).
    pub estimate: Vec<f32>,
}

impl FillModel {
    /// Load and validate a checkpoint.
    ///
    /// # Errors
    /// [`ModelError::CheckpointFormat`] for bytes that are not safetensors (truncated, garbage),
    /// [`ModelError::CheckpointContent`] / [`ModelError::CheckpointMetadata`] for missing or
    /// misshapen content, [`ModelError::NonFiniteWeights`] for NaN/Inf weights.
    pub fn from_checkpoint(bytes: &[u8], device: &Device) -> Result<Self, ModelError> {
        let ckpt = Checkpoint::decode(bytes)?;
        let unet = ckpt.unet(device)?;
        let schedule = NoiseSchedule::new(&ckpt.meta.schedule)?;
        Ok(Self {
            unet,
            meta: ckpt.meta,
            norm: ckpt.norm,
            history: ckpt.history,
            schedule,
            device: device.clone(),
            max_batch: None,
        })
    }

    /// A model from trained parts (used to calibrate the spread at the end of training).
    pub(crate) fn from_parts(
        unet: UNet,
        meta: ModelMeta,
        norm: Normalisation,
        schedule: NoiseSchedule,
        device: &Device,
    ) -> Self {
        Self {
            unet,
            meta,
            norm,
            history: TrainingHistory::default(),
            schedule,
            device: device.clone(),
            max_batch: None,
        }
    }

    /// Samples of `h`×`w` pixels per forward pass.
    pub(crate) fn batch_for(&self, h: usize, w: usize) -> usize {
        let budget = if self.device.is_cpu() {
            CPU_BATCH_PIXELS
        } else {
            GPU_BATCH_PIXELS
        };
        self.max_batch.unwrap_or(budget / (h * w).max(1)).max(1)
    }

    /// The trained tile size (the worker pads/crops to it).
    pub fn tile_size(&self) -> usize {
        self.meta.tile
    }

    /// Expected leading dims: `[bands]` or `[times, bands]` of the training scene. Tiles must have
    /// the same rank and band count; a `[time,band]` model accepts any number of dates.
    pub fn lead_shape(&self) -> &[usize] {
        &self.meta.lead_shape
    }

    /// Spatial tile sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        self.meta.unet.size_multiple()
    }

    /// Model metadata (config, schedule, tile, context dates).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Training provenance (steps, loss history, wall time).
    pub fn history(&self) -> &TrainingHistory {
        &self.history
    }

    /// Samples per forward pass (default: 65 536 pixels' worth on CPU, 4 M on a GPU); more uses
    /// more memory.
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = Some(n.max(1));
    }

    /// Checks that a scene of `shape` (`[y, x]`, `[band, y, x]` or `[time, band, y, x]`) has the
    /// layout and band count this model was trained on, so a mismatch is refused before any tile
    /// is planned.
    ///
    /// # Errors
    /// [`ModelError::Shape`] naming both layouts.
    pub fn check_scene_shape(&self, shape: &[usize]) -> Result<(), ModelError> {
        let mut shape = shape.to_vec();
        if shape.len() == 2 {
            shape.insert(0, 1);
        }
        let layout = Layout::from_shape(&shape, shape.iter().product())?;
        self.check_lead(&layout, "the scene")
    }

    /// Whether `layout`'s leading dims (band count; time axis or none) are the model's.
    fn check_lead(&self, layout: &Layout, what: &str) -> Result<(), ModelError> {
        let lead = layout.lead_shape();
        if lead.len() != self.meta.lead_shape.len() || layout.bands != self.meta.unet.data_channels
        {
            return Err(ModelError::Shape {
                what: format!(
                    "leading dims of {what} (model trained on {:?}, {} bands)",
                    self.meta.lead_shape, self.meta.unet.data_channels
                ),
                expected: self.meta.lead_shape.clone(),
                got: lead,
            });
        }
        Ok(())
    }

    fn check_tile(&self, i: usize, tile: &TileInput) -> Result<Layout, ModelError> {
        let layout = Layout::from_shape(&tile.shape, tile.values.len())?;
        self.check_lead(&layout, &format!("tile {i}"))?;
        let m = self.size_multiple();
        if layout.height % m != 0 || layout.width % m != 0 {
            return Err(ModelError::Shape {
                what: format!("tile {i} height and width (multiples of {m})"),
                expected: vec![self.meta.tile, self.meta.tile],
                got: vec![layout.height, layout.width],
            });
        }
        Ok(layout)
    }

    /// Fill the gaps (NaN) of every tile. For `[time,band,y,x]` tiles every date with a gap is
    /// filled, conditioned on the `context_dates` nearest other dates of the same tile.
    /// Tiles without gaps are returned unchanged without running the model.
    ///
    /// # Errors
    /// [`ModelError::Shape`] for a tile whose shape does not fit its values or the model,
    /// [`ModelError::Config`] for bad options, [`ModelError::Tensor`] for compute failures.
    pub fn fill(
        &self,
        tiles: &[TileInput],
        opts: &SampleOptions,
    ) -> Result<Vec<TileOutput>, ModelError> {
        opts.validate(self.schedule.len())?;
        let layouts = tiles
            .iter()
            .enumerate()
            .map(|(i, t)| self.check_tile(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let conditioning = tiles
            .iter()
            .zip(&layouts)
            .enumerate()
            .map(|(i, (t, l))| self.conditioning(i, t, l, opts.ensemble))
            .collect::<Result<Vec<_>, _>>()?;
        let mut jobs = Vec::new();
        for (ti, (tile, l)) in tiles.iter().zip(&layouts).enumerate() {
            for date in 0..l.times {
                let plane = &tile.values[l.plane_offset(date, 0)..][..l.bands * l.plane()];
                if plane.iter().any(|v| !v.is_finite()) {
                    let date_seed = mix(tile.seed, date as u64);
                    jobs.extend((0..opts.ensemble).map(|k| Job {
                        tile: ti,
                        date,
                        member: k,
                        seed: mix(date_seed, k as u64),
                    }));
                }
            }
        }
        // Samples per job, in job order; batches group jobs of equal tile size.
        let mut results: Vec<Option<Member>> = (0..jobs.len()).map(|_| None).collect();
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&j| (layouts[jobs[j].tile].height, layouts[jobs[j].tile].width));
        for group in order.chunk_by(|&a, &b| {
            let (la, lb) = (&layouts[jobs[a].tile], &layouts[jobs[b].tile]);
            (la.height, la.width) == (lb.height, lb.width)
        }) {
            let l = &layouts[jobs[group[0]].tile];
            for chunk in group.chunks(self.batch_for(l.height, l.width)) {
                let out = self.sample_chunk(
                    chunk.iter().map(|&j| &jobs[j]).collect(),
                    &layouts,
                    &conditioning,
                    opts.sampler,
                )?;
                for (&j, s) in chunk.iter().zip(out) {
                    results[j] = Some(s);
                }
            }
        }
        Ok(self.assemble(tiles, &layouts, &jobs, results, opts))
    }

    /// Tile `i`'s normalised values and prior, per member when it has
    /// [`TileInput::member_values`] (then `ensemble` of them).
    fn conditioning(
        &self,
        i: usize,
        tile: &TileInput,
        l: &Layout,
        ensemble: usize,
    ) -> Result<Conditioning, ModelError> {
        let normalise = |values: &[f32]| -> Vec<f32> {
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v.is_finite() {
                        self.norm.forward((i / l.plane()) % l.bands, v)
                    } else {
                        f32::NAN
                    }
                })
                .collect()
        };
        let z: Vec<Vec<f32>> = match &tile.member_values {
            None => vec![normalise(&tile.values)],
            Some(all) if all.len() == ensemble * tile.values.len() => all
                .chunks_exact(tile.values.len().max(1))
                .map(normalise)
                .collect(),
            Some(all) => {
                return Err(ModelError::Shape {
                    what: format!("member values of tile {i} ({ensemble} members)"),
                    expected: [vec![ensemble], tile.shape.clone()].concat(),
                    got: vec![all.len()],
                })
            }
        };
        let prior = z
            .iter()
            .map(|z| self.prior(i, tile, l, z))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Conditioning { z, prior })
    }

    /// The normalised prior of every plane of tile `i`: its known values where `z` has them,
    /// else the caller's where finite, else IDW from the tile's own known pixels.
    fn prior(
        &self,
        i: usize,
        tile: &TileInput,
        l: &Layout,
        z: &[f32],
    ) -> Result<Vec<f32>, ModelError> {
        let region = Window::new(0, 0, l.height as u64, l.width as u64);
        let mut out = Vec::with_capacity(z.len());
        for (p, plane) in z.chunks_exact(l.plane()).enumerate() {
            out.extend(idw_prior(plane, (l.height, l.width), None, &region));
            let Some(given) = &tile.prior else { continue };
            if given.len() != tile.values.len() {
                return Err(ModelError::Shape {
                    what: format!("prior of tile {i}"),
                    expected: tile.shape.clone(),
                    got: vec![given.len()],
                });
            }
            let band = p % l.bands;
            let start = p * l.plane();
            for ((o, &v), known) in out[start..]
                .iter_mut()
                .zip(&given[start..start + l.plane()])
                .zip(&z[start..start + l.plane()])
            {
                if v.is_finite() && !known.is_finite() {
                    *o = self.norm.forward(band, v);
                }
            }
        }
        Ok(out)
    }

    /// Sample one batch of jobs of equal tile size; returns each job's member (normalised values
    /// for the target date's bands).
    fn sample_chunk(
        &self,
        jobs: Vec<&Job>,
        layouts: &[Layout],
        conditioning: &[Conditioning],
        sampler: Sampler,
    ) -> Result<Vec<Member>, ModelError> {
        let l0 = layouts[jobs[0].tile];
        let (b, h, w) = (l0.bands, l0.height, l0.width);
        let per = b * h * w;
        let mut cond = Vec::new();
        let mut prior = Vec::with_capacity(jobs.len() * per);
        for job in &jobs {
            let l = &layouts[job.tile];
            let (z, priors) = conditioning[job.tile].of(job.member);
            let p = &priors[l.plane_offset(job.date, 0)..][..per];
            write_cond(
                l,
                z,
                job.date,
                self.meta.context_dates,
                (0, 0, h, w),
                None,
                p,
                &mut cond,
            );
            prior.extend_from_slice(p);
        }
        let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
        self.sample_stacks(cond, &prior, &seeds, (h, w), sampler)
    }

    /// Sample one member per seed from conditioning stacks `cond` (N·cond·H·W) with their priors
    /// (N·B·H·W, the stacks' last channels); returns each member's normalised values z = prior +
    /// scale · residual (B·H·W each), clamped to the band's observed range: its sample and its
    /// point estimate (see [`crate::sampler::Sampled`]).
    pub(crate) fn sample_stacks(
        &self,
        cond: Vec<f32>,
        prior: &[f32],
        seeds: &[u64],
        (h, w): (usize, usize),
        sampler: Sampler,
    ) -> Result<Vec<Member>, ModelError> {
        let (b, n) = (self.meta.unet.data_channels, seeds.len());
        let per = b * h * w;
        // Channels b..2b of each sample's stack are its gap mask (1 = missing).
        let cc = self.meta.unet.cond_channels;
        let mut known = Vec::with_capacity(n * per);
        for s in cond.chunks_exact(cc * h * w) {
            known.extend(s[per..2 * per].iter().map(|m| 1.0 - m));
        }
        // The residual's clip range follows from the band's: (lo − prior) / scale.
        let scale = &self.meta.residual_scale;
        let (mut lo, mut hi) = (Vec::with_capacity(n * per), Vec::with_capacity(n * per));
        for (i, &p) in prior.iter().enumerate() {
            let band = (i / (h * w)) % b;
            let (l, u) = self.norm.clip_range(band);
            lo.push(((f64::from(l) - f64::from(p)) / scale[band]) as f32);
            hi.push(((f64::from(u) - f64::from(p)) / scale[band]) as f32);
        }
        let dev = &self.device;
        let tensors = (|| -> candle_core::Result<_> {
            Ok((
                Tensor::from_vec(cond, (n, cc, h, w), dev)?,
                Tensor::zeros((n, b, h, w), DType::F32, dev)?,
                Tensor::from_vec(known, (n, b, h, w), dev)?,
                Tensor::from_vec(lo, (n, b, h, w), dev)?,
                Tensor::from_vec(hi, (n, b, h, w), dev)?,
            ))
        })()
        .ctx("preparing a sampling batch")?;
        let (cond, zeros, mask, lo, hi) = tensors;
        let mut noise = Noise::new(seeds, [b, h, w]);
        let known = Known {
            mask: &mask,
            values: &zeros,
            clip: Some((&lo, &hi)),
        };
        let mut eps = |x: &candle_core::Tensor, t: usize| {
            predict_eps(&self.unet, &self.schedule, x, &cond, t)
        };
        let out = sample(&self.schedule, sampler, &known, &mut noise, &mut eps).ctx("sampling")?;
        let range: Vec<(f32, f32)> = (0..b).map(|band| self.norm.observed_range(band)).collect();
        // z = prior + scale · residual, clamped to the band's range; one Vec per member.
        let values = |r: &Tensor| -> Result<Vec<Vec<f32>>, ModelError> {
            let flat: Vec<f32> = r
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .ctx("reading samples")?;
            let z: Vec<f32> = flat
                .iter()
                .zip(prior)
                .enumerate()
                .map(|(i, (&r, &p))| {
                    let band = (i / (h * w)) % b;
                    let (lo, hi) = range[band];
                    ((f64::from(p) + f64::from(r) * scale[band]) as f32).clamp(lo, hi)
                })
                .collect();
            Ok(z.chunks_exact(per).map(<[f32]>::to_vec).collect())
        };
        Ok(values(&out.sample)?
            .into_iter()
            .zip(values(&out.estimate)?)
            .map(|(sample, estimate)| Member { sample, estimate })
            .collect())
    }

    /// Turn members into outputs: observed pixels copied; gaps = the mean of the members' point
    /// estimates (or the chosen member's sample); spread = the samples' calibrated standard
    /// deviation; members (when kept) = that point estimate plus each sample's calibrated
    /// deviation from the samples' mean.
    fn assemble(
        &self,
        tiles: &[TileInput],
        layouts: &[Layout],
        jobs: &[Job],
        results: Vec<Option<Member>>,
        opts: &SampleOptions,
    ) -> Vec<TileOutput> {
        let mut outs: Vec<TileOutput> = tiles
            .iter()
            .map(|t| TileOutput {
                values: t.values.clone(),
                spread: vec![0.0; t.values.len()],
                members: if opts.keep_members {
                    t.values.repeat(opts.ensemble)
                } else {
                    Vec::new()
                },
            })
            .collect();
        let k = opts.ensemble;
        let (min, max) = (&self.norm.min, &self.norm.max);
        for (members, group) in jobs.chunks_exact(k).zip(results.chunks_exact(k)) {
            let (ti, date) = (members[0].tile, members[0].date);
            let l = &layouts[ti];
            let samples: Vec<&Member> = group.iter().filter_map(Option::as_ref).collect();
            if samples.len() != k {
                continue; // unreachable: every job was sampled
            }
            let out = &mut outs[ti];
            for band in 0..l.bands {
                let base = l.plane_offset(date, band);
                for p in 0..l.plane() {
                    if tiles[ti].values[base + p].is_finite() {
                        continue;
                    }
                    let at = band * l.plane() + p;
                    let denorm = |z: f32| f64::from(self.norm.inverse(band, z));
                    let vals: Vec<f64> = samples.iter().map(|s| denorm(s.sample[at])).collect();
                    let mean = vals.iter().sum::<f64>() / k as f64;
                    let var = if k > 1 {
                        vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64
                    } else {
                        0.0
                    };
                    let estimate =
                        samples.iter().map(|s| denorm(s.estimate[at])).sum::<f64>() / k as f64;
                    let kappa = self.meta.spread_scale[band];
                    out.values[base + p] = opts.member.map_or(estimate, |m| vals[m]) as f32;
                    out.spread[base + p] = (var.sqrt() * kappa) as f32;
                    if opts.keep_members {
                        let n = out.values.len();
                        for (m, v) in vals.iter().enumerate() {
                            let member =
                                (estimate + kappa * (v - mean)).clamp(min[band], max[band]);
                            out.members[m * n + base + p] = member as f32;
                        }
                    }
                }
            }
        }
        outs
    }
}
