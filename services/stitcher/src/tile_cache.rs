//! A bounded cache of staged tile outputs: a tile touches several chunks, so it is decoded once
//! and kept while its neighbours' chunks are still being written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use wire::v1::TileOutput;

/// A decoded tile output.
#[derive(Debug)]
pub struct CachedTile {
    /// `[lead, tile window]` values.
    pub values: Vec<f32>,
    /// Ensemble spread, when staged.
    pub spread: Option<Vec<f32>>,
    /// Ensemble members, `[member, lead, tile window]`, when staged.
    pub members: Option<Vec<f32>>,
}

impl CachedTile {
    /// Decodes a staged `TileOutput`.
    ///
    /// # Errors
    /// [`wire::WireError`] when the float buffers are ragged.
    pub fn decode(output: &TileOutput) -> Result<Self, wire::WireError> {
        let values = wire::f32_from_le_bytes("TileOutput.values", &output.values)?;
        let optional = |what, bytes: &[u8]| {
            (!bytes.is_empty())
                .then(|| wire::f32_from_le_bytes(what, bytes))
                .transpose()
        };
        Ok(Self {
            values,
            spread: optional("TileOutput.spread", &output.spread)?,
            members: optional("TileOutput.members", &output.members)?,
        })
    }
}

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
