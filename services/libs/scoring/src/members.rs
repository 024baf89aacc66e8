//! Scores of an ensemble given by its members (the `members` array of a diffusion fill with
//! `--members`), as forecast verification scores them: the fair CRPS (Ferro 2014), the
//! spread/skill ratio with the finite-ensemble correction (Fortin et al. 2014) and the rank
//! histogram (Hamill 2001).

use serde::Serialize;

/// Ensemble scores over the scored pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnsembleScores {
    /// Members per pixel.
    pub members: usize,
    /// Pixels scored (selected, finite truth and members).
    pub pixels: u64,
    /// Mean fair CRPS: (1/K) Σ|xᵢ − y| − 1/(2K(K−1)) ΣΣ|xᵢ − xⱼ|, in data units; unbiased for
    /// the CRPS of the distribution the members are drawn from. Lower is better.
    pub crps_fair: f64,
    /// Mean CRPS of the members' empirical distribution (`properscoring.crps_ensemble`).
    pub crps_ensemble: f64,
    /// √((K+1)/K · mean s²) / RMSE(ensemble mean), s² the members' variance (K−1
    /// denominator): 1 when the truth is statistically one more member.
    pub spread_skill: f64,
    /// How many scored pixels had their truth above exactly r members, r = 0…K (ties count as
    /// below). Flat for a calibrated ensemble; U-shaped when it is too narrow.
    pub rank_histogram: Vec<u64>,
}

/// Scores the ensemble `members` (`k` blocks of `truth.len()` values, member-major) against
/// `truth` where `select` is true (`None`: every pixel); a pixel where the truth or any member
/// is not finite is skipped.
///
/// # Panics
/// Never for consistent inputs; `members.len()` must be `k * truth.len()` and `k ≥ 2`.
pub fn ensemble_scores(
    members: &[f32],
    k: usize,
    truth: &[f32],
    select: Option<&[bool]>,
) -> EnsembleScores {
    let n = truth.len();
    assert!(
        k >= 2 && members.len() == k * n,
        "{} members values for k = {k}, n = {n}",
        members.len()
    );
    let (mut pixels, mut fair, mut crps, mut var, mut err2) = (0u64, 0f64, 0f64, 0f64, 0f64);
    let mut ranks = vec![0u64; k + 1];
    let mut x = vec![0f64; k];
    let kf = k as f64;
    for i in 0..n {
        let y = f64::from(truth[i]);
        if select.is_some_and(|s| !s[i]) || !y.is_finite() {
            continue;
        }
        for (m, xm) in x.iter_mut().enumerate() {
            *xm = f64::from(members[m * n + i]);
        }
        if !x.iter().all(|v| v.is_finite()) {
            continue;
        }
        x.sort_by(f64::total_cmp);
        let abs_err = x.iter().map(|v| (v - y).abs()).sum::<f64>() / kf;
        // ΣᵢΣⱼ|xᵢ − xⱼ| = 2 Σᵢ (2i − K + 1) x₍ᵢ₎ for sorted members (0-based i).
        let pairs: f64 = 2.0
            * x.iter()
                .enumerate()
                .map(|(r, v)| (2.0 * r as f64 - kf + 1.0) * v)
                .sum::<f64>();
        fair += abs_err - pairs / (2.0 * kf * (kf - 1.0));
        crps += abs_err - pairs / (2.0 * kf * kf);
        let mean = x.iter().sum::<f64>() / kf;
        var += x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (kf - 1.0);
        err2 += (mean - y).powi(2);
        ranks[x.partition_point(|&v| v < y)] += 1;
        pixels += 1;
    }
    let p = pixels.max(1) as f64;
    let rmse = (err2 / p).sqrt();
    EnsembleScores {
        members: k,
        pixels,
        crps_fair: fair / p,
        crps_ensemble: crps / p,
        spread_skill: if rmse > 0.0 {
            ((kf + 1.0) / kf * var / p).sqrt() / rmse
        } else {
            0.0
        },
        rank_histogram: ranks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_members_by_hand() {
        // Members 1 and 3, truth 2: mean |x − y| = 1, ΣΣ|xᵢ − xⱼ| = 4.
        let s = ensemble_scores(&[1.0, 3.0], 2, &[2.0], None);
        assert_eq!(s.pixels, 1);
        assert!((s.crps_fair - (1.0 - 4.0 / 4.0)).abs() < 1e-12);
        assert!((s.crps_ensemble - (1.0 - 4.0 / 8.0)).abs() < 1e-12);
        assert_eq!(s.rank_histogram, vec![0, 1, 0]);
        // Truth below every member lands in the first bin; a pixel with a NaN member is
        // skipped (members are member-major: pixel 0 has 1 and 5, pixel 1 has 3 and NaN).
        let s = ensemble_scores(&[1.0, 3.0, 5.0, f32::NAN], 2, &[0.0, 4.0], None);
        assert_eq!((s.pixels, s.rank_histogram.clone()), (1, vec![1, 0, 0]));
    }

    #[test]
    fn exchangeable_truth_gives_a_flat_histogram_and_unit_ratio() {
        // Truth and 4 members drawn alike (a deterministic hash as the random source).
        let (k, n) = (4usize, 40_000usize);
        let draw = |i: usize| {
            // splitmix64 of the index.
            let mut z = (i as u64)
                .wrapping_add(1)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 10.0) as f32
        };
        let truth: Vec<f32> = (0..n).map(draw).collect();
        let members: Vec<f32> = (0..k * n).map(|i| draw(n + i)).collect();
        let s = ensemble_scores(&members, k, &truth, None);
        for &count in &s.rank_histogram {
            let share = count as f64 / n as f64;
            assert!((share - 0.2).abs() < 0.01, "{:?}", s.rank_histogram);
        }
        assert!((s.spread_skill - 1.0).abs() < 0.03, "{}", s.spread_skill);
        assert!(s.crps_fair < s.crps_ensemble + 1e-12);
    }
}
