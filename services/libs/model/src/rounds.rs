//! Rounds of local SGD over shards: the DiLoCo recipe (Douillard et al. 2023, "DiLoCo:
//! Distributed Low-Communication Training of Language Models").
//!
//! Each round every shard trains H AdamW steps from the same version θ_v on batches of its own;
//! the outer step treats the shard-averaged change Δ = θ_v − mean_s θ_s as a gradient for
//! Nesterov momentum: u ← μ·u + Δ, θ_{v+1} = θ_v − η·(Δ + μ·u). It is computed as
//! mean − (η − 1)·Δ − η·μ·u, so that η = 1, μ = 0 gives the shards' mean exactly (one shard: its
//! weights bit for bit, i.e. plain training). The AdamW moments of a version are the mean of its
//! shards' moments; u is stored in the version (`outer.u.*`).
//!
//! - Version 0 ([`initial_version`]) fixes what every shard must agree on: the initial weights,
//!   the normalisation and the residual scale (all from the scene, as plain training does).
//! - Shard s of N at global inner step k draws its batch from stream k·N + s of the run's seed,
//!   so the shards of a round never share a batch and one shard draws plain training's batches;
//!   the learning-rate schedule runs over the R·H inner steps of the whole run.
//! - Averaging goes in shard-index order, never arrival order, in f64: the same results give the
//!   same version bytes. A shard result names its version by digest ([`RoundsState::parent`]);
//!   one from another version, job or shard is refused ([`ModelError::ShardMismatch`]).
//! - Spread calibration runs once, on the last version ([`finish`]).

use std::collections::BTreeMap;

use candle_core::Device;

use crate::checkpoint::{
    Checkpoint, HostTensor, RoundsState, TrainingHistory, ADAM_M, ADAM_V, MODEL_PREFIX, OUTER_U,
};
use crate::corpus::Corpus;
use crate::seed::mix;
use crate::train::{Session, TrainConfig, TrainProgress};
use crate::ModelError;

/// The outer optimiser of a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OuterConfig {
    /// Outer learning rate η.
    pub lr: f64,
    /// Nesterov momentum μ.
    pub momentum: f64,
}

impl Default for OuterConfig {
    /// DiLoCo's η = 0.7, μ = 0.9.
    fn default() -> Self {
        Self {
            lr: 0.7,
            momentum: 0.9,
        }
    }
}

/// One shard of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardTask {
    /// Shard index (0..shards).
    pub shard: usize,
    /// Shards per round.
    pub shards: usize,
    /// Inner steps H.
    pub inner_steps: usize,
}

impl ShardTask {
    fn check(&self) -> Result<(), ModelError> {
        if self.shards == 0 || self.shard >= self.shards || self.inner_steps == 0 {
            return Err(ModelError::Config {
                field: "shard",
                reason: format!(
                    "shard {} of {} with {} inner steps: needs shard < shards and H > 0",
                    self.shard, self.shards, self.inner_steps
                ),
            });
        }
        Ok(())
    }
}

/// Version 0 of a run on `corpus`: initial weights, normalisation and residual scale.
/// `cfg.steps` is the run's total of inner steps (R·H).
///
/// # Errors
/// As [`crate::train()`].
pub fn initial_version(
    corpus: &Corpus,
    cfg: &TrainConfig,
    shards: usize,
    inner_steps: usize,
    device: &Device,
) -> Result<Vec<u8>, ModelError> {
    let mut session = Session::open(corpus, cfg, None, device)?;
    session.history.rounds = Some(RoundsState {
        version: 0,
        shards,
        inner_steps,
        shard: None,
        parent: None,
    });
    session.finish(0, true)
}

/// Train shard `task` for H steps from `version` (checkpoint bytes) and return its result
/// (weights and moments, naming the version by digest).
///
/// # Errors
/// A version that does not decode or is not a rounds version, a task that does not fit it, and
/// everything [`crate::train()`] reports.
pub fn train_shard(
    corpus: &Corpus,
    cfg: &TrainConfig,
    version: &[u8],
    task: &ShardTask,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<Vec<u8>, ModelError> {
    task.check()?;
    let parent = Checkpoint::decode(version)?;
    let state = version_state(&parent)?;
    if state.shards != task.shards || state.inner_steps != task.inner_steps {
        return Err(ModelError::Config {
            field: "shard",
            reason: format!(
                "the task asks for {} shards of {} steps, the run has {} of {}",
                task.shards, task.inner_steps, state.shards, state.inner_steps
            ),
        });
    }
    let mut session = Session::open(corpus, cfg, Some(version), device)?;
    let until = session.history.step + task.inner_steps;
    if until > cfg.steps {
        return Err(ModelError::Config {
            field: "steps",
            reason: format!(
                "a round from step {} would end at {until}, past the run's {} steps",
                session.history.step, cfg.steps
            ),
        });
    }
    let (n, s) = (task.shards as u64, task.shard as u64);
    session.run(until, cfg.steps, &|k| k as u64 * n + s, progress)?;
    session.history.rounds = Some(RoundsState {
        shard: Some(task.shard),
        parent: Some(digest(&parent)),
        ..state
    });
    session.finish(0, true)
}

/// The next version: `version` moved by the outer step on `results` (shard 0, 1, … in order).
///
/// # Errors
/// Undecodable bytes, and [`ModelError::ShardMismatch`] for a result that was not trained from
/// `version` as that shard.
pub fn average(
    version: &[u8],
    results: &[Vec<u8>],
    outer: &OuterConfig,
) -> Result<Vec<u8>, ModelError> {
    let mut next = Checkpoint::decode(version)?;
    let state = version_state(&next)?;
    if results.len() != state.shards {
        return Err(ModelError::Config {
            field: "shards",
            reason: format!(
                "{} shard results for a round of {} shards",
                results.len(),
                state.shards
            ),
        });
    }
    let parent = digest(&next);
    let shards = results
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let c = Checkpoint::decode(bytes).map_err(|e| ModelError::ShardMismatch {
                shard: i,
                reason: e.to_string(),
            })?;
            check_result(&next, &parent, i, &c)?;
            Ok(c)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;

    let n = shards.len() as f64;
    let weights: Vec<String> = next
        .tensors
        .keys()
        .filter(|k| k.starts_with(MODEL_PREFIX))
        .cloned()
        .collect();
    let (lr, mu) = (outer.lr, outer.momentum);
    for name in &weights {
        let avg = shard_mean(&shards, name)?;
        let momentum_key = format!("{OUTER_U}{}", &name[MODEL_PREFIX.len()..]);
        let theta = &next.tensors[name];
        let shape = theta.shape.clone();
        let prev_u = next.tensors.get(&momentum_key).map(|t| t.data.clone());
        let (mut new_theta, mut new_u) = (Vec::with_capacity(avg.len()), Vec::new());
        for (i, (&m, &t)) in avg.iter().zip(&theta.data).enumerate() {
            let delta = f64::from(t) - m;
            let u = mu * prev_u.as_ref().map_or(0.0, |u| f64::from(u[i])) + delta;
            new_theta.push((m - (lr - 1.0) * delta - lr * mu * u) as f32);
            new_u.push(u as f32);
        }
        next.tensors.insert(
            name.clone(),
            HostTensor {
                shape: shape.clone(),
                data: new_theta,
            },
        );
        next.tensors
            .insert(momentum_key, HostTensor { shape, data: new_u });
    }
    let moments: Vec<String> = shards[0]
        .tensors
        .keys()
        .filter(|k| k.starts_with(ADAM_M) || k.starts_with(ADAM_V))
        .cloned()
        .collect();
    for name in moments {
        let shape = shards[0].tensors[&name].shape.clone();
        let data = shard_mean(&shards, &name)?
            .into_iter()
            .map(|a| a as f32)
            .collect();
        next.tensors.insert(name, HostTensor { shape, data });
    }

    let first = &shards[0].history;
    let mut loss = next.history.loss.clone();
    for (j, &(step, _)) in first.loss.iter().enumerate().skip(loss.len()) {
        let l = shards
            .iter()
            .map(|c| c.history.loss.get(j).map_or(f64::NAN, |e| f64::from(e.1)))
            .sum::<f64>()
            / n;
        loss.push((step, l as f32));
    }
    let wall = shards
        .iter()
        .map(|c| c.history.wall_seconds)
        .fold(next.history.wall_seconds, f64::max);
    next.history.step = first.step;
    next.history.loss = loss;
    next.history.wall_seconds = wall;
    next.history.rounds = Some(RoundsState {
        version: state.version + 1,
        ..state
    });
    next.encode()
}

/// The mean over `shards` (in order, in f64) of tensor `name`.
fn shard_mean(shards: &[Checkpoint], name: &str) -> Result<Vec<f64>, ModelError> {
    let mut acc: Vec<f64> = Vec::new();
    for (i, c) in shards.iter().enumerate() {
        let t = c
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::ShardMismatch {
                shard: i,
                reason: format!("tensor '{name}' is missing"),
            })?;
        if i == 0 {
            acc = vec![0.0; t.data.len()];
        }
        for (a, &x) in acc.iter_mut().zip(&t.data) {
            *a += f64::from(x);
        }
    }
    let n = shards.len() as f64;
    acc.iter_mut().for_each(|a| *a /= n);
    Ok(acc)
}

/// The final checkpoint of a run: `version` with its spread calibration fitted on `corpus`
/// (`cfg.calibration_windows`) and without the outer momentum.
///
/// # Errors
/// As [`crate::train()`].
pub fn finish(
    corpus: &Corpus,
    cfg: &TrainConfig,
    version: &[u8],
    device: &Device,
) -> Result<Vec<u8>, ModelError> {
    Session::open(corpus, cfg, Some(version), device)?
        .finish(cfg.calibration_windows, cfg.save_optimizer)
}

/// The training history (step, seed, losses) and rounds state of a version.
///
/// # Errors
/// Bytes that do not decode, or a checkpoint that is not a version of rounds of local SGD.
pub fn version_of(bytes: &[u8]) -> Result<(TrainingHistory, RoundsState), ModelError> {
    let c = Checkpoint::decode(bytes)?;
    let state = version_state(&c)?;
    Ok((c.history, state))
}

fn version_state(c: &Checkpoint) -> Result<RoundsState, ModelError> {
    match &c.history.rounds {
        Some(r) if r.shard.is_none() => Ok(r.clone()),
        Some(r) => Err(ModelError::CheckpointContent {
            reason: format!(
                "this is the result of shard {:?} of round {}, not a version",
                r.shard, r.version
            ),
        }),
        None => Err(ModelError::CheckpointContent {
            reason: "not a version of rounds of local SGD (no `rounds` in its training metadata)"
                .into(),
        }),
    }
}

fn check_result(
    version: &Checkpoint,
    parent: &str,
    index: usize,
    c: &Checkpoint,
) -> Result<(), ModelError> {
    let mismatch = |reason: String| ModelError::ShardMismatch {
        shard: index,
        reason,
    };
    let Some(r) = &c.history.rounds else {
        return Err(mismatch("it carries no rounds metadata".into()));
    };
    if r.parent.as_deref() != Some(parent) {
        return Err(mismatch(format!(
            "it was trained from version digest {}, this version's is {parent} (another job or \
             round)",
            r.parent.as_deref().unwrap_or("none")
        )));
    }
    if r.shard != Some(index) {
        return Err(mismatch(format!(
            "it is the result of shard {:?}, expected {index}",
            r.shard
        )));
    }
    let steps = version.history.step + r.inner_steps;
    if c.history.step != steps {
        return Err(mismatch(format!(
            "it ends at step {}, expected {steps}",
            c.history.step
        )));
    }
    if c.meta.unet != version.meta.unet || c.norm != version.norm {
        return Err(mismatch("its network or normalisation differs".into()));
    }
    Ok(())
}

/// A 64-bit digest (SplitMix64 folded, not cryptographic) of a checkpoint's step, seed and
/// tensors: names a version in its shard results.
fn digest(c: &Checkpoint) -> String {
    let mut h = mix(c.history.seed, c.history.step as u64);
    let tensors: BTreeMap<&String, &HostTensor> = c.tensors.iter().collect();
    for (name, t) in tensors {
        for b in name.bytes() {
            h = mix(h, u64::from(b));
        }
        for pair in t.data.chunks(2) {
            let lo = u64::from(pair[0].to_bits());
            let hi = pair.get(1).map_or(0, |v| u64::from(v.to_bits()));
            h = mix(h, lo | hi << 32);
        }
    }
    format!("{h:016x}")
}
