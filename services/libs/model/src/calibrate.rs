//! Spread calibration, fitted at the end of training.
//!
//! A few-step sampler from a small network is under-dispersed: its members agree more than their
//! mean agrees with the truth (on Landsat, ensemble σ ≈ 0.4 × the actual error). So training ends
//! by filling held-out synthetic gaps with the default sampler (DDIM 25 steps, η = 1, K = 4),
//! where the truth is known, and storing per band κ = RMSE(point estimate) / mean(ensemble σ)
//! in the checkpoint, where the point estimate is what fills report (the members' mean of the
//! network's first-step estimate, see `sampler::Sampled`). Fills report σ·κ as `spread` (variance inflation, as ensemble forecasts
//! are recalibrated against observations).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::fill::FillModel;
use crate::sampler::SampleOptions;
use crate::seed::mix;
use crate::ModelError;

/// Members per window.
const MEMBERS: usize = 4;
/// RNG stream of the calibration windows (training batches use streams 0..steps).
const STREAM: u64 = u64::MAX - 1;

/// Per-band κ for `model` (whose own `spread_scale` is ignored) on `windows` windows of `data`
/// (1 for bands without a measurement, and for every band when `windows` is 0).
///
/// # Errors
/// Tensor failures while sampling, read errors of the corpus.
pub(crate) fn spread_scale(
    model: &FillModel,
    data: &Dataset<'_>,
    seed: u64,
    windows: usize,
) -> Result<Vec<f64>, ModelError> {
    let b = model.meta().unet.data_channels;
    let cc = model.meta().unet.cond_channels;
    let s = data.tile();
    let per = b * s * s;
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, STREAM));
    let windows = (0..windows)
        .map(|_| data.sample(&mut rng))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut err2, mut spread, mut count) = (vec![0f64; b], vec![0f64; b], vec![0usize; b]);
    let per_batch = (model.batch_for(s, s) / MEMBERS).max(1);
    for (c, chunk) in windows.chunks(per_batch).enumerate() {
        let (mut cond, mut prior, mut seeds) = (Vec::new(), Vec::new(), Vec::new());
        for (w, win) in chunk.iter().enumerate() {
            for k in 0..MEMBERS {
                cond.extend_from_slice(&win.cond);
                prior.extend_from_slice(&win.cond[(cc - b) * s * s..]);
                seeds.push(mix(mix(seed, (c * per_batch + w) as u64), k as u64));
            }
        }
        let sampler = SampleOptions::default().sampler;
        let z = model.sample_stacks(cond, &prior, &seeds, (s, s), sampler)?;
        for (win, members) in chunk.iter().zip(z.chunks_exact(MEMBERS)) {
            let p = &win.cond[(cc - b) * s * s..];
            for i in (0..per).filter(|&i| win.residual[i].is_finite()) {
                let band = i / (s * s);
                let truth = f64::from(p[i]) + f64::from(win.residual[i]);
                let vals: Vec<f64> = members.iter().map(|m| f64::from(m.sample[i])).collect();
                let mean = vals.iter().sum::<f64>() / MEMBERS as f64;
                let var =
                    vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (MEMBERS - 1) as f64;
                let estimate = members
                    .iter()
                    .map(|m| f64::from(m.estimate[i]))
                    .sum::<f64>()
                    / MEMBERS as f64;
                err2[band] += (estimate - truth).powi(2);
                spread[band] += var.sqrt();
                count[band] += 1;
            }
        }
    }
    Ok((0..b)
        .map(|band| {
            let n = count[band].max(1) as f64;
            let (rmse, sd) = ((err2[band] / n).sqrt(), spread[band] / n);
            if sd > 0.0 && rmse > 0.0 {
                rmse / sd
            } else {
                1.0
            }
        })
        .collect())
}
