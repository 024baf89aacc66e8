//! Empirical semivariograms: how fast a field decorrelates with distance. For generated or filled
//! fields, comparing the prediction's variogram with the truth's tells whether the texture is
//! right (too smooth → too low at short lags), which pixel-wise scores cannot.

use serde::Serialize;

/// γ(h) = ½·mean((z(x+h) − z(x))²) over horizontal and vertical pixel pairs at lag h, per lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variogram {
    /// Lags in pixels, 1..=max_lag.
    pub lags: Vec<usize>,
    /// Semivariance per lag (NaN where no finite pair exists).
    pub gamma: Vec<f64>,
}

/// The semivariogram of one `h × w` plane, optionally only over pairs whose both ends are in
/// `select` (NaN values are skipped).
pub fn semivariogram(
    plane: &[f32],
    select: Option<&[bool]>,
    h: usize,
    w: usize,
    max_lag: usize,
) -> Variogram {
    let ok = |i: usize| plane[i].is_finite() && select.is_none_or(|s| s[i]);
    let lags: Vec<usize> = (1..=max_lag).collect();
    let gamma = lags
        .iter()
        .map(|&lag| {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    if !ok(i) {
                        continue;
                    }
                    for j in [
                        (x + lag < w).then(|| i + lag),
                        (y + lag < h).then(|| i + lag * w),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if ok(j) {
                            sum += f64::from(plane[j] - plane[i]).powi(2);
                            n += 1;
                        }
                    }
                }
            }
            if n == 0 {
                f64::NAN
            } else {
                sum / (2 * n) as f64
            }
        })
        .collect();
    Variogram { lags, gamma }
}

/// Mean over lags of |log(γ_pred / γ_truth)|: 0 when the textures match, ln 2 ≈ 0.69 when the
/// prediction's variance at each lag is off by a factor of 2.
pub fn log_ratio_error(pred: &Variogram, truth: &Variogram) -> f64 {
    let terms: Vec<f64> = pred
        .gamma
        .iter()
        .zip(&truth.gamma)
        .filter(|(p, t)| p.is_finite() && t.is_finite() && **p > 0.0 && **t > 0.0)
        .map(|(p, t)| (p / t).ln().abs())
        .collect();
    terms.iter().sum::<f64>() / terms.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_noise_is_flat_and_a_ramp_grows_quadratically() {
        let (h, w) = (64, 64);
        let ramp: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let v = semivariogram(&ramp, None, h, w, 4);
        // Horizontal pairs differ by lag, vertical ones by 0: γ = ½·lag²·(share of horizontal pairs).
        assert!(
            v.gamma[3] / v.gamma[0] > 15.0 && v.gamma[3] / v.gamma[0] < 17.0,
            "{:?}",
            v.gamma
        );
        assert_eq!(log_ratio_error(&v, &v), 0.0);
        let smooth: Vec<f32> = ramp.iter().map(|r| r * 0.5).collect();
        let s = semivariogram(&smooth, None, h, w, 4);
        assert!((log_ratio_error(&s, &v) - 4f64.ln()).abs() < 1e-9);
    }
}
