//! Probabilistic scores of a fill that reports an ensemble mean μ and spread σ per pixel (the
//! `data` and `spread` arrays of a diffusion fill with `--ensemble > 1`): the CRPS of the
//! Gaussian N(μ, σ²) and the spread/skill ratio, as forecast verification scores them.

use serde::Serialize;

/// Probabilistic scores over the scored pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probabilistic {
    /// Pixels scored (selected, finite truth, mean and spread).
    pub pixels: u64,
    /// Mean CRPS of N(μ, σ²) against the truth (Gneiting & Raftery 2007, eq. 21), in data units;
    /// equals the MAE where σ = 0. Lower is better.
    pub crps_gaussian: f64,
    /// √mean(σ²) / RMSE(μ): 1 for a calibrated spread, below 1 over-confident, above 1
    /// under-confident.
    pub spread_skill: f64,
}

/// Standard normal density.
fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Complementary error function (W. J. Cody's rational Chebyshev fit as given in Numerical
/// Recipes §6.2, `erfcc`; fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Standard normal distribution function.
fn cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// CRPS of N(`mu`, `sigma`²) at observation `y`: σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ.
pub fn crps_gaussian(mu: f64, sigma: f64, y: f64) -> f64 {
    if sigma <= 0.0 {
        return (y - mu).abs();
    }
    let z = (y - mu) / sigma;
    sigma * (z * (2.0 * cdf(z) - 1.0) + 2.0 * pdf(z) - 1.0 / std::f64::consts::PI.sqrt())
}

/// Scores `mean` with `spread` against `truth` (same layout) where `select` is true (`None`:
/// every pixel); pixels where any of the three is not finite are skipped.
pub fn probabilistic(
    mean: &[f32],
    spread: &[f32],
    truth: &[f32],
    select: Option<&[bool]>,
) -> Probabilistic {
    let (mut n, mut crps, mut var, mut err2) = (0u64, 0f64, 0f64, 0f64);
    for i in 0..truth.len() {
        let (m, s, y) = (mean[i], spread[i], truth[i]);
        if select.is_some_and(|sel| !sel[i]) || !(m.is_finite() && s.is_finite() && y.is_finite()) {
            continue;
        }
        let (m, s, y) = (f64::from(m), f64::from(s), f64::from(y));
        n += 1;
        crps += crps_gaussian(m, s, y);
        var += s * s;
        err2 += (m - y).powi(2);
    }
    let k = n.max(1) as f64;
    let rmse = (err2 / k).sqrt();
    Probabilistic {
        pixels: n,
        crps_gaussian: crps / k,
        spread_skill: if rmse > 0.0 {
            (var / k).sqrt() / rmse
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crps_has_its_closed_form_limits() {
        // σ → 0 gives the absolute error; at y = μ the CRPS is σ (√2 − 1)/√π.
        assert!((crps_gaussian(1.0, 0.0, 3.5) - 2.5).abs() < 1e-12);
        assert!((crps_gaussian(1.0, 1e-9, 3.5) - 2.5).abs() < 1e-6);
        let at_mean = 2.0 * (2f64.sqrt() - 1.0) / std::f64::consts::PI.sqrt();
        assert!((crps_gaussian(0.0, 2.0, 0.0) - at_mean).abs() < 1e-6);
        // Φ from erfc: Φ(0) = 0.5, Φ(1.96) ≈ 0.975.
        assert!((cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((cdf(1.959_963_985) - 0.975).abs() < 1e-6);
    }

    #[test]
    fn calibrated_gaussian_errors_give_spread_skill_near_one() {
        // Errors drawn from N(0, 2²) with a reported spread of 2: ratio ≈ 1.
        let n = 20_000;
        let truth: Vec<f32> = (0..n)
            .map(|i| {
                // Box–Muller from a fixed low-discrepancy sequence, deterministic.
                let u1 = ((i as f64 + 0.5) / n as f64).clamp(1e-9, 1.0);
                let u2 = ((i * 7919) % n) as f64 / n as f64;
                (2.0 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect();
        let mean = vec![0f32; n];
        let spread = vec![2f32; n];
        let p = probabilistic(&mean, &spread, &truth, None);
        assert_eq!(p.pixels, n as u64);
        assert!((p.spread_skill - 1.0).abs() < 0.05, "{}", p.spread_skill);
        let half = probabilistic(&mean, &vec![1f32; n], &truth, None);
        assert!((half.spread_skill - 0.5).abs() < 0.03);
        // An over-confident spread scores a worse CRPS than the calibrated one.
        assert!(half.crps_gaussian > p.crps_gaussian);
    }
}
