//! Parity phases in the worker (DESIGN.md §4): a tile of a later phase takes the staged outputs
//! of its earlier-phase neighbours in the overlap as known pixels, member by member for
//! ensembles, so that stochastic tiles continue from each other instead of meeting at a seam;
//! its own output there is the neighbour's, so the blend changes nothing. The coordinator
//! publishes the tile only once those neighbours are staged; the bytes depend only on what is
//! staged, never on when or where the neighbours ran.

use tiling::{Tile, Window};
use wire::StagedTile;

use crate::job::JobContext;
use crate::methods::TileFill;
use crate::WorkerError;

/// What a tile takes from its staged neighbours.
#[derive(Debug, Default)]
pub(crate) struct Continuation {
    neighbours: Vec<StagedTile>,
    /// (index in the tile's `[lead, window]` buffer, neighbour, index in the neighbour's).
    taken: Vec<(usize, usize, usize)>,
}

impl Continuation {
    /// The neighbours' pixels for the gaps of `observed` (`[lead, tile window]`, NaN = missing)
    /// where they overlap the tile. A neighbour whose overlap holds no gap has nothing to give
    /// (it may have had no gap at all, and then was never computed); one whose overlap does
    /// must be staged. Where neighbours overlap each other the earliest gives (they agree: the
    /// later one took its values from the earlier).
    ///
    /// # Errors
    /// [`WorkerError::Pending`] when such a neighbour is not staged (retried: the coordinator
    /// published the tile early), storage and wire errors naming the tile.
    pub(crate) async fn gather(
        job: &JobContext,
        tile: &Tile,
        observed: &[f32],
    ) -> Result<Self, WorkerError> {
        let lead = job.spec.lead_len();
        let mut free: Vec<bool> = observed.iter().map(|v| v.is_nan()).collect();
        let mut out = Self::default();
        for index in job.grid.phase_dependencies(tile) {
            let neighbour = job.grid.tile(index).map_err(|e| WorkerError::Method {
                job: job.id.to_string(),
                tile: Some(tile.index),
                reason: e.to_string(),
            })?;
            let Some(overlap) = tile.window.intersect(&neighbour.window) else {
                continue;
            };
            let pairs: Vec<(usize, usize)> = rows(&tile.window, &overlap, lead)
                .zip(rows(&neighbour.window, &overlap, lead))
                .flat_map(|(d, s)| d.zip(s))
                .filter(|&(d, _)| free[d])
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let staged = job.staged_tile(tile.index, index).await?;
            let slot = out.neighbours.len();
            for (d, s) in pairs {
                if staged.values.get(s).is_some_and(|v| v.is_finite()) {
                    free[d] = false;
                    out.taken.push((d, slot, s));
                }
            }
            out.neighbours.push(staged);
        }
        Ok(out)
    }

    /// Writes the neighbours' values into `values`.
    pub(crate) fn apply(&self, values: &mut [f32]) {
        for &(d, n, s) in &self.taken {
            values[d] = self.neighbours[n].values[s];
        }
    }

    /// For ensembles whose neighbours staged their members: what each of the `k` members
    /// conditions on, member-major (`observed` with member m of each neighbour written in);
    /// `None` when a neighbour has no members (then every member continues the neighbour's
    /// staged values).
    pub(crate) fn member_values(&self, observed: &[f32], k: usize) -> Option<Vec<f32>> {
        let members: Vec<&Vec<f32>> = self
            .neighbours
            .iter()
            .map(|n| n.members.as_ref().filter(|m| m.len() == k * n.values.len()))
            .collect::<Option<_>>()?;
        if k < 2 || self.taken.is_empty() {
            return None;
        }
        let len = observed.len();
        let mut out = observed.repeat(k);
        for m in 0..k {
            for &(d, n, s) in &self.taken {
                out[m * len + d] = members[n][m * self.neighbours[n].values.len() + s];
            }
        }
        Some(out)
    }

    /// Makes the tile's output where it took pixels the neighbours' own: values, spread and
    /// members, so that the blend of the overlap is the neighbours' output unchanged.
    pub(crate) fn restore(&self, fill: &mut TileFill) {
        let len = fill.values.len();
        for &(d, n, s) in &self.taken {
            let neighbour = &self.neighbours[n];
            fill.values[d] = neighbour.values[s];
            if let (Some(out), Some(theirs)) = (fill.spread.as_mut(), &neighbour.spread) {
                out[d] = theirs[s];
            }
            if let (Some(out), Some(theirs)) = (fill.members.as_mut(), &neighbour.members) {
                let (k, their_len) = (out.len() / len.max(1), neighbour.values.len());
                if theirs.len() == k * their_len {
                    for m in 0..k {
                        out[m * len + d] = theirs[m * their_len + s];
                    }
                }
            }
        }
    }
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
    fn rows_walk_the_region_plane_by_plane() {
        // A 3×4 tile at (0, 2) and a 3×3 neighbour at (0, 0): they share column 2.
        let (tile, neighbour) = (Window::new(0, 2, 3, 4), Window::new(0, 0, 3, 3));
        let region = tile.intersect(&neighbour).expect("they overlap");
        let starts = |w: &Window| {
            rows(w, &region, 2)
                .map(|r| (r.start, r.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            starts(&tile),
            [(0, 1), (4, 1), (8, 1), (12, 1), (16, 1), (20, 1)]
        );
        assert_eq!(
            starts(&neighbour),
            [(2, 1), (5, 1), (8, 1), (11, 1), (14, 1), (17, 1)]
        );
    }

    #[test]
    fn members_continue_their_own_neighbour_and_the_output_takes_theirs() {
        let neighbour = StagedTile {
            values: vec![10.0, 20.0],
            spread: Some(vec![1.0, 2.0]),
            members: Some(vec![9.0, 18.0, 11.0, 22.0]),
        };
        let c = Continuation {
            neighbours: vec![neighbour],
            taken: vec![(1, 0, 1)],
        };
        let observed = [5.0, f32::NAN, f32::NAN];
        let mut values = observed;
        c.apply(&mut values);
        assert_eq!(values[..2], [5.0, 20.0]);
        assert!(values[2].is_nan());
        let mv = c.member_values(&observed, 2).expect("members staged");
        assert_eq!((mv[1], mv[4]), (18.0, 22.0));
        assert!(
            c.member_values(&observed, 3).is_none(),
            "3 members, 2 staged"
        );
        let mut fill = TileFill {
            values: vec![5.0, 0.0, 7.0],
            spread: Some(vec![0.0; 3]),
            members: Some(vec![0.0; 6]),
        };
        c.restore(&mut fill);
        assert_eq!(fill.values, [5.0, 20.0, 7.0]);
        assert_eq!(fill.spread, Some(vec![0.0, 2.0, 0.0]));
        assert_eq!(fill.members, Some(vec![0.0, 18.0, 0.0, 0.0, 22.0, 0.0]));
    }
}
