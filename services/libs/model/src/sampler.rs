//! Reverse-process samplers: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2 / eq. 11) and
//! DDIM (Song et al. 2021, eq. 12), with Palette/RePaint-style re-imposition of known pixels.
//!
//! Known pixels are re-imposed at **every** step by a fresh forward-process draw
//! x_{t−1}[known] ~ q(x_{t−1} | x_0 = observed) (DDPM eq. 4), and copied exactly at the end. In
//! training the network saw x_t at observed pixels drawn from exactly that distribution, so every
//! step stays on the training distribution; imposing only at the end would let the known region of
//! x_t drift from the observations, and the gap edges then disagree with their surroundings.

use candle_core::{Device, Tensor};
type Result<T> = candle_core::Result<T>;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::schedule::NoiseSchedule;
use crate::ModelError;

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// DDIM over `steps` evenly spaced steps; `eta` = 0 is deterministic given x_T, 1 matches
    /// DDPM's variance (Song et al. 2021 eq. 16).
    Ddim {
        /// Number of denoising steps (1..=T).
        steps: usize,
        /// Stochasticity η ≥ 0.
        eta: f64,
    },
    /// DDPM ancestral sampling over all T steps.
    Ddpm,
}

/// How to sample fills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// The reverse process.
    pub sampler: Sampler,
    /// Ensemble members K per tile (≥ 1).
    pub ensemble: usize,
    /// Return this member (< `ensemble`) instead of the ensemble mean; spread still covers all K.
    pub member: Option<usize>,
    /// Also return every member ([`crate::TileOutput::members`]).
    pub keep_members: bool,
}

impl Default for SampleOptions {
    /// DDIM, 25 steps, η = 1, one member.
    fn default() -> Self {
        Self {
            sampler: Sampler::Ddim {
                steps: 25,
                eta: 1.0,
            },
            ensemble: 1,
            member: None,
            keep_members: false,
        }
    }
}

impl SampleOptions {
    /// Check the options against a schedule of `timesteps` steps.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field.
    pub fn validate(&self, timesteps: usize) -> std::result::Result<(), ModelError> {
        if self.ensemble == 0 {
            return Err(ModelError::Config {
                field: "ensemble",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(m) = self.member.filter(|&m| m >= self.ensemble) {
            return Err(ModelError::Config {
                field: "member",
                reason: format!("{m} is not below ensemble size {}", self.ensemble),
            });
        }
        if let Sampler::Ddim { steps, eta } = self.sampler {
            if steps == 0 || steps > timesteps {
                return Err(ModelError::Config {
                    field: "steps",
                    reason: format!("must be in 1..={timesteps}, got {steps}"),
                });
            }
            if !(eta.is_finite() && eta >= 0.0) {
                return Err(ModelError::Config {
                    field: "eta",
                    reason: format!("must be finite and >= 0, got {eta}"),
                });
            }
        }
        Ok(())
    }
}

/// The descending step indices the sampler visits: all of 0..T for DDPM; for DDIM `steps` indices
/// evenly spaced from T−1 down to 0 (rounded).
pub fn timesteps(sampler: Sampler, total: usize) -> Vec<usize> {
    match sampler {
        Sampler::Ddpm => (0..total).rev().collect(),
        Sampler::Ddim { steps, .. } => {
            let mut ts: Vec<usize> = (0..steps)
                .map(|i| {
                    if steps == 1 {
                        total - 1
                    } else {
                        ((total - 1) as f64 * i as f64 / (steps - 1) as f64).round() as usize
                    }
                })
                .collect();
            ts.dedup();
            ts.reverse();
            ts
        }
    }
}

/// Coefficients of one DDIM update (Song et al. 2021 eq. 12):
/// x_prev = `c_x0`·x̂_0 + `c_eps`·ε̂ + `sigma`·z, with σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)
/// (eq. 16) and `c_x0` = √ᾱ_prev, `c_eps` = √(1−ᾱ_prev−σ²).
pub fn ddim_coefs(s: &NoiseSchedule, t: usize, prev: Option<usize>, eta: f64) -> (f64, f64, f64) {
    let ab = s.alpha_bar(Some(t));
    let ab_prev = s.alpha_bar(prev);
    let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt();
    (
        ab_prev.sqrt(),
        (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt(),
        sigma,
    )
}

/// Per-sample Gaussian noise from per-sample seeds, so a sample's noise does not depend on what
/// else is in the batch.
pub(crate) struct Noise {
    rngs: Vec<ChaCha8Rng>,
    dims: [usize; 3],
}

impl Noise {
    pub(crate) fn new(seeds: &[u64], dims: [usize; 3]) -> Self {
        Self {
            rngs: seeds
                .iter()
                .map(|&s| ChaCha8Rng::seed_from_u64(s))
                .collect(),
            dims,
        }
    }

    /// One draw of N(0, I) for every sample: [N, C, H, W].
    pub(crate) fn draw(&mut self, device: &Device) -> Result<Tensor> {
        let per: usize = self.dims.iter().product();
        let mut v = Vec::with_capacity(per * self.rngs.len());
        for rng in &mut self.rngs {
            v.extend((0..per).map(|_| -> f32 { StandardNormal.sample(rng) }));
        }
        let [c, h, w] = self.dims;
        Tensor::from_vec(v, (self.rngs.len(), c, h, w), device)
    }
}

/// What the sampler conditions on, all normalised, for N samples of C bands.
pub(crate) struct Known<'a> {
    /// 1 where the pixel is observed, else 0: [N, C, H, W].
    pub mask: &'a Tensor,
    /// Observed values (0 elsewhere): [N, C, H, W].
    pub values: &'a Tensor,
    /// Clip range for x̂_0: two tensors that broadcast to [N, C, H, W].
    pub clip: Option<(&'a Tensor, &'a Tensor)>,
}

/// What one run of the reverse process gives, both normalised with the known pixels set to their
/// observed values: [N, C, H, W] each.
pub(crate) struct Sampled {
    /// x_0 at the end of the reverse process: a draw from the model's distribution.
    pub sample: Tensor,
    /// The network's x̂_0 at the first (noisiest) step: as x_T carries next to no information
    /// about x_0, this is the model's estimate of E[x_0 | conditioning], the minimum-MSE fill
    /// its training loss fits. It has none of a sample's texture, so it is the better point
    /// estimate: on the demo its mean over 4 draws scored NRMSE 0.888 against 0.944 for the mean
    /// of 4 samples.
    pub estimate: Tensor,
}

/// Run the reverse process from x_T ~ N(0, I); see [`Sampled`]. `eps` predicts ε from (x_t, t).
pub(crate) fn sample(
    schedule: &NoiseSchedule,
    sampler: Sampler,
    known: &Known<'_>,
    noise: &mut Noise,
    eps: &mut dyn FnMut(&Tensor, usize) -> Result<Tensor>,
) -> Result<Sampled> {
    let device = known.mask.device().clone();
    let unknown = known.mask.affine(-1.0, 1.0)?;
    let with_known = |x: &Tensor| -> Result<Tensor> {
        Ok(((x * &unknown)? + (known.values * known.mask)?)?.detach())
    };
    let ts = timesteps(sampler, schedule.len());
    let mut x = noise.draw(&device)?;
    let mut estimate = None;
    for (i, &t) in ts.iter().enumerate() {
        let prev = ts.get(i + 1).copied();
        let e = eps(&x, t)?;
        let ab = schedule.alpha_bar(Some(t));
        // x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t (DDPM eq. 15 rearranged), clipped, and ε̂ made consistent.
        let mut x0 = ((&x - (&e * (1.0 - ab).sqrt())?)? / ab.sqrt())?;
        let mut e = e;
        if let Some((lo, hi)) = known.clip {
            x0 = x0.broadcast_maximum(lo)?.broadcast_minimum(hi)?;
            e = ((&x - (&x0 * ab.sqrt())?)? / (1.0 - ab).sqrt())?;
        }
        if estimate.is_none() {
            estimate = Some(with_known(&x0)?);
        }
        let Some(p) = prev else {
            x = x0;
            break;
        };
        x = match sampler {
            Sampler::Ddpm => {
                // μ̃ = c0·x̂_0 + ct·x_t, variance β̃_t (DDPM eqs. 6–7; equals eq. 11 without clipping).
                let (c0, ct, var) = schedule.posterior(t);
                ((&x0 * c0)? + (&x * ct)? + (noise.draw(&device)? * var.sqrt())?)?
            }
            Sampler::Ddim { eta, .. } => {
                let (cx, ce, sigma) = ddim_coefs(schedule, t, Some(p), eta);
                let mut next = ((&x0 * cx)? + (&e * ce)?)?;
                if sigma > 0.0 {
                    next = (next + (noise.draw(&device)? * sigma)?)?;
                }
                next
            }
        };
        // Re-impose the known pixels with a forward-process draw at the new noise level.
        let (a, b) = schedule.q_sample_coefs(p);
        let xk = ((known.values * a)? + (noise.draw(&device)? * b)?)?;
        // Detached: with a network whose weights are training variables, every step's autograd
        // graph would otherwise stay reachable from x, and memory would grow with the steps.
        x = ((&x * &unknown)? + (xk * known.mask)?)?.detach();
    }
    let sample = with_known(&x)?;
    let estimate = match estimate {
        Some(e) => e,
        None => sample.clone(),
    };
    Ok(Sampled { sample, estimate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{BetaSchedule, ScheduleConfig};

    fn lin() -> NoiseSchedule {
        let cfg = ScheduleConfig {
            timesteps: 1000,
            beta: BetaSchedule::Linear {
                beta_start: 1e-4,
                beta_end: 0.02,
            },
        };
        NoiseSchedule::new(&cfg).expect("schedule")
    }

    #[test]
    fn ddim_timesteps_are_descending_and_cover_the_range() {
        let ts = timesteps(
            Sampler::Ddim {
                steps: 10,
                eta: 0.0,
            },
            1000,
        );
        assert_eq!(ts.len(), 10);
        assert_eq!((ts[0], ts[9]), (999, 0));
        assert!(ts.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(timesteps(Sampler::Ddpm, 5), vec![4, 3, 2, 1, 0]);
        assert_eq!(
            timesteps(Sampler::Ddim { steps: 1, eta: 0.0 }, 1000),
            vec![999]
        );
    }

    #[test]
    fn ddim_eta_one_matches_ddpm_posterior_variance() {
        // Song et al. 2021 §4.1: η = 1 with consecutive steps gives σ² = β̃_t.
        let s = lin();
        for t in [1usize, 50, 500, 999] {
            let (_, _, sigma) = ddim_coefs(&s, t, Some(t - 1), 1.0);
            let (_, _, var) = s.posterior(t);
            assert!((sigma * sigma - var).abs() < 1e-12);
            let (cx, ce, sigma0) = ddim_coefs(&s, t, Some(t - 1), 0.0);
            assert_eq!(sigma0, 0.0);
            assert!((cx * cx + ce * ce - 1.0).abs() < 1e-12);
        }
    }

    /// The exact ε-predictor for data ~ N(μ, s²) per pixel: E[ε | x_t].
    fn gaussian_eps(
        s: &NoiseSchedule,
        mu: f64,
        sd: f64,
    ) -> impl FnMut(&Tensor, usize) -> Result<Tensor> + '_ {
        move |x: &Tensor, t: usize| {
            let ab = s.alpha_bar(Some(t));
            let k = (1.0 - ab).sqrt() / (ab * sd * sd + 1.0 - ab);
            (x - ab.sqrt() * mu)? * k
        }
    }

    /// Mean and standard deviation of the Gaussian data of the exact-predictor tests.
    const GAUSSIAN: (f64, f64) = (0.7, 0.5);

    /// A mask (and zero values) of four 32×32 samples with no known pixel.
    fn nothing_known() -> Result<Tensor> {
        Tensor::zeros((4, 1, 32, 32), candle_core::DType::F32, &Device::Cpu)
    }

    fn moments(t: &Tensor) -> (f64, f64) {
        let v: Vec<f32> = t
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .unwrap_or_default();
        let n = v.len() as f64;
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        (
            m,
            (v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n).sqrt(),
        )
    }

    #[test]
    fn samplers_reproduce_a_gaussian_data_distribution() -> anyhow::Result<()> {
        // With the exact ε-predictor, DDPM and fine DDIM recover N(μ, s²). Coarse DDIM is
        // under-dispersed: for Gaussian data one η=0 jump scales the variance by
        // (√(ᾱ'ᾱ)s² + √((1−ᾱ')(1−ᾱ)))² / ((ᾱs²+1−ᾱ)(ᾱ's²+1−ᾱ')) ≤ 1 (Cauchy–Schwarz).
        let s = lin();
        let (mu, sd) = GAUSSIAN;
        let mask = nothing_known()?;
        let known = Known {
            mask: &mask,
            values: &mask,
            clip: None,
        };
        let cases = [
            (Sampler::Ddpm, 0.05),
            (
                Sampler::Ddim {
                    steps: 250,
                    eta: 1.0,
                },
                0.05,
            ),
            (
                Sampler::Ddim {
                    steps: 100,
                    eta: 0.0,
                },
                0.05,
            ),
            (
                Sampler::Ddim {
                    steps: 10,
                    eta: 0.0,
                },
                0.35,
            ),
        ];
        for (sampler, tol) in cases {
            let mut noise = Noise::new(&[1, 2, 3, 4], [1, 32, 32]);
            let x = sample(
                &s,
                sampler,
                &known,
                &mut noise,
                &mut gaussian_eps(&s, mu, sd),
            )?
            .sample;
            let (m, v) = moments(&x);
            assert!((m - mu).abs() < 0.05, "{sampler:?} mean {m}");
            assert!((v - sd).abs() < tol * sd, "{sampler:?} sd {v}");
        }
        Ok(())
    }

    #[test]
    fn the_estimate_is_the_posterior_mean_not_a_draw() -> anyhow::Result<()> {
        // With the exact ε-predictor for x_0 ~ N(μ, s²), x̂_0 at t = T is E[x_0 | x_T], which is
        // μ up to a ᾱ_T-weighted pull towards x_T: its spread over pixels is a small fraction of
        // s, while the samples' spread is s.
        let s = lin();
        let (mu, sd) = GAUSSIAN;
        let mask = nothing_known()?;
        let known = Known {
            mask: &mask,
            values: &mask,
            clip: None,
        };
        let mut noise = Noise::new(&[5, 6, 7, 8], [1, 32, 32]);
        let sampler = Sampler::Ddim {
            steps: 25,
            eta: 1.0,
        };
        let out = sample(
            &s,
            sampler,
            &known,
            &mut noise,
            &mut gaussian_eps(&s, mu, sd),
        )?;
        let (m, v) = moments(&out.estimate);
        assert!((m - mu).abs() < 0.01, "estimate mean {m}");
        assert!(v < 0.05 * sd, "estimate spread {v}");
        let (_, v) = moments(&out.sample);
        assert!(v > 0.5 * sd, "sample spread {v}");
        Ok(())
    }

    #[test]
    fn known_pixels_are_exact_and_same_seed_is_bit_identical() -> anyhow::Result<()> {
        let s = lin();
        let dev = Device::Cpu;
        let mask = Tensor::from_vec(vec![1f32, 0.0, 1.0, 0.0], (1, 1, 2, 2), &dev)?;
        let values = Tensor::from_vec(vec![0.25f32, 0.0, -1.5, 0.0], (1, 1, 2, 2), &dev)?;
        let known = Known {
            mask: &mask,
            values: &values,
            clip: None,
        };
        let run = |seed| -> anyhow::Result<Vec<f32>> {
            let mut noise = Noise::new(&[seed], [1, 2, 2]);
            let x = sample(
                &s,
                Sampler::Ddim {
                    steps: 10,
                    eta: 1.0,
                },
                &known,
                &mut noise,
                &mut gaussian_eps(&s, 0.0, 1.0),
            )?
            .sample;
            Ok(x.flatten_all()?.to_vec1()?)
        };
        let a = run(9)?;
        assert_eq!((a[0], a[2]), (0.25, -1.5));
        assert_eq!(a, run(9)?);
        assert_ne!(a, run(10)?);
        Ok(())
    }

    /// The calibration at the end of `train` samples with a network whose weights are training
    /// variables. If a step's result kept its autograd graph, every step would hold on to all the
    /// ones before it and memory would grow with the steps (it reached the OOM killer). The sample
    /// must carry no gradient path back to the weights.
    #[test]
    fn samples_hold_no_autograd_graph() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let s = lin();
        let weight = candle_core::Var::new(&[0.5f32], &dev)?;
        let mask = Tensor::new(&[[[[1f32, 0.0], [0.0, 0.0]]]], &dev)?;
        let values = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &dev)?;
        let known = Known {
            mask: &mask,
            values: &values,
            clip: None,
        };
        let mut noise = Noise::new(&[3], [1, 2, 2]);
        let mut eps = |x: &Tensor, _t: usize| x.broadcast_mul(weight.as_tensor());
        let sampler = Sampler::Ddim { steps: 5, eta: 1.0 };
        let x = sample(&s, sampler, &known, &mut noise, &mut eps)?;
        for t in [x.sample, x.estimate] {
            let grads = t.sum_all()?.backward()?;
            assert!(grads.get(weight.as_tensor()).is_none());
        }
        Ok(())
    }
}
