//! Self-supervised training on a scene's own observed pixels: v-prediction
//! L = ‖v − v_θ(√ᾱ_t r_0 + √(1−ᾱ_t) ε, t, cond)‖² with v = √ᾱ_t ε − √(1−ᾱ_t) r_0 (see
//! [`crate::denoise`]), where r_0 is the scaled residual of the interpolation prior
//! ([`crate::prior`]), averaged over the synthetic-gap pixels whose truth is observed.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::calibrate;
use crate::checkpoint::{
    vars_of, Checkpoint, HostTensor, ModelMeta, TrainingHistory, ADAM_M, ADAM_V, MODEL_PREFIX,
};
use crate::corpus::Corpus;
use crate::dataset::Dataset;
use crate::denoise::predict_v;
use crate::error::TensorContext;
use crate::fill::FillModel;
use crate::layout::Layout;
use crate::normalise::Normalisation;
use crate::optim::AdamW;
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::seed::mix;
use crate::unet::{UNet, UNetConfig};
use crate::ModelError;

/// Training settings. `Default` is the `small` preset (the original 0.2 M-parameter net); users
/// get [`crate::Preset::for_device`]'s config (see the crate README for measurements).
/// Serialised (JSON), it is what a training coordinator sends its workers: unknown fields are
/// refused, so a worker never trains with settings it cannot honour.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Total optimiser steps; a resumed run continues until the checkpoint has this many.
    pub steps: usize,
    /// Tile size (pixels per side), a multiple of the UNet's `size_multiple`.
    pub tile: usize,
    /// Tiles per step.
    pub batch: usize,
    /// Peak learning rate (linear warm-up over the first 5 % of steps, cosine decay to 10 %).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Seed for initialisation and batches (step k's batch depends only on (seed, k)).
    pub seed: u64,
    /// Network sizes; `data_channels` and `cond_channels` are overwritten from the scene.
    pub unet: UNetConfig,
    /// Noise schedule.
    pub schedule: ScheduleConfig,
    /// For `[time,band,y,x]` scenes: other dates used as context (the nearest ones).
    pub context_dates: usize,
    /// Minimum observed fraction of a training window.
    pub min_observed: f32,
    /// Steps per entry of the loss history.
    pub log_every: usize,
    /// Keep the AdamW moments in the checkpoint (3× the size; exact resume).
    pub save_optimizer: bool,
    /// Held-out windows filled at the end to fit the spread calibration (0: no calibration,
    /// κ = 1; see the `calibrate` module).
    pub calibration_windows: usize,
    /// Fraction of each batch trained at the last timestep T−1, where the fill reads its point
    /// estimate (x̂_0 from pure noise is a regression on the conditioning; uniform t puts about
    /// 1/T of the samples there). Rounded to whole samples; 0 keeps t uniform.
    pub estimate_share: f64,
    /// Name of the [`crate::Preset`] this config came from, stored in the checkpoint.
    pub preset: Option<String>,
    /// Fraction of training windows hidden whole (no observed pixel, prior = band mean), so the
    /// model learns to start a field from nothing: what `generate` needs. 0 (the default) trains
    /// as before, bit for bit.
    #[serde(default)]
    pub blank_share: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 800,
            tile: 32,
            batch: 16,
            lr: 2e-3,
            weight_decay: 1e-4,
            seed: 0,
            unet: UNetConfig::default(),
            schedule: ScheduleConfig::default(),
            context_dates: 2,
            min_observed: 0.9,
            log_every: 10,
            save_optimizer: true,
            calibration_windows: 32,
            estimate_share: 0.0,
            preset: None,
            blank_share: 0.0,
        }
    }
}

impl TrainConfig {
    /// Shrinks the tile to the largest the UNet takes (a multiple of its size multiple) that fits
    /// a `height` × `width` scene, when the configured one does not; returns the new tile. A
    /// preset's tile is a default, and a scene smaller than it (ERA5 over a country at 0.25°,
    /// 33 × 49) must still train.
    pub fn fit_tile(&mut self, height: usize, width: usize) -> Option<usize> {
        let m = self.unet.size_multiple();
        let fits = height.min(width) / m * m;
        (self.tile > height.min(width) && fits > 0).then(|| {
            self.tile = fits;
            fits
        })
    }
}

/// Training windows drawn to measure the residual scale before the first step.
const RESIDUAL_SCALE_SAMPLES: usize = 256;
/// RNG stream of that measurement (batches use streams 0..steps).
const RESIDUAL_SCALE_STREAM: u64 = u64::MAX;

/// Reported after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainProgress {
    /// Steps done (1-based).
    pub step: usize,
    /// Total steps.
    pub steps: usize,
    /// This step's loss.
    pub loss: f32,
}

/// Learning rate at `step` of `total`: linear warm-up, then cosine decay to 10 % of `peak`.
fn learning_rate(peak: f64, step: usize, total: usize) -> f64 {
    let warm = (total / 20).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let p = (step - warm) as f64 / (total - warm).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
}

/// Seeded initialisation: weights N(0, 1/fan_in), biases 0, norm scales 1, output conv 0 (so the
/// untrained net predicts v̂ = 0, i.e. x̂_0 = √ᾱ_t x_t).
fn init_vars(vm: &VarMap, seed: u64) -> Result<(), ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 0x1417));
    for (name, var) in vars_of(vm)? {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if name.starts_with("conv_out.") || name.ends_with("bias") {
            vec![0.0; n]
        } else if dims.len() == 1 {
            vec![1.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let normal =
                Normal::new(0.0, (1.0 / fan_in as f64).sqrt()).map_err(|e| ModelError::Config {
                    field: "init",
                    reason: e.to_string(),
                })?;
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        };
        var.set(&Tensor::from_vec(data, dims, var.device()).ctx("initialising weights")?)
            .ctx("initialising weights")?;
    }
    Ok(())
}

/// Train (or resume training) a fill model on `corpus` (one or several scenes with the same bands and
/// rank; windows are drawn from all of them) and return the checkpoint bytes.
///
/// # Errors
/// Bad shapes or configs, scenes that do not agree, a checkpoint that does not match them, no
/// observed windows, tensor failures, and a non-finite loss ([`ModelError::Diverged`]).
pub fn train(
    corpus: &Corpus,
    cfg: &TrainConfig,
    resume: Option<&[u8]>,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<Vec<u8>, ModelError> {
    let mut session = Session::open(corpus, cfg, resume, device)?;
    session.run(cfg.steps, cfg.steps, &|step| step as u64, progress)?;
    session.finish(cfg.calibration_windows, cfg.save_optimizer)
}

/// A training run in memory: the scene normalised, the network's variables, the optimiser and
/// the checkpoint's metadata. Plain training and the shards of [`crate::rounds`] run the same
/// steps through it.
pub(crate) struct Session<'s> {
    cfg: &'s TrainConfig,
    /// The training windows, read from the corpus as they are drawn.
    data: Dataset<'s>,
    pub(crate) meta: ModelMeta,
    pub(crate) norm: Normalisation,
    pub(crate) history: TrainingHistory,
    unet: UNet,
    vars: BTreeMap<String, candle_core::Var>,
    opt: AdamW,
    device: Device,
    started: Instant,
}

impl<'s> Session<'s> {
    /// Set up from a fresh initialisation (`resume` = `None`) or from checkpoint bytes, whose
    /// normalisation, scales and moments are kept.
    pub(crate) fn open(
        corpus: &'s Corpus,
        cfg: &'s TrainConfig,
        resume: Option<&[u8]>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let prior = resume.map(Checkpoint::decode).transpose()?;
        let (meta, norm, mut history) = match &prior {
            Some(c) => {
                if c.meta.lead_shape.len() != corpus.lead_shape().len()
                    || c.meta.unet.data_channels != corpus.bands()
                {
                    return Err(ModelError::Shape {
                        what: "scene lead dims vs the resumed checkpoint".into(),
                        expected: c.meta.lead_shape.clone(),
                        got: corpus.lead_shape(),
                    });
                }
                (c.meta.clone(), c.norm.clone(), c.history.clone())
            }
            None => fresh(corpus, cfg)?,
        };
        if cfg.batch == 0 || cfg.log_every == 0 {
            return Err(ModelError::Config {
                field: "batch",
                reason: "batch and log_every must be positive".into(),
            });
        }
        if !(0.0..=1.0).contains(&cfg.estimate_share) {
            return Err(ModelError::Config {
                field: "estimate_share",
                reason: format!("must be in [0, 1], got {}", cfg.estimate_share),
            });
        }
        if !(0.0..1.0).contains(&cfg.blank_share) {
            return Err(ModelError::Config {
                field: "blank_share",
                reason: format!("must be in [0, 1), got {}", cfg.blank_share),
            });
        }
        history.target_steps = cfg.steps;
        history.blank_share = cfg.blank_share;
        let data = Dataset::new(
            corpus,
            norm.clone(),
            meta.tile,
            meta.context_dates,
            cfg.min_observed,
        )?;
        let mut meta = meta;
        if meta.residual_scale.is_empty() {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(history.seed, RESIDUAL_SCALE_STREAM));
            meta.residual_scale = data.residual_scale(RESIDUAL_SCALE_SAMPLES, &mut rng)?;
        }
        let data = data.with_blank_share(cfg.blank_share);

        let vm = VarMap::new();
        let unet = UNet::new(VarBuilder::from_varmap(&vm, DType::F32, device), &meta.unet)?;
        let vars = vars_of(&vm)?;
        let mut moments = BTreeMap::new();
        match &prior {
            Some(c) => {
                for (name, var) in &vars {
                    let w = c
                        .tensors
                        .get(&format!("{MODEL_PREFIX}{name}"))
                        .ok_or_else(|| ModelError::CheckpointContent {
                            reason: format!("weight '{name}' is missing"),
                        })?;
                    var.set(&w.to_tensor(device)?)
                        .ctx("loading weights to resume")?;
                    if let (Some(m), Some(v)) = (
                        c.tensors.get(&format!("{ADAM_M}{name}")),
                        c.tensors.get(&format!("{ADAM_V}{name}")),
                    ) {
                        moments.insert(name.clone(), (m.to_tensor(device)?, v.to_tensor(device)?));
                    }
                }
            }
            None => init_vars(&vm, cfg.seed)?,
        }
        let opt = AdamW::new(vars.clone(), moments, history.step, cfg.weight_decay, 1.0)
            .ctx("creating the optimiser")?;
        Ok(Self {
            cfg,
            data,
            meta,
            norm,
            history,
            unet,
            vars,
            opt,
            device: device.clone(),
            started: Instant::now(),
        })
    }

    /// Optimiser steps from the current one up to `until`, on the learning-rate schedule of a
    /// run of `total` steps; step k's batch comes from stream `stream(k)` of the run's seed.
    pub(crate) fn run(
        &mut self,
        until: usize,
        total: usize,
        stream: &dyn Fn(usize) -> u64,
        progress: &mut dyn FnMut(&TrainProgress),
    ) -> Result<(), ModelError> {
        let cfg = self.cfg;
        let data = &self.data;
        let schedule = NoiseSchedule::new(&self.meta.schedule)?;
        let estimate_samples = (cfg.estimate_share * cfg.batch as f64).round() as usize;
        let (s, b, n) = (self.meta.tile, self.meta.unet.data_channels, cfg.batch);
        let (unet, device, history) = (&self.unet, &self.device, &mut self.history);
        let mut acc = (0f64, 0usize);
        for step in history.step..until {
            let batch = data.batch(
                n,
                estimate_samples,
                &schedule,
                &self.meta.residual_scale,
                mix(history.seed, stream(step)),
            )?;
            let loss = (|| -> candle_core::Result<Tensor> {
                let x_t = Tensor::from_vec(batch.x_t, (n, b, s, s), device)?;
                let cond =
                    Tensor::from_vec(batch.cond, (n, self.meta.unet.cond_channels, s, s), device)?;
                let v = Tensor::from_vec(batch.v, (n, b, s, s), device)?;
                let w = Tensor::from_vec(batch.weight, (n, b, s, s), device)?;
                let pred = predict_v(unet, &x_t, &cond, &batch.t)?;
                let denom = w.sum_all()?.to_scalar::<f32>()?.max(1.0);
                ((pred - v)?.sqr()? * w)?.sum_all()? / f64::from(denom)
            })()
            .ctx("computing the training loss")?;
            let value = loss.to_scalar::<f32>().ctx("reading the loss")?;
            if !value.is_finite() {
                return Err(ModelError::Diverged { step, loss: value });
            }
            let grads = loss.backward().ctx("backpropagating")?;
            self.opt
                .step(&grads, learning_rate(history.lr, step, total))
                .ctx("updating weights")?;
            acc = (acc.0 + f64::from(value), acc.1 + 1);
            history.step = step + 1;
            if history.step % cfg.log_every == 0 || history.step == until {
                history
                    .loss
                    .push((history.step, (acc.0 / acc.1 as f64) as f32));
                acc = (0.0, 0);
            }
            progress(&TrainProgress {
                step: history.step,
                steps: total,
                loss: value,
            });
        }
        Ok(())
    }

    /// Fit the spread calibration on `calibration_windows` held-out windows (none: κ = 1) and
    /// encode the checkpoint, with the optimiser's moments if `save_optimizer`.
    pub(crate) fn finish(
        self,
        calibration_windows: usize,
        save_optimizer: bool,
    ) -> Result<Vec<u8>, ModelError> {
        let Self {
            cfg: _,
            data,
            mut meta,
            norm,
            mut history,
            unet,
            vars,
            opt,
            device,
            started,
        } = self;
        // The calibration samples with a copy of the weights that autograd does not track:
        // sampling with the training variables themselves keeps every forward's graph alive
        // (this grew the RSS by ~170 MB/s until the OOM killer stopped `train`).
        drop(unet);
        let frozen = vars
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect();
        let unet = UNet::new(
            VarBuilder::from_tensors(frozen, DType::F32, &device),
            &meta.unet,
        )?;
        let model = FillModel::from_parts(
            unet,
            meta.clone(),
            norm.clone(),
            NoiseSchedule::new(&meta.schedule)?,
            &device,
        );
        // Calibrated on ordinary gaps: a blank window's spread is the field's own variability.
        let data = data.with_blank_share(0.0);
        meta.spread_scale =
            calibrate::spread_scale(&model, &data, history.seed, calibration_windows)?;
        history.wall_seconds += started.elapsed().as_secs_f64();

        let mut tensors = BTreeMap::new();
        for (name, var) in &vars {
            tensors.insert(
                format!("{MODEL_PREFIX}{name}"),
                HostTensor::from_tensor(var.as_tensor())?,
            );
        }
        if save_optimizer {
            for (name, m, v) in opt.moments() {
                tensors.insert(format!("{ADAM_M}{name}"), HostTensor::from_tensor(m)?);
                tensors.insert(format!("{ADAM_V}{name}"), HostTensor::from_tensor(v)?);
            }
        }
        Checkpoint {
            meta,
            norm,
            history,
            tensors,
        }
        .encode()
    }
}

/// Metadata, normalisation and history of a new model for `corpus` (residual scale still empty).
fn fresh(
    corpus: &Corpus,
    cfg: &TrainConfig,
) -> Result<(ModelMeta, Normalisation, TrainingHistory), ModelError> {
    let lead_shape = corpus.lead_shape();
    let bands = corpus.bands();
    // Context dates every scene has.
    let context_dates = match lead_shape[..] {
        [times, _] => cfg.context_dates.min(times - 1),
        _ => 0,
    };
    let unet = UNetConfig {
        data_channels: bands,
        cond_channels: Layout::cond_channels(bands, context_dates),
        ..cfg.unet.clone()
    };
    unet.validate()?;
    if cfg.tile == 0 || cfg.tile % unet.size_multiple() != 0 {
        return Err(ModelError::Config {
            field: "tile",
            reason: format!(
                "{} is not a positive multiple of {}",
                cfg.tile,
                unet.size_multiple()
            ),
        });
    }
    let meta = ModelMeta {
        unet,
        schedule: cfg.schedule,
        tile: cfg.tile,
        lead_shape,
        context_dates,
        residual_scale: Vec::new(),
        spread_scale: Vec::new(),
    };
    let norm = corpus.scan(cfg.tile, cfg.min_observed)?.stats.clone();
    let history = TrainingHistory {
        seed: cfg.seed,
        lr: cfg.lr,
        batch: cfg.batch,
        preset: cfg.preset.clone(),
        ..Default::default()
    };
    Ok((meta, norm, history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_and_decays() {
        assert!(learning_rate(1.0, 0, 100) < 0.5);
        assert!((learning_rate(1.0, 5, 100) - 1.0).abs() < 1e-9);
        assert!((learning_rate(1.0, 100, 100) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_tile_larger_than_the_scene_shrinks_to_a_multiple_the_unet_takes() {
        let mut cfg = crate::Preset::Base.train_config();
        assert_eq!(cfg.tile, 64);
        assert_eq!(cfg.fit_tile(700, 64), None);
        assert_eq!(cfg.fit_tile(33, 49), Some(32));
        assert_eq!(cfg.tile, 32);
        assert_eq!(cfg.tile % cfg.unet.size_multiple(), 0);
        // Nothing fits a scene under one size multiple: the dataset reports it.
        assert_eq!(cfg.fit_tile(5, 5), None);
    }
}
