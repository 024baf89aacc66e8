//! Scores of a fill against the truth on the pixels that were filled: RMSE, MAE, PSNR and SSIM
//! per band and overall, computed the way `gapbench.py` does (SSIM: 7×7 uniform window,
//! Wang et al. 2004 constants K1 = 0.01, K2 = 0.03, averaged over the scored pixels).

use serde::Serialize;

mod ensemble;
mod members;
mod seams;
mod variogram;

pub use ensemble::{crps_gaussian, probabilistic, Probabilistic};
pub use members::{ensemble_scores, EnsembleScores};
pub use seams::{seams, Region, SeamAccumulator, SeamLayout, Seams};
pub use variogram::{log_ratio_error, semivariogram, Variogram};

/// Scores of one band (or of all bands together).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Scored pixels (selected and finite in truth and prediction).
    pub pixels: u64,
    /// Selected pixels the prediction left NaN.
    pub unfilled: u64,
    /// Root-mean-square error.
    pub rmse: f64,
    /// RMSE divided by the band's standard deviation (truth, all finite pixels).
    pub nrmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Peak signal-to-noise ratio in dB, peak = the truth's range.
    pub psnr: f64,
    /// Mean structural similarity over the scored pixels.
    pub ssim: f64,
}

/// Scores per band plus the overall mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// One entry per plane (`[lead…]` flattened).
    pub bands: Vec<Scores>,
    /// Pixel-weighted RMSE/MAE over all bands; NRMSE and SSIM averaged over bands.
    pub overall: Scores,
}

/// Scores `pred` against `truth` (both `[planes, h, w]` row-major) on pixels where `select` is
/// true (`None`: every pixel).
pub fn score(pred: &[f32], truth: &[f32], select: Option<&[bool]>, h: usize, w: usize) -> Report {
    let plane = h * w;
    let planes = truth.len().checked_div(plane).unwrap_or(0);
    let bands: Vec<Scores> = (0..planes)
        .map(|b| {
            let r = b * plane..(b + 1) * plane;
            band(
                &pred[r.clone()],
                &truth[r.clone()],
                select.map(|s| &s[r]),
                h,
                w,
            )
        })
        .collect();
    let pixels: u64 = bands.iter().map(|s| s.pixels).sum();
    let weighted = |f: fn(&Scores) -> f64, sq: bool| {
        let total: f64 = bands
            .iter()
            .map(|s| s.pixels as f64 * if sq { f(s).powi(2) } else { f(s) })
            .sum();
        let mean = total / pixels.max(1) as f64;
        if sq {
            mean.sqrt()
        } else {
            mean
        }
    };
    let mean = |f: fn(&Scores) -> f64| {
        let v: Vec<f64> = bands.iter().filter(|s| s.pixels > 0).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let overall = Scores {
        pixels,
        unfilled: bands.iter().map(|s| s.unfilled).sum(),
        rmse: weighted(|s| s.rmse, true),
        nrmse: mean(|s| s.nrmse),
        mae: weighted(|s| s.mae, false),
        psnr: mean(|s| s.psnr),
        ssim: mean(|s| s.ssim),
    };
    Report { bands, overall }
}

fn band(pred: &[f32], truth: &[f32], select: Option<&[bool]>, h: usize, w: usize) -> Scores {
    let finite: Vec<f64> = truth
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    let n = finite.len().max(1) as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let std = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let range = if hi > lo { hi - lo } else { 1.0 };
    let chosen = |i: usize| select.is_none_or(|s| s[i]) && truth[i].is_finite();
    let (mut se, mut ae, mut count, mut unfilled) = (0.0, 0.0, 0u64, 0u64);
    for i in 0..truth.len() {
        if !chosen(i) {
            continue;
        }
        if !pred[i].is_finite() {
            unfilled += 1;
            continue;
        }
        let e = f64::from(pred[i]) - f64::from(truth[i]);
        se += e * e;
        ae += e.abs();
        count += 1;
    }
    let rmse = (se / count.max(1) as f64).sqrt();
    let ssim_map = ssim_map(pred, truth, h, w, mean, range);
    let ssim_sum: f64 = (0..truth.len())
        .filter(|&i| chosen(i) && pred[i].is_finite())
        .map(|i| ssim_map[i])
        .sum();
    Scores {
        pixels: count,
        unfilled,
        rmse,
        nrmse: rmse / if std > 0.0 { std } else { 1.0 },
        mae: ae / count.max(1) as f64,
        psnr: if rmse > 0.0 {
            20.0 * (range / rmse).log10()
        } else {
            f64::INFINITY
        },
        ssim: ssim_sum / count.max(1) as f64,
    }
}

/// SSIM map with a 7×7 uniform window (reflect at borders); NaNs are replaced by the truth
/// (prediction) or the truth's mean (truth), as gapbench does.
fn ssim_map(pred: &[f32], truth: &[f32], h: usize, w: usize, fill: f64, range: f64) -> Vec<f64> {
    let t: Vec<f64> = truth
        .iter()
        .map(|&v| if v.is_finite() { f64::from(v) } else { fill })
        .collect();
    let p: Vec<f64> = pred
        .iter()
        .zip(&t)
        .map(|(&v, &tv)| if v.is_finite() { f64::from(v) } else { tv })
        .collect();
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    let win = 7usize;
    let r = (win / 2) as isize;
    let np = (win * win) as f64;
    let cov_norm = np / (np - 1.0);
    let at = |v: &[f64], y: isize, x: isize| {
        let reflect = |i: isize, n: usize| -> usize {
            let n = n as isize;
            let mut i = i;
            if n == 1 {
                return 0;
            }
            while i < 0 || i >= n {
                i = if i < 0 { -i } else { 2 * (n - 1) - i };
            }
            i as usize
        };
        v[reflect(y, h) * w + reflect(x, w)]
    };
    let mut out = vec![0.0; h * w];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let (mut sp, mut st, mut spp, mut stt, mut spt) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in -r..=r {
                for dx in -r..=r {
                    let (a, b) = (at(&p, y + dy, x + dx), at(&t, y + dy, x + dx));
                    sp += a;
                    st += b;
                    spp += a * a;
                    stt += b * b;
                    spt += a * b;
                }
            }
            let (mp, mt) = (sp / np, st / np);
            let vp = cov_norm * (spp / np - mp * mp);
            let vt = cov_norm * (stt / np - mt * mt);
            let cpt = cov_norm * (spt / np - mp * mt);
            out[y as usize * w + x as usize] = ((2.0 * mp * mt + c1) * (2.0 * cpt + c2))
                / ((mp * mp + mt * mt + c1) * (vp + vt + c2));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_prediction_scores_perfectly() {
        let truth: Vec<f32> = (0..400).map(|i| ((i * 37) % 101) as f32).collect();
        let r = score(&truth, &truth, None, 20, 20);
        assert_eq!(r.overall.rmse, 0.0);
        assert!((r.overall.ssim - 1.0).abs() < 1e-9);
    }

    #[test]
    fn known_error_gives_known_rmse_and_counts_unfilled() {
        let truth = vec![1.0f32; 100];
        let mut pred = vec![3.0f32; 100];
        pred[0] = f32::NAN;
        let select: Vec<bool> = (0..100).map(|i| i < 50).collect();
        let r = score(&pred, &truth, Some(&select), 10, 10);
        assert_eq!(r.overall.pixels, 49);
        assert_eq!(r.overall.unfilled, 1);
        assert!((r.overall.rmse - 2.0).abs() < 1e-12);
        assert!((r.overall.mae - 2.0).abs() < 1e-12);
    }
}
