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
        let mut m = Moments::new(parts.first().map_or(0, |p| p.0.bands));
        for (layout, values) in parts {
            for (plane, chunk) in values.chunks_exact(layout.plane()).enumerate() {
                m.add(plane % layout.bands, chunk);
            }
        }
        m.finish()
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

/// Running per-band sums of observed values, from which [`Normalisation`] is made.
#[derive(Debug, Clone)]
pub(crate) struct Moments {
    n: Vec<usize>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Moments {
    /// Nothing seen yet, for `bands` bands.
    pub(crate) fn new(bands: usize) -> Self {
        Self {
            n: vec![0; bands],
            sum: vec![0.0; bands],
            sum_sq: vec![0.0; bands],
            lo: vec![f64::INFINITY; bands],
            hi: vec![f64::NEG_INFINITY; bands],
        }
    }

    /// Counts the finite values of `values` for `band`.
    pub(crate) fn add(&mut self, band: usize, values: &[f32]) {
        for &v in values.iter().filter(|v| v.is_finite()) {
            let v = f64::from(v);
            self.n[band] += 1;
            self.sum[band] += v;
            self.sum_sq[band] += v * v;
            self.lo[band] = self.lo[band].min(v);
            self.hi[band] = self.hi[band].max(v);
        }
    }

    /// The statistics.
    ///
    /// # Errors
    /// [`ModelError::Config`] when a band has no observed pixel.
    pub(crate) fn finish(self) -> Result<Normalisation, ModelError> {
        let b = self.n.len();
        let mut mean = Vec::with_capacity(b);
        let mut std = Vec::with_capacity(b);
        for band in 0..b {
            if self.n[band] == 0 {
                return Err(ModelError::Config {
                    field: "scene",
                    reason: format!("band {band} has no observed pixel"),
                });
            }
            let n = self.n[band] as f64;
            let m = self.sum[band] / n;
            let var = (self.sum_sq[band] / n - m * m).max(0.0);
            mean.push(m);
            std.push(var.sqrt().max(1e-6 * m.abs().max(1.0)));
        }
        Ok(Normalisation {
            mean,
            std,
            min: self.lo,
            max: self.hi,
        })
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
