//! Checkpoints: one safetensors file. Tensors `model.<var>` hold the weights and, optionally,
//! `adam.m.<var>` / `adam.v.<var>` the optimiser moments; the metadata holds JSON entries
//! `format`, `model` (UNet config, schedule, tile size, lead shape, context dates, residual and
//! spread scales),
//! `normalisation` and `training` (step, seed, loss history, wall time).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use crate::error::TensorContext;
use crate::normalise::Normalisation;
use crate::schedule::ScheduleConfig;
use crate::unet::{UNet, UNetConfig};
use crate::ModelError;

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "terrafill-diffusion/2";
/// Prefix of weight tensors.
pub(crate) const MODEL_PREFIX: &str = "model.";
/// Prefixes of the AdamW first and second moments.
pub(crate) const ADAM_M: &str = "adam.m.";
pub(crate) const ADAM_V: &str = "adam.v.";
/// Prefix of the outer Nesterov momentum of rounds of local SGD.
pub(crate) const OUTER_U: &str = "outer.u.";

/// What a model needs besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Network sizes.
    pub unet: UNetConfig,
    /// Noise schedule.
    pub schedule: ScheduleConfig,
    /// Trained tile size (pixels per side).
    pub tile: usize,
    /// Leading dims of the training scene: `[bands]` or `[times, bands]`.
    pub lead_shape: Vec<usize>,
    /// Context dates per target date (0 for `[band,y,x]` scenes).
    pub context_dates: usize,
    /// Per-band scale of the diffused residual (normalised units; see [`crate::prior`]).
    pub residual_scale: Vec<f64>,
    /// Per-band factor applied to the ensemble standard deviation (see [`crate::calibrate`]).
    pub spread_scale: Vec<f64>,
}

/// Training provenance and state for resuming.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingHistory {
    /// Optimiser steps done.
    pub step: usize,
    /// The `steps` the run was asked for.
    pub target_steps: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Batch size.
    pub batch: usize,
    /// (step, mean loss over the preceding logging interval).
    pub loss: Vec<(usize, f32)>,
    /// Wall time spent training, seconds, over all runs.
    pub wall_seconds: f64,
    /// The preset the run started from (`small`, `base`, `large`), if any. Absent in
    /// checkpoints written before presets existed, which load unchanged.
    #[serde(default)]
    pub preset: Option<String>,
    /// Rounds of local SGD this checkpoint belongs to ([`crate::rounds`]); absent for plain
    /// training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<RoundsState>,
    /// The share of training windows hidden whole (`TrainConfig::blank_share`): above 0 the
    /// model has learnt to generate from nothing. Absent (0) in older checkpoints.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blank_share: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Where a checkpoint stands in rounds of local SGD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundsState {
    /// The version: rounds averaged into these weights (0 = the initial weights). A shard
    /// result carries the version it was trained from.
    pub version: usize,
    /// Shards per round.
    pub shards: usize,
    /// Inner steps per shard and round.
    pub inner_steps: usize,
    /// For a shard result: its shard index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<usize>,
    /// For a shard result: the digest of the version it was trained from (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// A tensor held on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub(crate) fn from_tensor(t: &Tensor) -> Result<Self, ModelError> {
        let data = t
            .flatten_all()
            .and_then(|f| f.to_dtype(DType::F32))
            .and_then(|f| f.to_vec1())
            .ctx("copying a tensor to the host")?;
        Ok(Self {
            shape: t.dims().to_vec(),
            data,
        })
    }

    pub(crate) fn to_tensor(&self, device: &Device) -> Result<Tensor, ModelError> {
        Tensor::from_vec(self.data.clone(), self.shape.as_slice(), device)
            .ctx("copying a tensor to the device")
    }
}

struct F32View<'a>(&'a HostTensor, Vec<u8>);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.1)
    }
    fn data_len(&self) -> usize {
        self.1.len()
    }
}

/// A decoded checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    pub meta: ModelMeta,
    pub norm: Normalisation,
    pub history: TrainingHistory,
    /// All tensors by full name (with prefix).
    pub tensors: BTreeMap<String, HostTensor>,
}

fn json<T: Serialize>(key: &'static str, v: &T) -> Result<String, ModelError> {
    serde_json::to_string(v).map_err(|source| ModelError::CheckpointMetadata { key, source })
}

impl Checkpoint {
    /// Serialise to safetensors bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ModelError> {
        let mut meta = HashMap::new();
        meta.insert("format".to_owned(), FORMAT.to_owned());
        meta.insert("model".to_owned(), json("model", &self.meta)?);
        meta.insert(
            "normalisation".to_owned(),
            json("normalisation", &self.norm)?,
        );
        meta.insert("training".to_owned(), json("training", &self.history)?);
        let views = self.tensors.iter().map(|(k, t)| {
            (
                k.clone(),
                F32View(t, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            )
        });
        safetensors::serialize(views, Some(meta))
            .map_err(|source| ModelError::CheckpointFormat { len: 0, source })
    }

    /// Parse and validate bytes: format tag, metadata JSON, f32 tensors, finite values, and the
    /// weights' names and shapes against the UNet the metadata describes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|source| ModelError::CheckpointFormat {
                len: bytes.len(),
                source,
            })?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|source| ModelError::CheckpointFormat {
                len: bytes.len(),
                source,
            })?;
        let md = header.metadata().clone().unwrap_or_default();
        let get = |key: &'static str| {
            md.get(key).ok_or_else(|| ModelError::CheckpointContent {
                reason: format!("metadata entry '{key}' is missing (not a terrafill checkpoint?)"),
            })
        };
        let format = get("format")?;
        if format != FORMAT {
            return Err(ModelError::CheckpointContent {
                reason: format!("format is '{format}', expected '{FORMAT}'"),
            });
        }
        let parse = |key: &'static str| -> Result<serde_json::Value, ModelError> {
            serde_json::from_str(get(key)?)
                .map_err(|source| ModelError::CheckpointMetadata { key, source })
        };
        let meta: ModelMeta = serde_json::from_value(parse("model")?).map_err(|source| {
            ModelError::CheckpointMetadata {
                key: "model",
                source,
            }
        })?;
        let norm: Normalisation =
            serde_json::from_value(parse("normalisation")?).map_err(|source| {
                ModelError::CheckpointMetadata {
                    key: "normalisation",
                    source,
                }
            })?;
        let history: TrainingHistory =
            serde_json::from_value(parse("training")?).map_err(|source| {
                ModelError::CheckpointMetadata {
                    key: "training",
                    source,
                }
            })?;
        meta.unet.validate()?;
        let bands = meta.lead_shape.last().copied().unwrap_or(0);
        if bands != meta.unet.data_channels
            || meta.lead_shape.is_empty()
            || meta.lead_shape.len() > 2
        {
            return Err(ModelError::CheckpointContent {
                reason: format!(
                    "lead shape {:?} does not match {} data channels",
                    meta.lead_shape, meta.unet.data_channels
                ),
            });
        }
        norm.validate(bands)?;
        for (what, v) in [
            ("residual scale", &meta.residual_scale),
            ("spread scale", &meta.spread_scale),
        ] {
            if v.len() != bands || !v.iter().all(|s| s.is_finite() && *s > 0.0) {
                return Err(ModelError::CheckpointContent {
                    reason: format!("{what} {v:?} is not {bands} finite positive values"),
                });
            }
        }
        let cond = crate::layout::Layout::cond_channels(bands, meta.context_dates);
        if meta.unet.cond_channels != cond {
            return Err(ModelError::CheckpointContent {
                reason: format!(
                    "{} conditioning channels, expected {cond} for {bands} bands and {} context dates",
                    meta.unet.cond_channels, meta.context_dates
                ),
            });
        }
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ModelError::CheckpointContent {
                    reason: format!("tensor '{name}' is {:?}, expected F32", view.dtype()),
                });
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let count = data.iter().filter(|v| !v.is_finite()).count();
            if count > 0 {
                return Err(ModelError::NonFiniteWeights { name, count });
            }
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let ckpt = Self {
            meta,
            norm,
            history,
            tensors,
        };
        ckpt.check_weights()?;
        Ok(ckpt)
    }

    /// The weights without their prefix.
    pub(crate) fn weights(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(MODEL_PREFIX).map(|n| (n, t)))
    }

    fn check_weights(&self) -> Result<(), ModelError> {
        let expected = expected_vars(&self.meta.unet)?;
        let got: BTreeMap<&str, &HostTensor> = self.weights().collect();
        for (name, shape) in &expected {
            match got.get(name.as_str()) {
                None => {
                    return Err(ModelError::CheckpointContent {
                        reason: format!("weight '{name}' is missing"),
                    })
                }
                Some(t) if &t.shape != shape => {
                    return Err(ModelError::CheckpointContent {
                        reason: format!(
                            "weight '{name}' has shape {:?}, expected {shape:?}",
                            t.shape
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = got.keys().find(|k| !expected.contains_key(**k)) {
            return Err(ModelError::CheckpointContent {
                reason: format!("unexpected weight '{extra}' for this UNet config"),
            });
        }
        Ok(())
    }

    /// Build the UNet on `device` from the weights.
    pub(crate) fn unet(&self, device: &Device) -> Result<UNet, ModelError> {
        let mut map = HashMap::new();
        for (name, t) in self.weights() {
            map.insert(name.to_owned(), t.to_tensor(device)?);
        }
        UNet::new(
            VarBuilder::from_tensors(map, DType::F32, device),
            &self.meta.unet,
        )
    }
}

/// Names and shapes of the variables of a UNet with `cfg`.
pub(crate) fn expected_vars(cfg: &UNetConfig) -> Result<BTreeMap<String, Vec<usize>>, ModelError> {
    let vm = VarMap::new();
    UNet::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), cfg)?;
    Ok(vars_of(&vm)?
        .into_iter()
        .map(|(k, v)| (k, v.dims().to_vec()))
        .collect())
}

/// The variables of a var map, sorted by name.
pub(crate) fn vars_of(vm: &VarMap) -> Result<BTreeMap<String, candle_core::Var>, ModelError> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| ModelError::CheckpointContent {
            reason: "variable map lock poisoned".into(),
        })?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}
