//! Parity phases in the worker (DESIGN.md §4): a tile of a later phase takes the staged outputs
//! of its earlier-phase neighbours in the overlap as known pixels, so that stochastic tiles
//! continue from each other instead of meeting at a seam. The coordinator publishes the tile
//! only once those neighbours are staged; the bytes depend only on what is staged, never on
//! when or where the neighbours ran.

use tiling::{Tile, Window};

use crate::job::JobContext;
use crate::WorkerError;

/// Copies into the gaps of `observed` (`[lead, tile window]`, NaN = missing) the staged values
/// of the tile's earlier-phase neighbours where they overlap it, and the same into `prior` when
/// given (a known pixel's prior is its value). A neighbour whose overlap holds no gap has
/// nothing to give (it may have had no gap at all, and then was never computed); one whose
/// overlap does must be staged. Returns the pixels taken.
///
/// # Errors
/// [`WorkerError::Pending`] when such a neighbour is not staged (retried: the coordinator
/// published the tile early), storage and wire errors naming the neighbour.
pub(crate) async fn continue_from_neighbours(
    job: &JobContext,
    tile: &Tile,
    observed: &mut [f32],
    mut prior: Option<&mut [f32]>,
) -> Result<usize, WorkerError> {
    let lead = job.spec.lead_len();
    let mut taken = 0;
    for index in job.grid.phase_dependencies(tile) {
        let neighbour = job.grid.tile(index).map_err(|e| WorkerError::Method {
            job: job.id.to_string(),
            tile: Some(tile.index),
            reason: e.to_string(),
        })?;
        let Some(overlap) = tile.window.intersect(&neighbour.window) else {
            continue;
        };
        if !any_gap(observed, &tile.window, &overlap, lead) {
            continue;
        }
        let staged = job.staged_tile(tile.index, index).await?;
        taken += take_gaps(
            (&staged.values, &neighbour.window),
            (observed, &tile.window),
            prior.as_deref_mut(),
            &overlap,
            lead,
        );
    }
    Ok(taken)
}

/// Whether any of the `lead` planes of `values` (over `window`) is missing inside `region`.
fn any_gap(values: &[f32], window: &Window, region: &Window, lead: usize) -> bool {
    rows(window, region, lead).any(|r| values[r].iter().any(|v| v.is_nan()))
}

/// Copies `src`'s values into the NaN pixels of `dst` (and into `prior` there) over `region`;
/// returns how many it copied.
fn take_gaps(
    (src, from): (&[f32], &Window),
    (dst, to): (&mut [f32], &Window),
    mut prior: Option<&mut [f32]>,
    region: &Window,
    lead: usize,
) -> usize {
    let mut taken = 0;
    for (s, d) in rows(from, region, lead).zip(rows(to, region, lead)) {
        for (i, v) in d.zip(s.map(|j| src[j])) {
            if dst[i].is_nan() && v.is_finite() {
                dst[i] = v;
                if let Some(p) = prior.as_deref_mut() {
                    p[i] = v;
                }
                taken += 1;
            }
        }
    }
    taken
}

/// The index ranges of `region`'s rows in a `[lead, window]` buffer, plane by plane.
fn rows<'a>(
    window: &'a Window,
    region: &'a Window,
    lead: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let (area, w) = (window.area() as usize, window.width as usize);
    let x = (region.x0 - window.x0) as usize;
    (0..lead).flat_map(move |p| {
        (region.y0..region.y1()).map(move |y| {
            let start = p * area + (y - window.y0) as usize * w + x;
            start..start + region.width as usize
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_take_the_neighbours_values_and_known_pixels_stay() {
        // A 2-plane 3×4 tile at (0, 2) and a neighbour at (0, 0) 3×3 overlapping columns 2..3.
        let (to, from) = (Window::new(0, 2, 3, 4), Window::new(0, 0, 3, 3));
        let region = to.intersect(&from).expect("they overlap");
        assert!(!any_gap(&[1.0; 24], &to, &region, 2));
        let src: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let mut dst = vec![f32::NAN; 24];
        dst[4] = 99.0; // plane 0, row 1, column 2: known
        let mut prior = vec![0.0; 24];
        assert!(any_gap(&dst, &to, &region, 2));
        let taken = take_gaps((&src, &from), (&mut dst, &to), Some(&mut prior), &region, 2);
        assert_eq!(taken, 5);
        assert_eq!((dst[0], dst[4], dst[8]), (2.0, 99.0, 8.0));
        assert_eq!((dst[12], dst[16], dst[20]), (11.0, 14.0, 17.0));
        assert_eq!((prior[0], prior[4]), (2.0, 0.0));
        assert!(dst[1].is_nan(), "outside the overlap stays missing");
    }
}
