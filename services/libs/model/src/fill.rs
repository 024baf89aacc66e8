//! The model API the worker calls: a batch of tiles in, filled tiles with ensemble spread out.

use candle_core::{DType, Device, Tensor};

use crate::checkpoint::{Checkpoint, ModelMeta, TrainingHistory};
use crate::denoise::predict_eps;
use crate::error::TensorContext;
use crate::layout::{write_cond, Layout};
use crate::normalise::Normalisation;
use crate::sampler::{sample, Known, Noise, SampleOptions, Sampler};
use crate::schedule::NoiseSchedule;
use crate::seed::mix;
use crate::unet::UNet;
use crate::ModelError;

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
}

/// A filled tile.
#[derive(Debug, Clone, PartialEq)]
pub struct TileOutput {
    /// Ensemble mean (or the chosen member) in gaps; observed pixels bit-identical to the input.
    pub values: Vec<f32>,
    /// Standard deviation over members (K−1 denominator; 0 when K = 1), 0 on observed pixels.
    pub spread: Vec<f32>,
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
    max_batch: usize,
}

/// One (tile, date, member) to sample.
struct Job {
    tile: usize,
    date: usize,
    seed: u64,
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
            max_batch: 32,
        })
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

    /// Samples per forward pass (default 32); more uses more memory.
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.max(1);
    }

    fn check_tile(&self, i: usize, tile: &TileInput) -> Result<Layout, ModelError> {
        let layout = Layout::from_shape(&tile.shape, tile.values.len())?;
        let lead = layout.lead_shape();
        if lead.len() != self.meta.lead_shape.len() || layout.bands != self.meta.unet.data_channels
        {
            return Err(ModelError::Shape {
                what: format!(
                    "leading dims of tile {i} (model trained on {:?})",
                    self.meta.lead_shape
                ),
                expected: self.meta.lead_shape.clone(),
                got: lead,
            });
        }
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
        let z: Vec<Vec<f32>> = tiles
            .iter()
            .zip(&layouts)
            .map(|(t, l)| {
                t.values
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
            })
            .collect();
        let mut jobs = Vec::new();
        for (ti, (tile, l)) in tiles.iter().zip(&layouts).enumerate() {
            for date in 0..l.times {
                let plane = &tile.values[l.plane_offset(date, 0)..][..l.bands * l.plane()];
                if plane.iter().any(|v| !v.is_finite()) {
                    let date_seed = mix(tile.seed, date as u64);
                    jobs.extend((0..opts.ensemble).map(|k| Job {
                        tile: ti,
                        date,
                        seed: mix(date_seed, k as u64),
                    }));
                }
            }
        }
        // Samples per job, in job order; batches group jobs of equal tile size.
        let mut results: Vec<Option<Vec<f32>>> = (0..jobs.len()).map(|_| None).collect();
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&j| (layouts[jobs[j].tile].height, layouts[jobs[j].tile].width));
        for group in order.chunk_by(|&a, &b| {
            let (la, lb) = (&layouts[jobs[a].tile], &layouts[jobs[b].tile]);
            (la.height, la.width) == (lb.height, lb.width)
        }) {
            for chunk in group.chunks(self.max_batch) {
                let out = self.sample_chunk(
                    chunk.iter().map(|&j| &jobs[j]).collect(),
                    &layouts,
                    &z,
                    opts.sampler,
                )?;
                for (&j, s) in chunk.iter().zip(out) {
                    results[j] = Some(s);
                }
            }
        }
        Ok(self.assemble(tiles, &layouts, &jobs, results, opts))
    }

    fn sample_chunk(
        &self,
        jobs: Vec<&Job>,
        layouts: &[Layout],
        z: &[Vec<f32>],
        sampler: Sampler,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let l0 = layouts[jobs[0].tile];
        let (b, h, w, n) = (l0.bands, l0.height, l0.width, jobs.len());
        let mut cond = Vec::new();
        for job in &jobs {
            write_cond(
                &layouts[job.tile],
                &z[job.tile],
                job.date,
                self.meta.context_dates,
                (0, 0, h, w),
                None,
                &mut cond,
            );
        }
        // The first 2·B channels of each sample's stack are its observed values and gap mask.
        let cc = self.meta.unet.cond_channels;
        let per = b * h * w;
        let mut values = Vec::with_capacity(n * per);
        let mut known = Vec::with_capacity(n * per);
        for s in cond.chunks_exact(cc * h * w) {
            values.extend_from_slice(&s[..per]);
            known.extend(s[per..2 * per].iter().map(|m| 1.0 - m));
        }
        let dev = &self.device;
        let (lo, hi): (Vec<f32>, Vec<f32>) = (0..b).map(|band| self.norm.clip_range(band)).unzip();
        let tensors = (|| -> candle_core::Result<_> {
            Ok((
                Tensor::from_vec(cond, (n, cc, h, w), dev)?,
                Tensor::from_vec(values, (n, b, h, w), dev)?,
                Tensor::from_vec(known, (n, b, h, w), dev)?,
                Tensor::from_vec(lo, (1, b, 1, 1), dev)?,
                Tensor::from_vec(hi, (1, b, 1, 1), dev)?,
            ))
        })()
        .ctx("preparing a sampling batch")?;
        let (cond, values, mask, lo, hi) = tensors;
        let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
        let mut noise = Noise::new(&seeds, [b, h, w]);
        let known = Known {
            mask: &mask,
            values: &values,
            clip: Some((&lo, &hi)),
        };
        let mut eps = |x: &candle_core::Tensor, t: usize| {
            predict_eps(&self.unet, x, &cond, &vec![t as u32; n])
        };
        let x0 = sample(&self.schedule, sampler, &known, &mut noise, &mut eps).ctx("sampling")?;
        let flat: Vec<f32> = x0
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .ctx("reading samples")?;
        Ok(flat.chunks_exact(per).map(<[f32]>::to_vec).collect())
    }

    /// Turn member samples into outputs: observed pixels copied, gaps = mean (or the chosen
    /// member) of the denormalised members, spread = their standard deviation.
    fn assemble(
        &self,
        tiles: &[TileInput],
        layouts: &[Layout],
        jobs: &[Job],
        results: Vec<Option<Vec<f32>>>,
        opts: &SampleOptions,
    ) -> Vec<TileOutput> {
        let mut outs: Vec<TileOutput> = tiles
            .iter()
            .map(|t| TileOutput {
                values: t.values.clone(),
                spread: vec![0.0; t.values.len()],
            })
            .collect();
        let k = opts.ensemble;
        for (members, group) in jobs.chunks_exact(k).zip(results.chunks_exact(k)) {
            let (ti, date) = (members[0].tile, members[0].date);
            let l = &layouts[ti];
            let samples: Vec<&[f32]> = group.iter().filter_map(|s| s.as_deref()).collect();
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
                    let vals: Vec<f64> = samples
                        .iter()
                        .map(|s| f64::from(self.norm.inverse(band, s[band * l.plane() + p])))
                        .collect();
                    let mean = vals.iter().sum::<f64>() / k as f64;
                    let var = if k > 1 {
                        vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64
                    } else {
                        0.0
                    };
                    out.values[base + p] = opts.member.map_or(mean, |m| vals[m]) as f32;
                    out.spread[base + p] = var.sqrt() as f32;
                }
            }
        }
        outs
    }
}
