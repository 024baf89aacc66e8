//! Several stitchers on one job: which chunks are ready according to staging (not only to this
//! stitcher's deliveries), claims that keep two stitchers from writing one chunk, and catching
//! up with what the others did.

use wire::v1::JobStatus;
use wire::{staging_keys, JobId};
use zarr_io::Staging;

use super::{terminal_status, StitchJob};
use crate::{StitcherError, StitcherMetrics};

/// How long a stitcher's claim on a chunk keeps the others from writing it: far longer than a
/// chunk write takes, so an older claim belongs to a stitcher that died.
const CLAIM_TTL_MS: u64 = 15_000;

/// What [`StitchJob::claim`] found.
enum Claim {
    /// The chunk is this stitcher's to write.
    Ours,
    /// Another stitcher has written it.
    Written,
    /// Another stitcher claimed it recently.
    Taken,
}

/// `(stitcher, unix ms)` of a claim; garbage reads as an ancient claim, free to take over.
fn parse_claim(bytes: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    let mut parts = text.split(' ').map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(who)), Some(Ok(when))) => (who, when),
        _ => (0, 0),
    }
}

/// One stitcher's part in a job's chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkShare {
    /// Chunks it wrote.
    pub wrote: u64,
    /// Ready chunks it found already written by another stitcher.
    pub skipped: u64,
}

/// What [`list_indices`] lists.
#[derive(Debug, Clone, Copy)]
pub(super) enum Listed {
    /// Staged tile outputs.
    Tiles,
    /// Markers of written chunks.
    Chunks,
}

/// The indices of job `id`'s staged tiles or written-chunk markers.
pub(super) async fn list_indices(
    staging: &Staging,
    id: &JobId,
    what: Listed,
) -> Result<Vec<u64>, StitcherError> {
    let (prefix, index): (String, fn(&str) -> Option<u64>) = match what {
        Listed::Tiles => (staging_keys::tiles_prefix(id), staging_keys::tile_index),
        Listed::Chunks => (staging_keys::chunks_prefix(id), staging_keys::chunk_index),
    };
    let keys = staging
        .list(&prefix)
        .await
        .map_err(|source| StitcherError::Storage {
            job: id.to_string(),
            source,
        })?;
    Ok(keys.iter().filter_map(|k| index(k)).collect())
}

impl StitchJob {
    /// Dirty tiles touching chunk `c` whose results this stitcher has not seen.
    fn unseen_tiles(&self, c: u64) -> Vec<u64> {
        let (row, col) = self.chunks.position(c);
        self.grid
            .tiles_touching(&self.chunks.window(row, col))
            .into_iter()
            .filter(|&t| self.dirty.contains(t) && !self.done.contains(t))
            .collect()
    }

    /// Whether another stitcher may be about to write chunk `c` too: some of its tiles' results
    /// were not delivered here.
    fn contested(&self, c: u64) -> bool {
        let (row, col) = self.chunks.position(c);
        self.grid
            .tiles_touching(&self.chunks.window(row, col))
            .into_iter()
            .any(|t| self.dirty.contains(t) && !self.heard.contains(t))
    }

    /// Writes those of `candidates` whose tiles are all staged and that no stitcher has written.
    ///
    /// Several stitchers may consume one job's results, so a chunk's tiles can arrive at
    /// different stitchers: staging, not this stitcher's deliveries, says whether a tile is in
    /// (a worker stages a tile before announcing it, so of two stitchers holding a chunk's last
    /// two results at least one sees both staged). A chunk whose results all came here is
    /// written at once; one whose tiles were partly learnt from staging is first claimed (see
    /// [`Self::claim`]), so that two stitchers rarely write it both, and if they do, they write
    /// the same bytes. A stitcher that is not `shared` (the only consumer of the results queue)
    /// trusts its deliveries and asks staging nothing.
    ///
    /// # Errors
    /// [`StitcherError`] naming the job when staging, a blend or a write fails.
    pub async fn write_ready(
        &mut self,
        candidates: Vec<u64>,
        shared: bool,
        metrics: &StitcherMetrics,
    ) -> Result<(), StitcherError> {
        // Several results of one batch name the same chunks.
        let mut candidates = candidates;
        candidates.sort_unstable();
        candidates.dedup();
        let mut ours = Vec::new();
        let chosen = self.choose(candidates, shared, metrics, &mut ours).await;
        let (wrote, written) = self.write_chunks(&ours, metrics).await;
        // Chunks written before an error are marked too: they are complete.
        self.mark_durable(&wrote).await?;
        chosen.and(written)
    }

    /// Of `candidates`, the chunks this stitcher is to write now, into `ours`.
    async fn choose(
        &mut self,
        candidates: Vec<u64>,
        shared: bool,
        metrics: &StitcherMetrics,
        ours: &mut Vec<u64>,
    ) -> Result<(), StitcherError> {
        for c in candidates {
            if self.written[c as usize] {
                continue;
            }
            if !shared {
                // The only stitcher: its deliveries are the whole story.
                if self.remaining[c as usize] == 0 {
                    ours.push(c);
                }
                continue;
            }
            for t in self.unseen_tiles(c) {
                if !self.is_staged(&staging_keys::tile(&self.id, t)).await? {
                    break;
                }
                self.mark_done(t);
            }
            if self.remaining[c as usize] > 0 {
                continue;
            }
            if self.contested(c) {
                match self.claim(c).await? {
                    Claim::Ours => {}
                    Claim::Written => {
                        metrics.chunks_skipped.inc();
                        self.share.skipped += 1;
                        self.mark_written(c);
                        continue;
                    }
                    // Its claimer writes it; if that one died, a later catch-up takes it over.
                    Claim::Taken => continue,
                }
            }
            ours.push(c);
        }
        Ok(())
    }

    /// Claims ready chunk `c` for this stitcher, unless it is written or another stitcher
    /// claimed it less than [`CLAIM_TTL_MS`] ago. A claim is a plain put (no store offers a
    /// compare-and-swap everywhere): two stitchers can still both claim a chunk in the moment
    /// between one's look and its put, which costs a second write of the same bytes, nothing more.
    async fn claim(&self, c: u64) -> Result<Claim, StitcherError> {
        if self
            .is_staged(&staging_keys::chunk_done(&self.id, c))
            .await?
        {
            return Ok(Claim::Written);
        }
        let key = staging_keys::chunk_claim(&self.id, c);
        let storage = |source| StitcherError::Storage {
            job: self.id.to_string(),
            source,
        };
        let now = wire::unix_ms_now();
        if let Some(bytes) = self.staging.get(&key).await.map_err(storage)? {
            let (who, when) = parse_claim(&bytes);
            if who != self.me && now.saturating_sub(when) < CLAIM_TTL_MS {
                return Ok(Claim::Taken);
            }
        }
        let claim = format!("{} {now}", self.me);
        self.staging
            .put(&key, bytes::Bytes::from(claim))
            .await
            .map_err(storage)?;
        Ok(Claim::Ours)
    }

    /// Catches up with staging: the tiles and chunks other stitchers handled. Returns the
    /// job's terminal status when it already ended (another stitcher finalized or failed it).
    ///
    /// # Errors
    /// [`StitcherError`] naming the job when staging cannot be read or a write fails.
    pub async fn resync(
        &mut self,
        shared: bool,
        metrics: &StitcherMetrics,
    ) -> Result<Option<JobStatus>, StitcherError> {
        if let Some(status) = self.ended().await? {
            return Ok(Some(status));
        }
        for t in list_indices(&self.staging, &self.id, Listed::Tiles).await? {
            self.mark_done(t);
        }
        for c in list_indices(&self.staging, &self.id, Listed::Chunks).await? {
            self.mark_written(c);
        }
        let ready = self.ready_chunks();
        self.write_ready(ready, shared, metrics).await?;
        Ok(None)
    }

    /// The job's terminal status, when some stitcher has recorded one.
    ///
    /// # Errors
    /// [`StitcherError`] when staging cannot be read or holds garbage.
    pub async fn ended(&self) -> Result<Option<JobStatus>, StitcherError> {
        terminal_status(&self.staging, &self.id).await
    }

    async fn is_staged(&self, key: &str) -> Result<bool, StitcherError> {
        self.staging
            .exists(key)
            .await
            .map_err(|source| StitcherError::Storage {
                job: self.id.to_string(),
                source,
            })
    }
}
