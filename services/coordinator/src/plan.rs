//! Planning a job: open the input, build the grid, find the tiles with gaps (reading one tile
//! window at a time, so memory stays bounded), create the output arrays and stage the plan.
//! A plan already staged for the same job id is reused (resume).

use tiling::TileGrid;
use wire::v1::{JobPlan, JobSpec, JobState, JobStatus, Method};
use wire::{staging_keys, JobId, JobKey, TileSet};
use zarr_io::{LeaveAlone, Mosaic, MosaicSpec, Scene, Staging};

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
                });
            }
            JobState::Running => {}
            _ => {
                // A failed (or vanished) result: start over, keeping staged tiles.
                for key in [staging_keys::status(&id), staging_keys::progress(&id)] {
                    staging
                        .delete_prefix(&key)
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
            let dirty = find_dirty_tiles(&scene, &grid, req.method, &id).await?;
            let plan = JobPlan {
                job: Some(spec.clone()),
                dirty_tiles: dirty.as_bytes().to_vec(),
                tiles_total: grid.len(),
                tiles_dirty: dirty.count(),
                signature: signature.clone(),
                planned_unix_ms: wire::unix_ms_now(),
            };
            let mosaic = MosaicSpec {
                members: spec.members_written(),
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

/// Tiles that contain a missing pixel (every tile for `identity`, the pipeline self-check).
///
/// Reading every tile also validates every value (mask values, infinities; see
/// [`Scene::read_window`]). A scene with no observed pixel is refused: there is nothing to fill
/// from. A scene with no missing pixel is copied, with a warning.
async fn find_dirty_tiles(
    scene: &Scene,
    grid: &TileGrid,
    method: Method,
    id: &JobId,
) -> Result<TileSet, CoordinatorError> {
    let mut dirty = TileSet::new(grid.len());
    if method == Method::Identity {
        grid.tiles().for_each(|tile| dirty.insert(tile.index));
        return Ok(dirty);
    }
    let mut observed = false;
    for tile in grid.tiles() {
        let data = scene
            .read_window(tile.window)
            .await
            .map_err(CoordinatorError::storage(format!(
                "scanning tile {} of job {id}",
                tile.index
            )))?;
        let missing = data.missing_count();
        observed |= missing < data.values.len();
        if missing > 0 {
            dirty.insert(tile.index);
        }
    }
    if !observed {
        return Err(CoordinatorError::Invalid(format!(
            "array `{}` of {} has no observed pixel: every value is missing, so there is nothing to fill from",
            scene.array_name(),
            scene.url()
        )));
    }
    if dirty.count() == 0 {
        tracing::warn!(job = %id, input = %scene.url(), "the input has no missing pixel; the output is a copy of it");
    }
    Ok(dirty)
}
