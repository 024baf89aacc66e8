//! Array layouts ([band,y,x] or [time,band,y,x]) and the conditioning stack built from them.
//!
//! For a target date the conditioning channels are, in order: the observed values of its bands
//! (normalised, 0 in gaps), its per-band gap mask (1 = missing), then for each of the
//! `context_dates` nearest other dates (by index distance, earlier first on ties; missing dates
//! when the array has fewer) the same pair of values and mask; last, the target date's prior (the
//! interpolation the network refines, see [`crate::prior`]) per band. So
//! `cond_channels = 2·bands·(1 + context_dates) + bands`.

use crate::ModelError;

/// The shape of a scene or tile as (dates, bands, height, width); a 3-D array has one date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Whether the array had a time axis.
    pub has_time: bool,
    /// Number of dates (1 for [band,y,x]).
    pub times: usize,
    /// Bands per date.
    pub bands: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl Layout {
    /// Parse `[band,y,x]` or `[time,band,y,x]` and check it fits `len` values.
    ///
    /// # Errors
    /// [`ModelError::Shape`] for another rank, a zero dimension or a value count that does not fit.
    pub fn from_shape(shape: &[usize], len: usize) -> Result<Self, ModelError> {
        let l = match *shape {
            [b, h, w] => Self {
                has_time: false,
                times: 1,
                bands: b,
                height: h,
                width: w,
            },
            [t, b, h, w] => Self {
                has_time: true,
                times: t,
                bands: b,
                height: h,
                width: w,
            },
            _ => {
                return Err(ModelError::Shape {
                    what: "array rank ([band,y,x] or [time,band,y,x])".into(),
                    expected: vec![3],
                    got: vec![shape.len()],
                })
            }
        };
        if shape.contains(&0) || shape.iter().product::<usize>() != len {
            return Err(ModelError::Shape {
                what: format!("values of an array of shape {shape:?}"),
                expected: vec![shape.iter().product()],
                got: vec![len],
            });
        }
        Ok(l)
    }

    /// Leading dimensions: `[bands]` or `[times, bands]`.
    pub fn lead_shape(&self) -> Vec<usize> {
        if self.has_time {
            vec![self.times, self.bands]
        } else {
            vec![self.bands]
        }
    }

    /// Pixels per plane.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Offset of (date, band) plane.
    pub fn plane_offset(&self, date: usize, band: usize) -> usize {
        (date * self.bands + band) * self.plane()
    }

    /// Number of conditioning channels for `bands` and `context_dates`.
    pub fn cond_channels(bands: usize, context_dates: usize) -> usize {
        2 * bands * (1 + context_dates) + bands
    }
}

/// The `k` dates nearest to `date` among `0..times` (excluding it), nearest first, earlier first on
/// ties; padded with `None` when there are fewer.
pub fn nearest_dates(date: usize, times: usize, k: usize) -> Vec<Option<usize>> {
    let mut others: Vec<usize> = (0..times).filter(|&d| d != date).collect();
    others.sort_by_key(|&d| (d.abs_diff(date), d));
    (0..k).map(|i| others.get(i).copied()).collect()
}

/// Write the conditioning stack of one target date for the window (y0, x0, size h×w) of a
/// normalised array `z` (NaN = missing) into `out` (channels × h × w). `gap` (h×w, true = hide)
/// hides extra pixels of the target date (synthetic gaps in training; `None` when filling).
/// `prior` (bands × h × w, finite) is the target date's prior over the window.
#[allow(clippy::too_many_arguments)]
pub fn write_cond(
    layout: &Layout,
    z: &[f32],
    date: usize,
    context_dates: usize,
    (y0, x0, h, w): (usize, usize, usize, usize),
    gap: Option<&[bool]>,
    prior: &[f32],
    out: &mut Vec<f32>,
) {
    let b = layout.bands;
    let pair = |d: Option<usize>, hide: Option<&[bool]>, out: &mut Vec<f32>| {
        let start = out.len();
        out.resize(start + 2 * b * h * w, 0.0);
        let (vals, masks) = out[start..].split_at_mut(b * h * w);
        for band in 0..b {
            for y in 0..h {
                for x in 0..w {
                    let i = band * h * w + y * w + x;
                    let v = d.map_or(f32::NAN, |d| {
                        z[layout.plane_offset(d, band) + (y0 + y) * layout.width + x0 + x]
                    });
                    let hidden = hide.is_some_and(|g| g[y * w + x]);
                    if v.is_finite() && !hidden {
                        vals[i] = v;
                    } else {
                        masks[i] = 1.0;
                    }
                }
            }
        }
    };
    pair(Some(date), gap, out);
    for d in nearest_dates(date, layout.times, context_dates) {
        pair(d, None, out);
    }
    out.extend_from_slice(prior);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layouts_and_rejects_bad_ones() {
        let l = Layout::from_shape(&[2, 3, 4, 5], 120).ok();
        assert_eq!(
            l.map(|l| (l.times, l.bands, l.plane(), l.lead_shape())),
            Some((2, 3, 20, vec![2, 3]))
        );
        assert!(Layout::from_shape(&[3, 4, 5], 59).is_err());
        assert!(Layout::from_shape(&[4, 5], 20).is_err());
        assert!(Layout::from_shape(&[0, 4, 5], 0).is_err());
    }

    #[test]
    fn nearest_dates_prefer_close_then_earlier() {
        assert_eq!(nearest_dates(2, 5, 3), vec![Some(1), Some(3), Some(0)]);
        assert_eq!(nearest_dates(0, 2, 2), vec![Some(1), None]);
        assert_eq!(nearest_dates(0, 1, 1), vec![None]);
    }

    #[test]
    fn cond_stack_has_values_masks_and_context() {
        // 2 dates, 1 band, 1x2 pixels: date0 = [1, NaN], date1 = [3, 4].
        let layout = Layout {
            has_time: true,
            times: 2,
            bands: 1,
            height: 1,
            width: 2,
        };
        let z = [1.0, f32::NAN, 3.0, 4.0];
        let mut out = Vec::new();
        write_cond(
            &layout,
            &z,
            0,
            1,
            (0, 0, 1, 2),
            Some(&[true, false]),
            &[7.0, 8.0],
            &mut out,
        );
        assert_eq!(out.len(), Layout::cond_channels(1, 1) * 2);
        assert_eq!(out, vec![0.0, 0.0, 1.0, 1.0, 3.0, 4.0, 0.0, 0.0, 7.0, 8.0]);
    }
}
