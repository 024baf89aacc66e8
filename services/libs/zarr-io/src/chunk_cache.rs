//! Decoded chunk cells shared by the readers of a process.
//!
//! Tiles overlap and do not line up with the scene's chunks, so without a cache every tile
//! decodes each chunk it touches (a 256² tile at stride 224 over 256² chunks decodes four), and
//! the stitcher decodes every chunk once more to copy the observed pixels. A [`ChunkCache`] keeps
//! the most recently used *cells* — all leading dimensions × one `[y, x]` chunk, as `f32` with
//! missing values already NaN — so that the workers and stitchers of one process decode each
//! chunk about once. Entries are keyed by a namespace (the job id: a job's input does not change
//! while it runs) and the cell's position; concurrent readers of one cell wait for a single
//! decode. Memory is bounded by the byte limit, least recently used cells going first.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Bytes of decoded cells a cache keeps unless told otherwise: two rows of 256² chunks of a
/// 3-band float32 scene 20 000 px wide.
pub const DEFAULT_LIMIT_BYTES: usize = 128 << 20;

/// A cell's values: `[lead..., h, w]` row-major, missing as NaN.
pub type Cell = Arc<Vec<f32>>;

/// (namespace, array, chunk row, chunk column).
type Key = (Arc<str>, Arc<str>, u64, u64);

/// An LRU cache of decoded cells with a byte limit, safe to share between tasks. Two caches are
/// equal only when they are the same cache.
#[derive(Debug)]
pub struct ChunkCache {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Last use → key, oldest first.
    by_use: BTreeMap<u64, Key>,
    clock: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    cell: Arc<OnceCell<Cell>>,
    used: u64,
    bytes: usize,
}

impl PartialEq for ChunkCache {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl ChunkCache {
    /// A cache keeping at most `limit` bytes of decoded cells (0 keeps nothing).
    pub fn new(limit: usize) -> ChunkCache {
        ChunkCache {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    /// Bytes of cells held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The cell at `key`, decoded by `read` unless cached or being decoded by another reader
    /// (then its result is awaited). A failed read caches nothing.
    pub(crate) async fn get_or_read<F, Fut, E>(
        &self,
        key: (&Arc<str>, &Arc<str>, u64, u64),
        read: F,
    ) -> Result<Cell, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<f32>, E>>,
    {
        let key: Key = (key.0.clone(), key.1.clone(), key.2, key.3);
        let slot = self.slot(&key);
        let mut decoded_here = false;
        let flag = &mut decoded_here;
        let cell = slot
            .get_or_try_init(|| async move {
                *flag = true;
                read().await.map(Arc::new)
            })
            .await?
            .clone();
        if decoded_here {
            self.account(&key, &slot, cell.len() * std::mem::size_of::<f32>());
        }
        Ok(cell)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent bookkeeping (no partial updates).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot for `key`, created empty if absent, marked as just used.
    fn slot(&self, key: &Key) -> Arc<OnceCell<Cell>> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let State {
            entries, by_use, ..
        } = &mut *state;
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            cell: Arc::new(OnceCell::new()),
            used: now,
            bytes: 0,
        });
        by_use.remove(&entry.used);
        entry.used = now;
        by_use.insert(now, key.clone());
        entry.cell.clone()
    }

    /// Records the size of the cell just decoded into `slot`, then evicts the least recently
    /// used cells until the cache fits its limit.
    fn account(&self, key: &Key, slot: &Arc<OnceCell<Cell>>, bytes: usize) {
        let mut state = self.lock();
        match state.entries.get_mut(key) {
            Some(entry) if Arc::ptr_eq(&entry.cell, slot) => entry.bytes = bytes,
            // Evicted while it was being decoded: nothing is held.
            _ => return,
        }
        state.bytes += bytes;
        while state.bytes > self.limit {
            let Some((_, oldest)) = state.by_use.pop_first() else {
                break;
            };
            if let Some(entry) = state.entries.remove(&oldest) {
                state.bytes -= entry.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> (Arc<str>, Arc<str>) {
        (Arc::from("job"), Arc::from(name))
    }

    async fn get(
        cache: &ChunkCache,
        k: &(Arc<str>, Arc<str>),
        cy: u64,
        reads: &Mutex<u32>,
    ) -> Cell {
        cache
            .get_or_read((&k.0, &k.1, cy, 0), || async {
                *reads.lock().unwrap() += 1;
                Ok::<_, ()>(vec![cy as f32; 256])
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_cell_is_read_once_and_the_oldest_goes_first() {
        let cache = ChunkCache::new(2 * 256 * 4);
        let reads = Mutex::new(0);
        let k = key("data");
        assert_eq!(get(&cache, &k, 0, &reads).await[0], 0.0);
        assert_eq!(get(&cache, &k, 1, &reads).await[0], 1.0);
        get(&cache, &k, 0, &reads).await; // hit: 0 is now newer than 1
        assert_eq!(*reads.lock().unwrap(), 2);
        get(&cache, &k, 2, &reads).await; // evicts 1
        assert_eq!(cache.bytes(), 2 * 256 * 4);
        get(&cache, &k, 0, &reads).await;
        assert_eq!(*reads.lock().unwrap(), 3);
        get(&cache, &k, 1, &reads).await;
        assert_eq!(*reads.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_read_and_failures_are_not_kept() {
        let cache = ChunkCache::new(1 << 20);
        let reads = Mutex::new(0);
        let k = key("data");
        let (a, b) = tokio::join!(get(&cache, &k, 5, &reads), get(&cache, &k, 5, &reads));
        assert_eq!((a[0], b[0], *reads.lock().unwrap()), (5.0, 5.0, 1));
        let failed = cache
            .get_or_read((&k.0, &k.1, 9, 0), || async {
                Err::<Vec<f32>, _>("unreadable")
            })
            .await;
        assert_eq!(failed, Err("unreadable"));
        assert_eq!(get(&cache, &k, 9, &reads).await[0], 9.0);
    }

    #[tokio::test]
    async fn a_zero_limit_keeps_nothing() {
        let cache = ChunkCache::new(0);
        let reads = Mutex::new(0);
        let k = key("data");
        get(&cache, &k, 0, &reads).await;
        get(&cache, &k, 0, &reads).await;
        assert_eq!((cache.bytes(), *reads.lock().unwrap()), (0, 2));
    }
}
