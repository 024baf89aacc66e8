//! Noise schedules and the closed forms of the forward process, all in f64.
//!
//! Index convention: `t` runs over `0..timesteps` and stands for step t+1 of the papers, so
//! `alpha_bar(0) = 1 − β_1` and "ᾱ_{t−1}" of step 0 is 1.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// How β_t grows over the diffusion steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// β linear from `beta_start` to `beta_end` (DDPM, Ho et al. 2020 §4: 1e-4 → 0.02 over 1000 steps).
    Linear {
        /// β_1.
        beta_start: f64,
        /// β_T.
        beta_end: f64,
    },
    /// ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2), β clipped at 0.999
    /// (Nichol & Dhariwal 2021 eq. 17). Computed in f64 with float division throughout.
    Cosine {
        /// The offset s (0.008 in the paper).
        s: f64,
    },
}

/// A noise schedule as stored in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Number of diffusion steps T.
    pub timesteps: usize,
    /// The β schedule.
    pub beta: BetaSchedule,
}

impl Default for ScheduleConfig {
    /// T = 1000 with the cosine schedule, which keeps more signal at mid-range t than the linear
    /// one and suits small images (Nichol & Dhariwal 2021 §3.2).
    fn default() -> Self {
        Self {
            timesteps: 1000,
            beta: BetaSchedule::Cosine { s: 0.008 },
        }
    }
}

/// The per-step quantities β_t, α_t = 1 − β_t and ᾱ_t = Π_{i≤t} α_i (DDPM eq. 4 notation).
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alpha_bars: Vec<f64>,
}

/// The cosine schedule's f(t) (Nichol & Dhariwal 2021 eq. 17), t continuous in [0, T].
pub fn cosine_f(t: f64, timesteps: usize, s: f64) -> f64 {
    let x = (t / timesteps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
    x.cos().powi(2)
}

impl NoiseSchedule {
    /// Build the schedule.
    ///
    /// # Errors
    /// [`ModelError::Config`] for zero steps or βs outside (0, 1).
    pub fn new(cfg: &ScheduleConfig) -> Result<Self, ModelError> {
        let n = cfg.timesteps;
        if n < 2 {
            return Err(ModelError::Config {
                field: "schedule.timesteps",
                reason: format!("must be at least 2, got {n}"),
            });
        }
        let betas: Vec<f64> = match cfg.beta {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => {
                if !(beta_start > 0.0 && beta_end < 1.0 && beta_start <= beta_end) {
                    return Err(ModelError::Config {
                        field: "schedule.beta",
                        reason: format!(
                            "needs 0 < beta_start <= beta_end < 1, got {beta_start}..{beta_end}"
                        ),
                    });
                }
                (0..n)
                    .map(|i| beta_start + (beta_end - beta_start) * i as f64 / (n - 1) as f64)
                    .collect()
            }
            BetaSchedule::Cosine { s } => {
                if !(0.0..1.0).contains(&s) {
                    return Err(ModelError::Config {
                        field: "schedule.beta.s",
                        reason: format!("must be in [0, 1), got {s}"),
                    });
                }
                (0..n)
                    .map(|i| {
                        let ratio = cosine_f((i + 1) as f64, n, s) / cosine_f(i as f64, n, s);
                        (1.0 - ratio).clamp(0.0, 0.999)
                    })
                    .collect()
            }
        };
        let mut alpha_bars = Vec::with_capacity(n);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alpha_bars.push(acc);
        }
        Ok(Self { betas, alpha_bars })
    }

    /// Number of steps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false (a schedule has at least two steps).
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// β_t.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// α_t = 1 − β_t.
    pub fn alpha(&self, t: usize) -> f64 {
        1.0 - self.betas[t]
    }

    /// ᾱ_t; `None` (the step before the first) gives 1.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alpha_bars[t])
    }

    /// (√ᾱ_t, √(1−ᾱ_t)): x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε samples q(x_t | x_0) (DDPM eq. 4).
    pub fn q_sample_coefs(&self, t: usize) -> (f64, f64) {
        let ab = self.alpha_bars[t];
        (ab.sqrt(), (1.0 - ab).sqrt())
    }

    /// Posterior q(x_{t−1} | x_t, x_0) = N(c0·x_0 + ct·x_t, β̃_t): returns (c0, ct, β̃_t) with
    /// c0 = √ᾱ_{t−1} β_t / (1−ᾱ_t), ct = √α_t (1−ᾱ_{t−1}) / (1−ᾱ_t), β̃_t = (1−ᾱ_{t−1}) β_t / (1−ᾱ_t)
    /// (DDPM eqs. 6–7).
    pub fn posterior(&self, t: usize) -> (f64, f64, f64) {
        let ab = self.alpha_bars[t];
        let ab_prev = self.alpha_bar(t.checked_sub(1));
        let beta = self.betas[t];
        let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
        let ct = self.alpha(t).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        let var = (1.0 - ab_prev) * beta / (1.0 - ab);
        (c0, ct, var)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    use super::*;

    fn schedules() -> Vec<NoiseSchedule> {
        let lin = ScheduleConfig {
            timesteps: 1000,
            beta: BetaSchedule::Linear {
                beta_start: 1e-4,
                beta_end: 0.02,
            },
        };
        vec![
            NoiseSchedule::new(&lin).expect("linear"),
            NoiseSchedule::new(&ScheduleConfig::default()).expect("cosine"),
        ]
    }

    #[test]
    fn alpha_bar_is_monotone_from_one_to_near_zero() {
        for s in schedules() {
            assert!(s.alpha_bar(Some(0)) < 1.0 && s.alpha_bar(Some(0)) > 0.99);
            for t in 1..s.len() {
                assert!(
                    s.alpha_bar(Some(t)) < s.alpha_bar(Some(t - 1)),
                    "not decreasing at {t}"
                );
                assert!(s.beta(t) > 0.0 && s.beta(t) < 1.0);
            }
            assert!(s.alpha_bar(Some(s.len() - 1)) < 1e-4);
        }
    }

    #[test]
    fn linear_alpha_bar_matches_product() {
        let s = &schedules()[0];
        let prod: f64 = (0..500)
            .map(|i| 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0))
            .product();
        assert!((s.alpha_bar(Some(499)) - prod).abs() < 1e-12);
    }

    #[test]
    fn cosine_alpha_bar_matches_closed_form() {
        let s = &schedules()[1];
        let f0 = cosine_f(0.0, 1000, 0.008);
        // Exact until β reaches the 0.999 clip in the last few steps.
        for t in [0usize, 1, 10, 100, 250, 500, 750, 900, 990] {
            let closed = cosine_f((t + 1) as f64, 1000, 0.008) / f0;
            let got = s.alpha_bar(Some(t));
            assert!(
                (got - closed).abs() < 1e-9 * closed.max(1e-3),
                "t={t}: {got} vs {closed}"
            );
        }
        // The integer-division bug of borrowed code would give β≈0 here; ours is clearly positive.
        assert!(s.beta(500) > 1e-3);
    }

    #[test]
    fn forward_process_has_the_closed_form_mean_and_variance() {
        let s = &schedules()[1];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let x0 = 1.7;
        for t in [0usize, 100, 500, 999] {
            let (a, b) = s.q_sample_coefs(t);
            let n = 200_000;
            let xs: Vec<f64> = (0..n)
                .map(|_| {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    a * x0 + b * e
                })
                .collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let ab = s.alpha_bar(Some(t));
            let tol_mean = 5.0 * ((1.0 - ab) / n as f64).sqrt() + 1e-12;
            assert!(
                (mean - ab.sqrt() * x0).abs() < tol_mean,
                "t={t} mean {mean}"
            );
            assert!(
                (var - (1.0 - ab)).abs() < 0.02 * (1.0 - ab) + 1e-9,
                "t={t} var {var}"
            );
        }
    }

    #[test]
    fn posterior_matches_gaussian_conditioning() {
        // x_{t-1} = √ᾱ_{t-1} x0 + s1 e1, x_t = √α_t x_{t-1} + √β_t e2: condition the joint Gaussian.
        for s in schedules() {
            for t in [1usize, 10, 300, 700, 999] {
                let (c0, ct, var) = s.posterior(t);
                let ab_prev = s.alpha_bar(Some(t - 1));
                let s1 = 1.0 - ab_prev;
                let vt = s.alpha(t) * s1 + s.beta(t);
                assert!((vt - (1.0 - s.alpha_bar(Some(t)))).abs() < 1e-12);
                let k = s.alpha(t).sqrt() * s1 / vt;
                assert!((ct - k).abs() < 1e-12);
                assert!((c0 - (ab_prev.sqrt() - k * s.alpha_bar(Some(t)).sqrt())).abs() < 1e-12);
                assert!((var - (s1 - s.alpha(t) * s1 * s1 / vt)).abs() < 1e-12);
            }
            let (c0, ct, var) = s.posterior(0);
            assert!((c0 - 1.0).abs() < 1e-12 && ct.abs() < 1e-12 && var.abs() < 1e-12);
        }
    }

    #[test]
    fn posterior_matches_monte_carlo_regression() {
        let s = &schedules()[0];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (x0, t, n) = (0.8, 400usize, 200_000);
        let (a_prev, b_prev) = s.q_sample_coefs(t - 1);
        let (mut sx, mut sy, mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for _ in 0..n {
            let e1: f64 = StandardNormal.sample(&mut rng);
            let e2: f64 = StandardNormal.sample(&mut rng);
            let prev = a_prev * x0 + b_prev * e1;
            let xt = s.alpha(t).sqrt() * prev + s.beta(t).sqrt() * e2;
            sx += xt;
            sy += prev;
            sxx += xt * xt;
            sxy += xt * prev;
            syy += prev * prev;
        }
        let nf = n as f64;
        let cov = sxy / nf - sx * sy / nf / nf;
        let vx = sxx / nf - (sx / nf).powi(2);
        let vy = syy / nf - (sy / nf).powi(2);
        let slope = cov / vx;
        let intercept = sy / nf - slope * sx / nf;
        let resid = vy - slope * cov;
        let (c0, ct, var) = s.posterior(t);
        assert!((slope - ct).abs() < 0.01, "slope {slope} vs {ct}");
        assert!(
            (intercept - c0 * x0).abs() < 0.01,
            "intercept {intercept} vs {}",
            c0 * x0
        );
        assert!((resid - var).abs() < 0.03 * var, "var {resid} vs {var}");
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = ScheduleConfig {
            timesteps: 1,
            beta: BetaSchedule::Cosine { s: 0.008 },
        };
        assert!(NoiseSchedule::new(&bad).is_err());
        let bad = ScheduleConfig {
            timesteps: 10,
            beta: BetaSchedule::Linear {
                beta_start: 0.5,
                beta_end: 0.1,
            },
        };
        assert!(NoiseSchedule::new(&bad).is_err());
    }
}
