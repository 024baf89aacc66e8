//! Planning a job: open the input, build the grid, find the tiles with gaps (reading one tile
//! window at a time, so memory stays bounded), create the output arrays and stage the plan.
//! A plan already staged for the same job id is reused (resume).

use std::collections::HashSet;

use futures::StreamExt;
use tiling::{Census, ChunkGrid, TileGrid, Window};
use wire::v1::{JobPlan, JobSpec, JobState, JobStatus, Method};
use wire::{staging_keys, JobId, JobKey, TileSet};
use zarr_io::{LeaveAlone, Mosaic, MosaicSpec, Scene, Staging, TileData};

use crate::{CoordinatorError, CoordinatorMetrics, FillRequest};

/// Output chunks are the input's (y, x) chunks, clamped to this range.
const CHUNK_RANGE: (u64, u64) = (32, 2048);

/// A planned (and possibly already finished) job.
#[derive(Debug)]
pub struct PlannedJob {
    /// Job id.
    pub id: JobId,
    /// The spec every task carries.
    pub spec: JobSpec,
    /// The spec's signature with the cluster's job key (empty without one).
    pub signature: Vec<u8>,
    /// Its tile grid.
    pub grid: TileGrid,
    /// Tiles that go to a worker.
    pub dirty: TileSet,
    /// The job's staging store.
    pub staging: Staging,
    /// Set when the job had already succeeded (nothing to do).
    pub finished: Option<JobStatus>,
    /// Dirty tiles not yet published (parity phases: waiting for their neighbours).
    pub(crate) schedule: std::sync::Mutex<crate::schedule::Schedule>,
}

impl PlannedJob {
    /// The tiles not yet published (the lock is only ever held for a moment, never across an
    /// await; a panic while holding it leaves a usable schedule).
    pub(crate) fn schedule(&self) -> std::sync::MutexGuard<'_, crate::schedule::Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) async fn plan(
    req: &FillRequest,
    key: Option<&JobKey>,
    metrics: &CoordinatorMetrics,
) -> Result<PlannedJob, CoordinatorError> {
    req.validate()?;
    let id = req.job_id()?;
    let storage = |c: String| CoordinatorError::storage(c);
    let mask = req.mask_array.as_deref();
    let scene = Scene::open(&req.input, &req.array, mask)
        .await
        .map_err(storage(format!("opening input {}", req.input)))?;
    // A keep array that cannot be used stops the job here rather than in the stitcher.
    let keep = req.keep_array.as_deref().unwrap_or_default();
    LeaveAlone::open(&scene, keep, req.max_distance.unwrap_or(0))
        .await
        .map_err(storage(format!(
            "opening --keep-array {keep} of {}",
            req.input
        )))?;
    let staging = Staging::open(&req.staging_url())
        .map_err(storage(format!("opening staging {}", req.staging_url())))?;
    let shape = scene.shape().to_vec();
    let (cy, cx) = scene.chunk_shape_yx();
    let chunk = (
        cy.clamp(CHUNK_RANGE.0, CHUNK_RANGE.1),
        cx.clamp(CHUNK_RANGE.0, CHUNK_RANGE.1),
    );
    let spec = req.spec(&id, &shape, chunk, scene.dimension_names());
    let signature = wire::trust::sign(key, &spec);
    let grid = spec.grid()?;

    if let Some(status) = crate::read_status(&staging, &id).await? {
        match status.state() {
            JobState::Succeeded if Mosaic::is_finalized(&req.output).await.unwrap_or(false) => {
                tracing::info!(job = %id, "job already complete");
                let dirty = TileSet::new(grid.len());
                return Ok(PlannedJob {
                    id,
                    spec,
                    signature,
                    grid,
                    dirty,
                    staging,
                    finished: Some(status),
                    schedule: Default::default(),
                });
            }
            JobState::Failed if !req.retry => {
                // Publishing its tiles again would only recompute the staged ones and fail on
                // the same cause: the operator fixes it and asks for a retry.
                return Err(CoordinatorError::JobFailed {
                    job: id.to_string(),
                    reason: format!(
                        "{} (it failed before and nothing was re-queued: fix the cause, then run \
                         `terrafill retry` with the same arguments to compute only its failed and \
                         missing tiles)",
                        status.error
                    ),
                });
            }
            JobState::Running => {}
            _ => {
                // A retried failure (or a vanished result): start over, keeping staged tiles.
                for key in [staging_keys::status(&id), staging_keys::progress(&id)] {
                    staging
                        .delete(&key)
                        .await
                        .map_err(storage(format!("resetting job {id}")))?;
                }
            }
        }
    } else if Mosaic::is_finalized(&req.output).await.unwrap_or(false) {
        return Err(CoordinatorError::Invalid(format!(
            "output {} already holds a complete mosaic from another job; remove it or choose another path",
            req.output
        )));
    }
    // Fail before the scan when another job owns the output; the claim itself comes with the
    // output's creation below, once the input has been read and validated.
    let owner = zarr_io::owner(&req.output).await.map_err(storage(format!(
        "reading the owner of output {}",
        req.output
    )))?;
    if let Some(owner) = owner.filter(|o| o != id.as_str()) {
        return Err(CoordinatorError::Storage {
            context: format!("planning job {id}"),
            source: Box::new(zarr_io::ZarrIoError::OwnedByAnotherJob {
                url: req.output.clone(),
                owner,
                job: id.to_string(),
            }),
        });
    }

    let dirty = match staging
        .get(&staging_keys::plan(&id))
        .await
        .map_err(storage("reading plan".to_owned()))?
    {
        Some(bytes) => {
            let mut plan = reuse_plan(&id, &spec, &bytes)?;
            if plan.signature != signature {
                // Signed with another key, or before the cluster had one: sign it anew.
                plan.signature.clone_from(&signature);
                staging
                    .put(&staging_keys::plan(&id), wire::encode(&plan))
                    .await
                    .map_err(storage(format!("staging the plan of job {id}")))?;
            }
            dirty_tiles(&id, &grid, plan.dirty_tiles)?
        }
        None => {
            let survey = find_dirty_tiles(&scene, &grid, req, &id).await?;
            let output_chunks = spec.chunk_grid()?;
            let quiet = (chunk == (cy, cx) && !spec.with_spread() && spec.members_written() == 0)
                .then(|| quiet_chunks(&grid, &output_chunks, &survey))
                .flatten();
            let dirty = survey.dirty;
            let plan = JobPlan {
                job: Some(spec.clone()),
                dirty_tiles: dirty.as_bytes().to_vec(),
                tiles_total: grid.len(),
                tiles_dirty: dirty.count(),
                signature: signature.clone(),
                planned_unix_ms: wire::unix_ms_now(),
                quiet_chunks: quiet
                    .as_ref()
                    .map(|(q, _)| q.as_bytes().to_vec())
                    .unwrap_or_default(),
                quiet_fill: quiet.as_ref().map(|&(_, fill)| fill),
            };
            if let Some((q, fill)) = &quiet {
                tracing::info!(job = %id, quiet_chunks = q.count(), fill, "output chunks the input does not store stay unwritten");
            }
            let mosaic = MosaicSpec {
                members: spec.members_written(),
                data_fill: plan.quiet_fill.unwrap_or(f32::NAN),
                ..MosaicSpec::for_scene(&scene, chunk, spec.with_spread())
            };
            Mosaic::create(&req.output, &mosaic, id.as_str())
                .await
                .map_err(storage(format!("creating output {}", req.output)))?;
            staging
                .put(&staging_keys::plan(&id), wire::encode(&plan))
                .await
                .map_err(storage(format!("staging the plan of job {id}")))?;
            dirty
        }
    };
    metrics.tiles_planned.inc_by(grid.len());
    metrics.tiles_skipped.inc_by(grid.len() - dirty.count());
    Ok(PlannedJob {
        id,
        spec,
        signature,
        grid,
        dirty,
        staging,
        finished: None,
        schedule: Default::default(),
    })
}

/// The staged plan of job `id`, which must be for `spec`.
fn reuse_plan(id: &JobId, spec: &JobSpec, bytes: &[u8]) -> Result<JobPlan, CoordinatorError> {
    let plan: JobPlan = wire::decode("JobPlan", bytes, usize::MAX)?;
    if plan.job.as_ref() != Some(spec) {
        return Err(CoordinatorError::Invalid(format!(
            "job {id} was planned with different parameters; use another --job-id or remove its staging"
        )));
    }
    Ok(plan)
}

fn dirty_tiles(id: &JobId, grid: &TileGrid, bitmap: Vec<u8>) -> Result<TileSet, CoordinatorError> {
    TileSet::from_bytes(bitmap, grid.len())
        .ok_or_else(|| CoordinatorError::Invalid(format!("staged plan of job {id} is corrupt")))
}

/// Input chunks read at once while scanning (their fetches overlap; decoding is sequential).
const SCAN_CONCURRENCY: usize = 8;

/// What the scan of the input found.
struct Survey {
    /// Tiles with a missing pixel.
    dirty: TileSet,
    /// The input chunk columns the store holds (`None`: unknown, or not scanned).
    stored: Option<HashSet<(u64, u64)>>,
    /// The value every pixel of the other columns reads as, when it is not missing.
    unstored_fill: Option<f32>,
}

/// Output chunks that need no write (see `JobPlan.quiet_chunks`), and their value; `None` when
/// there are none. The output chunk grid must be the input's.
fn quiet_chunks(grid: &TileGrid, chunks: &ChunkGrid, survey: &Survey) -> Option<(TileSet, f32)> {
    let (stored, fill) = (survey.stored.as_ref()?, survey.unstored_fill?);
    let mut quiet = TileSet::new(chunks.len());
    for c in 0..chunks.len() {
        let (row, col) = chunks.position(c);
        let touched = || {
            grid.tiles_touching(&chunks.window(row, col))
                .into_iter()
                .any(|t| survey.dirty.contains(t))
        };
        if !stored.contains(&(row, col)) && !touched() {
            quiet.insert(c);
        }
    }
    (quiet.count() > 0).then_some((quiet, fill))
}

/// What an input chunk column (every leading index at one `[y, x]` chunk position) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// Every pixel is missing.
    Missing,
    /// No pixel is missing.
    Observed,
    /// It must be read pixel by pixel.
    Mixed,
}

/// Tiles that contain a missing pixel (every tile for `identity`, the pipeline self-check).
///
/// The scan goes by input chunk, so every stored chunk is fetched and decoded once (tile windows
/// overlap, and would read the overlaps twice): its missing pixels are counted once into a
/// [`Census`], which answers for every tile touching the chunk. Chunk positions the store does
/// not hold read as the fill value, the same everywhere: one of them is read, and its verdict
/// (all missing, or none) stands for all, so a sparse scene plans in time proportional to the
/// chunks it stores.
///
/// Reading every stored chunk also validates every value (mask values, infinities; see
/// [`Scene::read_window`]). A scene with no observed pixel is refused, there is nothing to fill
/// from, unless the request generates a field (its canvas is blank). A scene with no missing
/// pixel is copied, with a warning.
async fn find_dirty_tiles(
    scene: &Scene,
    grid: &TileGrid,
    req: &FillRequest,
    id: &JobId,
) -> Result<Survey, CoordinatorError> {
    let mut dirty = TileSet::new(grid.len());
    if req.method == Method::Identity {
        grid.tiles().for_each(|tile| dirty.insert(tile.index));
        return Ok(Survey {
            dirty,
            stored: None,
            unstored_fill: None,
        });
    }
    let (cy, cx) = scene.chunk_shape_yx();
    let chunks = ChunkGrid::new(scene.height(), scene.width(), cy, cx);
    let stored = scene
        .stored_chunk_columns()
        .await
        .map_err(CoordinatorError::storage(format!(
            "listing the chunks of {} for job {id}",
            scene.url()
        )))?;
    let scan_err = |window: Window| {
        CoordinatorError::storage(format!(
            "scanning input rows {}..{}, columns {}..{} for job {id}",
            window.y0,
            window.y1(),
            window.x0,
            window.x1()
        ))
    };
    let mut observed = false;
    let mut unstored = None;
    let mut unstored_fill = None;
    let mut to_read = Vec::new();
    for c in 0..chunks.len() {
        let (row, col) = chunks.position(c);
        let window = chunks.window(row, col);
        let is_stored = stored.as_ref().is_none_or(|s| s.contains(&(row, col)));
        let column = match (is_stored, unstored) {
            (true, _) | (false, Some(Column::Mixed)) => Column::Mixed,
            (false, Some(known)) => known,
            (false, None) => {
                let data = scene.read_window(window).await.map_err(scan_err(window))?;
                let known = uniform(&data);
                if known == Column::Observed {
                    unstored_fill = data.values.first().copied();
                }
                unstored = Some(known);
                known
            }
        };
        match column {
            Column::Missing => {
                for t in grid.tiles_touching(&window) {
                    dirty.insert(t);
                }
            }
            Column::Observed => observed = true,
            Column::Mixed => to_read.push(window),
        }
    }
    let mut reads = futures::stream::iter(to_read)
        .map(|window| async move {
            let data = scene.read_window(window).await.map_err(scan_err(window))?;
            Ok::<_, CoordinatorError>((window, data))
        })
        .buffered(SCAN_CONCURRENCY);
    while let Some(read) = reads.next().await {
        let (window, data) = read?;
        let missing = data.missing_count();
        observed |= missing < data.values.len();
        if missing == 0 {
            continue;
        }
        let census = Census::new(
            window,
            &missing_pixels(&data.values, window.area() as usize),
        );
        for t in grid.tiles_touching(&window) {
            if dirty.contains(t) {
                continue;
            }
            let tile = grid
                .tile(t)
                .map_err(|e| CoordinatorError::Invalid(e.to_string()))?;
            if census.count(&tile.window) > 0 {
                dirty.insert(t);
            }
        }
    }
    if !observed && !req.generate {
        return Err(CoordinatorError::Invalid(format!(
            "array `{}` of {} has no observed pixel: every value is missing, so there is nothing to fill from",
            scene.array_name(),
            scene.url()
        )));
    }
    if dirty.count() == 0 {
        tracing::warn!(job = %id, input = %scene.url(), "the input has no missing pixel; the output is a copy of it");
    }
    Ok(Survey {
        dirty,
        stored,
        unstored_fill,
    })
}

/// Whether a window's values are all missing, none, or some.
fn uniform(data: &TileData) -> Column {
    let missing = data.missing_count();
    if missing == data.values.len() {
        Column::Missing
    } else if missing == 0 {
        Column::Observed
    } else {
        Column::Mixed
    }
}

/// Per pixel of a `[lead, plane]` buffer: whether any leading index is missing there.
fn missing_pixels(values: &[f32], plane: usize) -> Vec<bool> {
    let mut flags = vec![false; plane];
    for layer in values.chunks(plane.max(1)) {
        for (f, v) in flags.iter_mut().zip(layer) {
            *f |= v.is_nan();
        }
    }
    flags
}
