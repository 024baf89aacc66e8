//! One job being stitched: which tiles are in, which chunks are written, and the chunk writer
//! (`share` has what several stitchers of one job need).
//! All of it can be rebuilt from staging, so a stitcher restart loses nothing.

use std::sync::Arc;

use tiling::{ChunkGrid, TileGrid};
use wire::v1::{JobPlan, JobSpec, JobState, JobStatus, Method};
use wire::{staging_keys, JobId, JobKey, TileSet};
use zarr_io::{LeaveAlone, Mosaic, MosaicSpec, Scene, Staging};

use crate::tile_cache::{CachedTile, TileCache};
use crate::{StitcherError, StitcherMetrics};

mod compose;
mod share;

pub use share::ChunkShare;
use share::{list_indices, Listed};

/// Memory the tile cache may use.
const TILE_CACHE_BYTES: usize = 256 << 20;

/// Chunks of one job composed and written at once.
const WRITE_CONCURRENCY: usize = 4;

/// State of one job in the stitcher.
pub struct StitchJob {
    /// Job id.
    pub id: JobId,
    /// The job spec from the plan.
    pub spec: JobSpec,
    /// When the coordinator planned the job (Unix ms).
    started_unix_ms: u64,
    grid: TileGrid,
    chunks: ChunkGrid,
    dirty: TileSet,
    done: TileSet,
    /// Tiles whose results were delivered to this stitcher (the rest of `done` it learnt from
    /// staging: another stitcher may hold their results).
    heard: TileSet,
    /// This stitcher, in its chunk claims.
    me: u64,
    /// Dirty tiles not yet in, per output chunk.
    remaining: Vec<u32>,
    written: Vec<bool>,
    written_count: u64,
    /// Chunks this stitcher wrote, and ready chunks it found written by another.
    share: ChunkShare,
    /// What every chunk of the job needs to be composed and written.
    writer: Arc<compose::ChunkContext>,
    staging: Staging,
    cache: TileCache,
}

/// What loading a job from staging found.
pub enum Loaded {
    /// The job is in progress.
    Active(Box<StitchJob>),
    /// The job already ended with this status.
    Ended(JobStatus),
}

impl StitchJob {
    /// Rebuilds a job's state from its staged plan, tiles and chunk markers. With a job `key`,
    /// only a plan its coordinator signed is loaded.
    ///
    /// # Errors
    /// [`StitcherError`] naming the job when staging, the input or the output is unusable, or
    /// the plan is not signed with `key`.
    pub async fn load(
        staging_url: &str,
        job_id: &str,
        key: Option<&JobKey>,
        me: u64,
        shared_chunks: Option<Arc<zarr_io::ChunkCache>>,
    ) -> Result<Loaded, StitcherError> {
        let id = JobId::parse(job_id).map_err(|source| StitcherError::Wire {
            job: job_id.to_owned(),
            source,
        })?;
        let storage = |source| StitcherError::Storage {
            job: id.to_string(),
            source,
        };
        let wire_err = |source| StitcherError::Wire {
            job: id.to_string(),
            source,
        };
        let staging = Staging::open(staging_url).map_err(storage)?;
        if let Some(status) = terminal_status(&staging, &id).await? {
            return Ok(Loaded::Ended(status));
        }
        let Some(bytes) = staging
            .get(&staging_keys::plan(&id))
            .await
            .map_err(storage)?
        else {
            return Err(StitcherError::Inconsistent {
                job: id.to_string(),
                reason: format!("no plan staged at {staging_url}"),
            });
        };
        let plan: JobPlan = wire::decode("JobPlan", &bytes, usize::MAX).map_err(wire_err)?;
        let spec = plan.job.ok_or(StitcherError::Wire {
            job: id.to_string(),
            source: wire::WireError::MissingField {
                what: "JobPlan",
                field: "job",
            },
        })?;
        // Every location comes from the plan, so the plan must be the coordinator's own.
        wire::trust::verify(key, &spec, &plan.signature).map_err(wire_err)?;
        if spec.job_id != job_id || spec.staging_url != staging_url {
            return Err(StitcherError::Inconsistent {
                job: id.to_string(),
                reason: format!(
                    "the plan staged at {staging_url} is for job {} staged at {}",
                    spec.job_id, spec.staging_url
                ),
            });
        }
        let grid = spec.grid().map_err(wire_err)?;
        let chunks = spec.chunk_grid().map_err(wire_err)?;
        let started_unix_ms = plan.planned_unix_ms;
        let dirty = TileSet::from_bytes(plan.dirty_tiles, grid.len()).ok_or_else(|| {
            StitcherError::Inconsistent {
                job: id.to_string(),
                reason: format!("plan bitmap does not fit {} tiles", grid.len()),
            }
        })?;
        let mask = (!spec.mask_array.is_empty()).then_some(spec.mask_array.as_str());
        let mut scene = Scene::open(&spec.input_url, &spec.array, mask)
            .await
            .map_err(storage)?;
        if let Some(cache) = shared_chunks {
            scene = scene.share_chunks(cache, &spec.job_id);
        }
        let leave_alone = LeaveAlone::open(&scene, &spec.keep_array, spec.max_distance)
            .await
            .map_err(storage)?;
        let layout = MosaicSpec {
            members: spec.members_written(),
            data_fill: plan.quiet_fill.unwrap_or(f32::NAN),
            ..MosaicSpec::for_scene(&scene, (spec.chunk_y, spec.chunk_x), spec.with_spread())
        };
        let mosaic = Mosaic::create(&spec.output_url, &layout, &spec.job_id)
            .await
            .map_err(storage)?;
        let mut done = TileSet::new(grid.len());
        for t in list_indices(&staging, &id, Listed::Tiles).await? {
            done.insert(t);
        }
        let mut written = vec![false; chunks.len() as usize];
        for c in list_indices(&staging, &id, Listed::Chunks).await? {
            if let Some(w) = written.get_mut(c as usize) {
                *w = true;
            }
        }
        // Chunks the plan leaves unwritten count as written from the start.
        if !plan.quiet_chunks.is_empty() {
            let quiet =
                TileSet::from_bytes(plan.quiet_chunks.clone(), chunks.len()).ok_or_else(|| {
                    StitcherError::Inconsistent {
                        job: id.to_string(),
                        reason: format!("plan's quiet chunks do not fit {} chunks", chunks.len()),
                    }
                })?;
            for c in quiet.iter() {
                written[c as usize] = true;
            }
        }
        let mut remaining = vec![0u32; chunks.len() as usize];
        for t in dirty.iter().filter(|&t| !done.contains(t)) {
            let tile = grid.tile(t).map_err(|e| StitcherError::Inconsistent {
                job: id.to_string(),
                reason: e.to_string(),
            })?;
            for c in chunks.chunks_touching(&tile.window) {
                remaining[c as usize] += 1;
            }
        }
        let tile_bytes = 4 * spec.lead_len() * (grid.tile_size() * grid.tile_size()) as usize;
        let capacity = (2 * grid.shape().1 as usize + 4).min(TILE_CACHE_BYTES / tile_bytes.max(1));
        let written_count = written.iter().filter(|&&w| w).count() as u64;
        let writer = Arc::new(compose::ChunkContext {
            job: id.to_string(),
            grid,
            lead: spec.lead_len(),
            ensemble: spec.with_spread(),
            members: spec.members_written() as usize,
            identity: spec.method() == Method::Identity,
            scene: Arc::new(scene),
            leave_alone: leave_alone.map(Arc::new),
            mosaic: Arc::new(mosaic),
        });
        Ok(Loaded::Active(Box::new(Self {
            id,
            spec,
            started_unix_ms,
            grid,
            chunks,
            heard: TileSet::new(grid.len()),
            me,
            dirty,
            done,
            remaining,
            written,
            written_count,
            share: ChunkShare::default(),
            writer,
            staging,
            cache: TileCache::new(capacity),
        })))
    }

    /// Chunks whose tiles are all in but that are not written yet, ascending.
    pub fn ready_chunks(&self) -> Vec<u64> {
        (0..self.chunks.len())
            .filter(|&c| self.remaining[c as usize] == 0 && !self.written[c as usize])
            .collect()
    }

    /// Records tile `index` as staged; returns the chunks it touches that are not written yet
    /// (those [`Self::write_ready`] may now complete). A repeat returns them too: this stitcher
    /// may have learnt of the tile from staging while looking at another chunk.
    pub fn tile_done(&mut self, index: u64) -> Vec<u64> {
        self.mark_done(index);
        if !self.dirty.contains(index) {
            return Vec::new();
        }
        self.heard.insert(index);
        let Ok(tile) = self.grid.tile(index) else {
            return Vec::new();
        };
        self.chunks
            .chunks_touching(&tile.window)
            .into_iter()
            .filter(|&c| !self.written[c as usize])
            .collect()
    }

    /// Records dirty tile `t` as staged; whether it is news.
    fn mark_done(&mut self, t: u64) -> bool {
        if !self.dirty.contains(t) || self.done.contains(t) {
            return false;
        }
        self.done.insert(t);
        if let Ok(tile) = self.grid.tile(t) {
            for c in self.chunks.chunks_touching(&tile.window) {
                let r = &mut self.remaining[c as usize];
                *r = r.saturating_sub(1);
            }
        }
        true
    }

    /// Records chunk `c` as written (by this stitcher or another).
    fn mark_written(&mut self, c: u64) {
        if let Some(w) = self.written.get_mut(c as usize).filter(|w| !**w) {
            *w = true;
            self.written_count += 1;
        }
    }

    /// Chunks known to be written (by this stitcher or another).
    pub fn written_chunks(&self) -> u64 {
        self.written_count
    }

    /// What this stitcher did of the job's chunks.
    pub fn share(&self) -> ChunkShare {
        self.share
    }

    /// Whether every chunk is written.
    pub fn is_complete(&self) -> bool {
        self.written_count == self.chunks.len()
    }

    /// The job's progress as a status message.
    pub fn status(&self, state: JobState, error: String) -> JobStatus {
        JobStatus {
            job_id: self.id.to_string(),
            state: state as i32,
            chunks_total: self.chunks.len(),
            chunks_written: self.written_count,
            tiles_dirty: self.dirty.count(),
            tiles_done: self.done.count(),
            error,
            output_url: self.spec.output_url.clone(),
            started_unix_ms: self.started_unix_ms,
            updated_unix_ms: wire::unix_ms_now(),
        }
    }

    /// Blends and writes `chunks` (each ready and not yet written), up to [`WRITE_CONCURRENCY`]
    /// at once, each as [`compose::write`] says; [`Self::mark_durable`] then records them in
    /// staging. Returns the chunks written (in the order they finished; their bytes do not depend
    /// on it), also when one failed.
    ///
    /// # Errors
    /// The first [`StitcherError`] of a read, blend or write, naming the job.
    pub async fn write_chunks(
        &mut self,
        chunks: &[u64],
        metrics: &StitcherMetrics,
    ) -> (Vec<u64>, Result<(), StitcherError>) {
        let mut running = tokio::task::JoinSet::new();
        let mut pending = chunks.iter().copied();
        let mut wrote = Vec::new();
        let mut outcome = Ok(());
        loop {
            while outcome.is_ok() && running.len() < WRITE_CONCURRENCY {
                let Some(c) = pending.next() else { break };
                match self.chunk_work(c).await {
                    Ok(work) => {
                        let timer = metrics.chunk_seconds.start_timer();
                        let cx = self.writer.clone();
                        running.spawn(async move {
                            let written = compose::write(cx, work).await;
                            timer.observe_duration();
                            (c, written)
                        });
                    }
                    Err(error) => outcome = Err(error),
                }
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok((c, Ok(bytes))) => {
                    self.mark_written(c);
                    metrics.chunks_written.inc();
                    metrics.bytes_written.inc_by(bytes);
                    self.share.wrote += 1;
                    wrote.push(c);
                }
                Ok((_, Err(error))) => outcome = outcome.and(Err(error)),
                Err(panic) => {
                    outcome = outcome.and(Err(StitcherError::Inconsistent {
                        job: self.id.to_string(),
                        reason: format!("chunk writer stopped: {panic}"),
                    }))
                }
            }
        }
        (wrote, outcome)
    }

    /// Chunk `c` with the staged tiles touching it, in tile-index order.
    async fn chunk_work(&mut self, c: u64) -> Result<compose::ChunkWork, StitcherError> {
        let (row, col) = self.chunks.position(c);
        let window = self.chunks.window(row, col);
        let mut tiles = Vec::new();
        for t in self.grid.tiles_touching(&window) {
            if !self.dirty.contains(t) {
                continue;
            }
            let tile = self.grid.tile(t).map_err(|e| StitcherError::Inconsistent {
                job: self.id.to_string(),
                reason: e.to_string(),
            })?;
            tiles.push((tile, self.staged_tile(t).await?));
        }
        Ok(compose::ChunkWork {
            row,
            col,
            window,
            tiles,
        })
    }

    /// Makes the chunks written so far durable, then marks `chunks` written in staging (one sync
    /// for a batch of chunks; a marker lost in a crash costs a rewrite of the same bytes, while a
    /// marker is never durable before its chunk).
    ///
    /// # Errors
    /// [`StitcherError::Storage`] when the sync or a marker's write fails.
    pub async fn mark_durable(&self, chunks: &[u64]) -> Result<(), StitcherError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let storage = |source| StitcherError::Storage {
            job: self.id.to_string(),
            source,
        };
        self.writer.mosaic.sync().await.map_err(storage)?;
        for &c in chunks {
            let marker = staging_keys::chunk_done(&self.id, c);
            self.staging
                .put_deferred(&marker, bytes::Bytes::new())
                .await
                .map_err(storage)?;
        }
        Ok(())
    }

    async fn staged_tile(&mut self, t: u64) -> Result<Arc<CachedTile>, StitcherError> {
        if let Some(tile) = self.cache.get(t) {
            return Ok(tile);
        }
        let key = staging_keys::tile(&self.id, t);
        let storage = |source| StitcherError::Storage {
            job: self.id.to_string(),
            source,
        };
        let bytes = self
            .staging
            .get(&key)
            .await
            .map_err(storage)?
            .ok_or_else(|| StitcherError::Inconsistent {
                job: self.id.to_string(),
                reason: format!("tile {t} reported done but {key} is not staged"),
            })?;
        let wire_err = |source| StitcherError::Wire {
            job: self.id.to_string(),
            source,
        };
        let tile = Arc::new(CachedTile::decode(&bytes).map_err(wire_err)?);
        self.cache.insert(t, tile.clone());
        Ok(tile)
    }

    /// Copies the input's coordinate arrays, writes the group metadata with provenance (the output
    /// now opens as complete), records success and drops the staged tiles.
    ///
    /// # Errors
    /// [`StitcherError::Storage`] when the writes fail.
    pub async fn finalize(&self) -> Result<JobStatus, StitcherError> {
        let storage = |source| StitcherError::Storage {
            job: self.id.to_string(),
            source,
        };
        let coordinates = self
            .writer
            .mosaic
            .copy_coordinates(&self.writer.scene)
            .await
            .map_err(storage)?;
        tracing::debug!(job = %self.id, ?coordinates, "coordinates copied");
        // The seam metric matters where tiles are sampled independently: diffusion outputs.
        let seams = if self.spec.method() == Method::Diffusion {
            crate::seams::measure(&self.writer.mosaic, &self.grid)
                .await
                .map_err(storage)?
        } else {
            None
        };
        let mut attrs = self.writer.scene.group_attributes();
        attrs.insert("terrafill".into(), provenance(&self.spec, seams.as_ref()));
        self.writer.mosaic.finalize(attrs).await.map_err(storage)?;
        let status = self.status(JobState::Succeeded, String::new());
        self.save_status(&status).await?;
        self.staging
            .delete_prefix(&staging_keys::tiles_prefix(&self.id))
            .await
            .map_err(storage)?;
        self.staging
            .delete_prefix(&staging_keys::chunks_prefix(&self.id))
            .await
            .map_err(storage)?;
        Ok(status)
    }

    /// Stages `status`: a running job's progress (any stitcher of the job may overwrite it), or
    /// its end (which no progress report can then hide).
    ///
    /// # Errors
    /// [`StitcherError::Storage`].
    pub async fn save_status(&self, status: &JobStatus) -> Result<(), StitcherError> {
        let key = if status.state() == JobState::Running {
            staging_keys::progress(&self.id)
        } else {
            staging_keys::status(&self.id)
        };
        self.staging
            .put(&key, wire::encode(status))
            .await
            .map_err(|source| StitcherError::Storage {
                job: self.id.to_string(),
                source,
            })
    }
}

/// The terminal status of job `id` in `staging`, when it ended. (Before progress had a key of
/// its own, `status.pb` could hold a `Running` status: that is no end.)
async fn terminal_status(
    staging: &Staging,
    id: &JobId,
) -> Result<Option<JobStatus>, StitcherError> {
    let bytes = staging
        .get(&staging_keys::status(id))
        .await
        .map_err(|source| StitcherError::Storage {
            job: id.to_string(),
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let status: JobStatus =
        wire::decode("JobStatus", &bytes, usize::MAX).map_err(|source| StitcherError::Wire {
            job: id.to_string(),
            source,
        })?;
    Ok((status.state() != JobState::Running).then_some(status))
}

/// The `terrafill` group attribute: what produced this mosaic, and its seam metric where measured.
fn provenance(spec: &JobSpec, seams: Option<&scoring::Seams>) -> serde_json::Value {
    let method = spec
        .method()
        .as_str_name()
        .trim_start_matches("METHOD_")
        .to_lowercase();
    let mut p = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "job_id": spec.job_id,
        "method": method,
        "input": spec.input_url,
        "array": spec.array,
        "tile": spec.tile,
        "overlap": spec.overlap,
        "seed": spec.seed,
    });
    if spec.method() == Method::Diffusion {
        p["checkpoint"] = spec.checkpoint_url.clone().into();
        p["steps"] = spec.steps.into();
        p["ensemble"] = spec.ensemble.into();
        p["eta"] = f64::from(spec.eta).into();
        if let Some(m) = spec.member {
            p["member"] = m.into();
        }
        if spec.generate {
            p["generate"] = true.into();
        }
        if let Some(s) = seams {
            p["seams"] = serde_json::json!(s);
        }
    }
    if spec.phased {
        p["phases"] = 4.into();
    }
    p
}
