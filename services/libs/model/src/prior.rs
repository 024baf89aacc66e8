//! The spatial prior the network refines: residual diffusion.
//!
//! The model does not diffuse the normalised values z themselves but the residual
//! r = (z − p) / s of an inverse-distance interpolation p of the observed pixels (the `idw`
//! method, see the `idw` crate), scaled per band by the residual's typical size s on synthetic
//! gaps (CorrDiff, Mardani et al. 2023, splits a deterministic mean and a diffusion residual the
//! same way). Observed pixels have r = 0; the prior is also a conditioning channel. So an
//! untrained or uncertain network falls back to the interpolation rather than to the band mean,
//! and its capacity goes to what interpolation cannot do: texture, edges, other dates.

use tiling::Window;

/// The prior over `region` of one normalised `h × w` plane (NaN = missing, `hide` = extra hidden
/// pixels of the whole plane): observed pixels unchanged, gaps interpolated, and 0 (the band
/// mean) where the plane has no observed pixel at all.
pub(crate) fn idw_prior(
    plane: &[f32],
    (h, w): (usize, usize),
    hide: Option<&[bool]>,
    region: &Window,
) -> Vec<f32> {
    let visible: Vec<f32> = match hide {
        Some(g) => plane
            .iter()
            .zip(g)
            .map(|(&v, &hidden)| if hidden { f32::NAN } else { v })
            .collect(),
        None => plane.to_vec(),
    };
    idw::fill_region(&visible, (h, w), region, None)
        .into_iter()
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_keeps_observed_interpolates_gaps_and_falls_back_to_the_mean() {
        let plane = [1.0, f32::NAN, 3.0, 7.0];
        let all = Window::new(0, 0, 2, 2);
        let p = idw_prior(&plane, (2, 2), None, &all);
        assert_eq!((p[0], p[2], p[3]), (1.0, 3.0, 7.0));
        assert!(p[1] > 1.0 && p[1] < 7.0, "{}", p[1]);
        let hidden = idw_prior(&plane, (2, 2), Some(&[false, false, true, false]), &all);
        assert!(hidden[2].is_finite() && hidden[2] != 3.0);
        let none = idw_prior(&[f32::NAN; 4], (2, 2), None, &Window::new(1, 0, 1, 2));
        assert_eq!(none, vec![0.0, 0.0]);
    }
}
