//! Which dirty tiles may be published: all at once, or with parity phases (DESIGN.md §4) each
//! tile once its earlier-phase dirty neighbours are staged. The staged tiles are the schedule's
//! only input, so a restarted coordinator picks up where the last one stopped: tiles are
//! published per tile as their neighbours finish (pipelined), never phase by phase.

use std::collections::HashSet;

use tiling::TileGrid;
use wire::TileSet;

/// Tiles not yet published, each with the dirty neighbours it waits for.
#[derive(Debug, Default)]
pub struct Schedule {
    waiting: Vec<(u64, Vec<u64>)>,
}

impl Schedule {
    /// The dirty tiles of `grid` that are not `staged`, split into those that may go now (in
    /// ascending order) and the schedule of the rest. Without `phased` every one goes now.
    pub fn new(
        grid: &TileGrid,
        dirty: &TileSet,
        phased: bool,
        staged: &HashSet<u64>,
    ) -> (Vec<u64>, Schedule) {
        let mut schedule = Schedule::default();
        for index in dirty.iter().filter(|i| !staged.contains(i)) {
            let deps = match (phased, grid.tile(index)) {
                (true, Ok(tile)) => grid
                    .phase_dependencies(&tile)
                    .into_iter()
                    .filter(|&d| dirty.contains(d))
                    .collect(),
                _ => Vec::new(),
            };
            schedule.waiting.push((index, deps));
        }
        let ready = schedule.take_ready(staged);
        (ready, schedule)
    }

    /// Removes and returns (ascending) the waiting tiles whose neighbours are all `staged`.
    pub fn take_ready(&mut self, staged: &HashSet<u64>) -> Vec<u64> {
        let mut ready = Vec::new();
        self.waiting.retain(|(index, deps)| {
            let go = deps.iter().all(|d| staged.contains(d));
            if go {
                ready.push(*index);
            }
            !go
        });
        ready
    }

    /// Tiles still waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// Publishes in waves as staged tiles arrive in a random order; returns the publication order.
    fn run(grid: &TileGrid, dirty: &TileSet, seed: u64) -> Vec<u64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut staged = HashSet::new();
        let (mut in_flight, mut schedule) = Schedule::new(grid, dirty, true, &staged);
        let mut order = in_flight.clone();
        while !in_flight.is_empty() {
            in_flight.shuffle(&mut rng);
            // Some of the published tiles finish, in a random order.
            let done = in_flight.len().div_ceil(2);
            for t in in_flight.drain(..done) {
                staged.insert(t);
            }
            let ready = schedule.take_ready(&staged);
            order.extend(&ready);
            in_flight.extend(ready);
        }
        assert_eq!(schedule.waiting(), 0);
        order
    }

    #[test]
    fn later_phases_go_only_after_their_dirty_neighbours_in_any_completion_order() {
        let grid = TileGrid::new(100, 130, 32, 8).expect("grid");
        let mut dirty = TileSet::new(grid.len());
        for t in (0..grid.len()).filter(|t| t % 7 != 3) {
            dirty.insert(t);
        }
        for seed in 0..5 {
            let order = run(&grid, &dirty, seed);
            assert_eq!(order.len() as u64, dirty.count(), "every dirty tile once");
            let position = |t: u64| order.iter().position(|&o| o == t);
            for &t in &order {
                let tile = grid.tile(t).expect("tile");
                for d in grid.phase_dependencies(&tile) {
                    match position(d) {
                        Some(p) => assert!(p < position(t).unwrap_or(0), "{d} before {t}"),
                        None => assert!(!dirty.contains(d), "clean neighbour {d} is never sent"),
                    }
                }
            }
        }
        let (now, schedule) = Schedule::new(&grid, &dirty, false, &HashSet::new());
        assert_eq!((now.len() as u64, schedule.waiting()), (dirty.count(), 0));
    }
}
