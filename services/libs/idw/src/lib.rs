//! Inverse-distance fill of missing pixels, in the spirit of GDAL's FillNodata: each missing pixel
//! looks outward along [`RAYS`] directions for the nearest observed pixel and averages what it
//! finds with weights 1/d². Sources are observed pixels only, never earlier fills, so the result
//! does not depend on scan order.

use std::f64::consts::TAU;

use tiling::Window;

/// Directions searched from each missing pixel (every 22.5°).
pub const RAYS: usize = 16;

/// Fills the NaN pixels of one `h × w` plane in place; returns how many stayed NaN (no observed
/// pixel on any ray inside the plane).
pub fn fill_plane(plane: &mut [f32], h: usize, w: usize) -> usize {
    let region = Window::new(0, 0, h as u64, w as u64);
    let filled = fill_region(plane, h, w, &region);
    let unfilled = filled.iter().filter(|v| v.is_nan()).count();
    plane.copy_from_slice(&filled);
    unfilled
}

/// The pixels of `region` (inside the `h × w` plane) with their gaps filled from the observed
/// pixels of the whole plane. Only the region is computed, so a wide context stays cheap.
pub fn fill_region(plane: &[f32], h: usize, w: usize, region: &Window) -> Vec<f32> {
    let dirs: Vec<(f64, f64)> = (0..RAYS)
        .map(|k| {
            let a = TAU * k as f64 / RAYS as f64;
            (a.sin(), a.cos())
        })
        .collect();
    let mut out = Vec::with_capacity(region.area() as usize);
    for y in region.y0 as usize..region.y1() as usize {
        for x in region.x0 as usize..region.x1() as usize {
            let v = plane[y * w + x];
            out.push(if v.is_nan() {
                weighted_mean(plane, h, w, y, x, &dirs).unwrap_or(f32::NAN)
            } else {
                v
            });
        }
    }
    out
}

/// 1/d²-weighted mean of the first observed pixel along each ray from (y, x).
fn weighted_mean(
    source: &[f32],
    h: usize,
    w: usize,
    y: usize,
    x: usize,
    dirs: &[(f64, f64)],
) -> Option<f32> {
    let (mut sum, mut weight) = (0.0f64, 0.0f64);
    for &(dy, dx) in dirs {
        let mut t = 1.0f64;
        loop {
            let py = (y as f64 + dy * t).round();
            let px = (x as f64 + dx * t).round();
            if py < 0.0 || px < 0.0 || py >= h as f64 || px >= w as f64 {
                break;
            }
            let v = source[py as usize * w + px as usize];
            if !v.is_nan() {
                let d2 = (py - y as f64).powi(2) + (px - x as f64).powi(2);
                sum += f64::from(v) / d2;
                weight += 1.0 / d2;
                break;
            }
            t += 1.0;
        }
    }
    (weight > 0.0).then(|| (sum / weight) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_a_hole_in_a_plane_exactly_and_keeps_observed_pixels() {
        let (h, w) = (20, 30);
        let truth: Vec<f32> = vec![3.25; h * w];
        let mut plane = truth.clone();
        for y in 5..12 {
            for x in 8..20 {
                plane[y * w + x] = f32::NAN;
            }
        }
        assert_eq!(fill_plane(&mut plane, h, w), 0);
        assert!(plane.iter().zip(&truth).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn interpolates_between_sides() {
        // A ramp with its middle column missing: the fill lies between the neighbours.
        let (h, w) = (9, 9);
        let mut plane: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        for y in 0..h {
            plane[y * w + 4] = f32::NAN;
        }
        fill_plane(&mut plane, h, w);
        for y in 0..h {
            let v = plane[y * w + 4];
            assert!(
                (3.0..=5.0).contains(&v) && (v - 4.0).abs() < 0.5,
                "row {y}: {v}"
            );
        }
    }

    #[test]
    fn a_plane_without_observations_stays_missing() {
        let mut plane = vec![f32::NAN; 16];
        assert_eq!(fill_plane(&mut plane, 4, 4), 16);
    }
}
