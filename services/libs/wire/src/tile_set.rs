//! A compact set of tile indices (one bit per tile), as stored in `JobPlan.dirty_tiles`.

/// Set of tile indices below `len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileSet {
    bits: Vec<u8>,
    len: u64,
}

impl TileSet {
    /// An empty set for `len` tiles.
    pub fn new(len: u64) -> Self {
        Self {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
        }
    }

    /// A set read back from its bytes; `None` when the bytes do not fit `len` tiles.
    pub fn from_bytes(bits: Vec<u8>, len: u64) -> Option<Self> {
        (bits.len() as u64 == len.div_ceil(8)).then_some(Self { bits, len })
    }

    /// The bitmap bytes (bit `i % 8` of byte `i / 8` is tile `i`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Adds tile `i` (ignored past `len`).
    pub fn insert(&mut self, i: u64) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    /// Whether tile `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Number of tiles in the set.
    pub fn count(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_bytes() {
        let mut s = TileSet::new(21);
        for i in [0, 7, 8, 20, 99] {
            s.insert(i);
        }
        assert_eq!(s.count(), 4);
        let back = TileSet::from_bytes(s.as_bytes().to_vec(), 21);
        assert_eq!(
            back.as_ref().map(|b| b.iter().collect::<Vec<_>>()),
            Some(vec![0, 7, 8, 20])
        );
        assert!(TileSet::from_bytes(vec![0; 2], 21).is_none());
    }
}
