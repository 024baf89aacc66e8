//! Per-band normalisation from observed pixels: z = (x − mean_b) / std_b.

use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::ModelError;

/// Per-band statistics of the observed (non-NaN) training pixels, in data units. Stored in the
/// checkpoint so that filling uses the training scene's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    /// Mean per band.
    pub mean: Vec<f64>,
    /// Standard deviation per band (at least a tiny positive floor).
    pub std: Vec<f64>,
    /// Minimum observed value per band.
    pub min: Vec<f64>,
    /// Maximum observed value per band.
    pub max: Vec<f64>,
}

impl Normalisation {
    /// Statistics over all dates of `values` laid out as `layout`.
    ///
    /// # Errors
    /// [`ModelError::Config`] when a band has no observed pixel.
    pub fn from_values(layout: &Layout, values: &[f32]) -> Result<Self, ModelError> {
        Self::from_parts(&[(*layout, values)])
    }

    /// Statistics over all dates of several scenes with the same bands, pooled (each pixel
    /// counts once, so a larger scene weighs more).
    ///
    /// # Errors
    /// [`ModelError::Config`] when a band has no observed pixel.
    pub fn from_parts(parts: &[(Layout, &[f32])]) -> Result<Self, ModelError> {
        let b = parts.first().map_or(0, |p| p.0.bands);
        let (mut n, mut s, mut ss) = (vec![0usize; b], vec![0f64; b], vec![0f64; b]);
        let (mut lo, mut hi) = (vec![f64::INFINITY; b], vec![f64::NEG_INFINITY; b]);
        for (layout, values) in parts {
            for (plane, chunk) in values.chunks_exact(layout.plane()).enumerate() {
                let band = plane % b;
                for &v in chunk.iter().filter(|v| v.is_finite()) {
                    let v = f64::from(v);
                    n[band] += 1;
                    s[band] += v;
                    ss[band] += v * v;
                    lo[band] = lo[band].min(v);
                    hi[band] = hi[band].max(v);
                }
            }
        }
        let mut mean = Vec::with_capacity(b);
        let mut std = Vec::with_capacity(b);
        for band in 0..b {
            if n[band] == 0 {
                return Err(ModelError::Config {
                    field: "scene",
                    reason: format!("band {band} has no observed pixel"),
                });
            }
            let m = s[band] / n[band] as f64;
            let var = (ss[band] / n[band] as f64 - m * m).max(0.0);
            mean.push(m);
            std.push(var.sqrt().max(1e-6 * m.abs().max(1.0)));
        }
        Ok(Self {
            mean,
            std,
            min: lo,
            max: hi,
        })
    }

    /// Number of bands.
    pub fn bands(&self) -> usize {
        self.mean.len()
    }

    /// Data units → normalised.
    pub fn forward(&self, band: usize, v: f32) -> f32 {
        ((f64::from(v) - self.mean[band]) / self.std[band]) as f32
    }

    /// Normalised → data units.
    pub fn inverse(&self, band: usize, z: f32) -> f32 {
        (f64::from(z) * self.std[band] + self.mean[band]) as f32
    }

    /// Range to which predicted x̂_0 is clipped during sampling, per band in normalised units: the
    /// observed range widened by one standard deviation on each side.
    pub fn clip_range(&self, band: usize) -> (f32, f32) {
        let (lo, hi) = self.observed_range(band);
        (lo - 1.0, hi + 1.0)
    }

    /// The band's observed range in normalised units: filled values are clamped to it, so a fill
    /// never leaves the range of the scene it was trained on (DN data stays in 0–255, say).
    pub fn observed_range(&self, band: usize) -> (f32, f32) {
        let lo = (self.min[band] - self.mean[band]) / self.std[band];
        let hi = (self.max[band] - self.mean[band]) / self.std[band];
        (lo as f32, hi as f32)
    }

    /// Check the statistics are finite and match `bands`.
    pub(crate) fn validate(&self, bands: usize) -> Result<(), ModelError> {
        let ok = [&self.mean, &self.std, &self.min, &self.max]
            .iter()
            .all(|v| v.len() == bands && v.iter().all(|x| x.is_finite()))
            && self.std.iter().all(|s| *s > 0.0);
        if ok {
            Ok(())
        } else {
            Err(ModelError::CheckpointContent {
                reason: format!(
                    "normalisation is not {bands} finite per-band statistics with std > 0"
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_ignore_missing_pixels_and_round_trip() -> anyhow::Result<()> {
        let layout = Layout::from_shape(&[2, 1, 3], 6)?;
        let values = [1.0, 3.0, f32::NAN, 10.0, f32::NAN, 30.0];
        let n = Normalisation::from_values(&layout, &values)?;
        assert_eq!(n.mean, vec![2.0, 20.0]);
        assert_eq!(n.std, vec![1.0, 10.0]);
        assert_eq!((n.min[1], n.max[1]), (10.0, 30.0));
        assert_eq!(n.forward(1, 30.0), 1.0);
        assert_eq!(n.inverse(1, 1.0), 30.0);
        assert_eq!(n.clip_range(0), (-2.0, 2.0));
        assert_eq!(n.observed_range(0), (-1.0, 1.0));
        let empty = [f32::NAN; 6];
        assert!(Normalisation::from_values(&layout, &empty).is_err());
        Ok(())
    }
}
