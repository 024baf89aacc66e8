//! The network's parameterisation, kept in one place so that training and sampling cannot
//! disagree: v-prediction (Salimans & Ho 2022, §4). The UNet predicts
//! v = √ᾱ_t ε − √(1−ᾱ_t) x_0, trained with ‖v − v̂‖²; the sampler gets
//! ε̂ = √(1−ᾱ_t) x_t + √ᾱ_t v̂, so that x̂_0 = √ᾱ_t x_t − √(1−ᾱ_t) v̂.
//!
//! ε-prediction was used first. Its x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t divides the network's error
//! by √ᾱ_t (≈ 0.006 at t = T for the default schedule), so the first sampling steps produced x̂_0
//! far outside the data, which clipping to the (asymmetric) data range turned into a bias: on a
//! Landsat crop the ensemble mean was 1.5 band-σ too bright. v̂ keeps x̂_0 bounded at every t.

use candle_core::{Result, Tensor};

use crate::schedule::NoiseSchedule;
use crate::unet::UNet;

/// The network's v̂ for a batch; `t` holds one step index per sample.
pub(crate) fn predict_v(unet: &UNet, x_t: &Tensor, cond: &Tensor, t: &[u32]) -> Result<Tensor> {
    let tt = Tensor::from_vec(t.to_vec(), t.len(), x_t.device())?;
    unet.forward(x_t, cond, &tt, None)
}

/// The training target v for a forward draw x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε.
pub(crate) fn v_target(schedule: &NoiseSchedule, t: usize, x0: f64, eps: f64) -> f64 {
    let (ca, cb) = schedule.q_sample_coefs(t);
    ca * eps - cb * x0
}

/// ε̂ for a batch that shares step `t`, as the sampler wants it.
pub(crate) fn predict_eps(
    unet: &UNet,
    schedule: &NoiseSchedule,
    x_t: &Tensor,
    cond: &Tensor,
    t: usize,
) -> Result<Tensor> {
    let n = x_t.dim(0)?;
    let v = predict_v(unet, x_t, cond, &vec![t as u32; n])?;
    let (ca, cb) = schedule.q_sample_coefs(t);
    (x_t * cb)? + (v * ca)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleConfig;

    #[test]
    fn the_v_target_recovers_x0_and_eps() -> anyhow::Result<()> {
        let s = NoiseSchedule::new(&ScheduleConfig::default())?;
        for t in [0usize, 10, 500, s.len() - 1] {
            let (x0, eps) = (0.7, -1.3);
            let (ca, cb) = s.q_sample_coefs(t);
            let x_t = ca * x0 + cb * eps;
            let v = v_target(&s, t, x0, eps);
            assert!((ca * x_t - cb * v - x0).abs() < 1e-9, "x0 at t={t}");
            assert!((cb * x_t + ca * v - eps).abs() < 1e-9, "eps at t={t}");
        }
        Ok(())
    }
}
