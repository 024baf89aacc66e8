//! Synthetic cloud-like gap masks for the demo: smoothed noise at three scales, thresholded so a
//! given share of pixels is hidden (the recipe of `gapbench.py`'s `blobs`).

/// A `h × w` mask (true = hidden) covering about `fraction` of the pixels.
pub fn cloud_mask(h: usize, w: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let s = h.min(w) as f64 / 256.0;
    let mut field = vec![0.0f64; h * w];
    for (k, (sigma, weight)) in [(24.0, 1.0), (10.0, 0.5), (4.0, 0.25)]
        .into_iter()
        .enumerate()
    {
        let mut noise = white_noise(h * w, seed.wrapping_add(k as u64));
        let radius = ((sigma * s) as usize).max(1);
        // Three box blurs approximate a Gaussian of σ ≈ radius.
        for _ in 0..3 {
            noise = box_blur(&noise, h, w, radius);
        }
        let std = (noise.iter().map(|v| v * v).sum::<f64>() / noise.len() as f64)
            .sqrt()
            .max(1e-12);
        for (f, n) in field.iter_mut().zip(&noise) {
            *f += weight * n / std;
        }
    }
    let mut sorted = field.clone();
    sorted.sort_by(f64::total_cmp);
    let cut = sorted[((1.0 - fraction) * (sorted.len() - 1) as f64) as usize];
    field.iter().map(|&v| v > cut).collect()
}

/// Uniform noise in [-1, 1) from splitmix64 (stable across platforms and releases).
fn white_noise(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn box_blur(v: &[f64], h: usize, w: usize, r: usize) -> Vec<f64> {
    let pass = |src: &[f64], n: usize, stride: usize, lines: usize, step: usize| {
        let mut out = vec![0.0; src.len()];
        for line in 0..lines {
            for i in 0..n {
                let (lo, hi) = (i.saturating_sub(r), (i + r).min(n - 1));
                let sum: f64 = (lo..=hi).map(|j| src[line * step + j * stride]).sum();
                out[line * step + i * stride] = sum / (hi - lo + 1) as f64;
            }
        }
        out
    };
    let rows = pass(v, w, 1, h, w);
    pass(&rows, h, w, w, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_requested_share_deterministically() {
        let m = cloud_mask(128, 96, 0.3, 1);
        let share = m.iter().filter(|&&b| b).count() as f64 / m.len() as f64;
        assert!((share - 0.3).abs() < 0.01, "{share}");
        assert_eq!(m, cloud_mask(128, 96, 0.3, 1));
        assert_ne!(m, cloud_mask(128, 96, 0.3, 2));
    }
}
