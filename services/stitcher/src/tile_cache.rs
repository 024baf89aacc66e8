//! A bounded cache of staged tile outputs: a tile touches several chunks, so it is decoded once
//! and kept while its neighbours' chunks are still being written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A decoded tile output (the type is shared with the workers of phased jobs).
pub use wire::StagedTile as CachedTile;

/// Least-recently-inserted cache of at most `capacity` tiles.
#[derive(Debug)]
pub struct TileCache {
    capacity: usize,
    tiles: HashMap<u64, Arc<CachedTile>>,
    order: VecDeque<u64>,
}

impl TileCache {
    /// A cache holding at most `capacity` tiles (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tiles: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached tile, if present.
    pub fn get(&self, index: u64) -> Option<Arc<CachedTile>> {
        self.tiles.get(&index).cloned()
    }

    /// Caches a tile, evicting the oldest beyond capacity.
    pub fn insert(&mut self, index: u64, tile: Arc<CachedTile>) {
        if self.tiles.insert(index, tile).is_none() {
            self.order.push_back(index);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.tiles.remove(&old);
            }
        }
    }
}
