//! Conditional diffusion models that fill gaps in Earth-observation rasters (candle).
//!
//! - [`schedule`]: β schedules and the forward process q(x_t | x_0) (DDPM, Ho et al. 2020);
//! - [`unet`], [`blocks`]: the conditional UNet ε_θ(x_t, t, [observed, mask, context]);
//! - [`train()`]: self-supervised training on a scene's own observed pixels with synthetic gaps
//!   ([`gaps`]), per-band normalisation ([`normalise`]), checkpoints as one safetensors file;
//! - [`FillModel`]: DDPM / DDIM (Song et al. 2021) sampling with known pixels re-imposed,
//!   ensembles with per-(tile, date, member) seeds ([`tile_seed`]), batched over tiles;
//! - [`DeviceSpec`]: `auto|cpu|cuda:N` (CUDA with the `cuda` feature).
//!
//! No I/O and no async runtime: callers pass arrays and bytes.

pub mod blocks;
mod calibrate;
mod checkpoint;
pub mod conv;
mod corpus;
mod dataset;
mod denoise;
mod device;
mod error;
mod fill;
pub mod gaps;
mod layout;
pub mod norm;
pub mod normalise;
mod optim;
mod preset;
mod prior;
pub mod rounds;
mod sampler;
mod scan;
pub mod schedule;
mod seed;
mod train;
pub mod unet;

#[cfg(test)]
mod testing {
    use candle_core::Tensor;

    /// Largest |a − b| relative to max |b|.
    pub(crate) fn rel_err(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let m = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
        Ok(d / m)
    }
}

pub use candle_core::Device;
pub use checkpoint::{ModelMeta, RoundsState, TrainingHistory, FORMAT as CHECKPOINT_FORMAT};
pub use corpus::{Corpus, SceneSource};
pub use device::DeviceSpec;
pub use error::ModelError;
pub use fill::{FillModel, TileInput, TileOutput};
pub use layout::{nearest_dates, Layout};
pub use normalise::Normalisation;
pub use preset::Preset;
pub use sampler::{ddim_coefs, timesteps, SampleOptions, Sampler};
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
pub use seed::{mix, splitmix64, tile_seed};
pub use train::{train, TrainConfig, TrainProgress};
pub use unet::{UNet, UNetConfig};

/// A scene: `[band, y, x]` or `[time, band, y, x]` float32 values, row-major, NaN = missing.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneArray {
    /// `[band, y, x]` or `[time, band, y, x]`.
    pub shape: Vec<usize>,
    /// Row-major values, NaN = missing.
    pub values: Vec<f32>,
}
