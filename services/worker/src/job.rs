//! Per-job state a worker keeps between tiles: the opened scene, staging store and model.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tiling::{TileGrid, Window};
use wire::v1::{JobSpec, Method};
use wire::JobId;
use zarr_io::{ChunkCache, Scene, Staging, TileData};

use crate::{WorkerError, WorkerMetrics};

/// Everything needed to compute tiles of one job, opened once per job.
pub struct JobContext {
    /// Job id.
    pub id: JobId,
    /// The job as published.
    pub spec: JobSpec,
    /// The job's tile grid.
    pub grid: TileGrid,
    /// Fill method.
    pub method: Method,
    /// Where tile outputs go.
    pub staging: Staging,
    /// The diffusion model, for `Method::Diffusion`.
    pub model: Option<Arc<model::FillModel>>,
    /// Whether compute runs on the CPU (then batches never mix tiles, for bit-exact outputs).
    pub on_cpu: bool,
    scene: Scene,
    metrics: WorkerMetrics,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish()
    }
}

impl JobContext {
    /// Opens the job's scene (reading through `chunks`, under the job's id), staging store and
    /// (for diffusion) model.
    ///
    /// # Errors
    /// [`WorkerError`] naming the job when the spec, scene, store or checkpoint is unusable.
    pub async fn open(
        spec: JobSpec,
        device: &model::DeviceSpec,
        metrics: WorkerMetrics,
        chunks: Arc<ChunkCache>,
    ) -> Result<Self, WorkerError> {
        let task_error = |source| WorkerError::Task {
            job: spec.job_id.clone(),
            tile: None,
            source,
        };
        let id = spec.id().map_err(task_error)?;
        let grid = spec.grid().map_err(task_error)?;
        let method = Method::try_from(spec.method).unwrap_or(Method::Unspecified);
        let storage = |source| WorkerError::Storage {
            job: spec.job_id.clone(),
            tile: None,
            source,
        };
        let mask = (!spec.mask_array.is_empty()).then_some(spec.mask_array.as_str());
        let scene = Scene::open(&spec.input_url, &spec.array, mask)
            .await
            .map_err(storage)?
            .share_chunks(chunks, &spec.job_id);
        if scene.shape() != spec.shape.as_slice() {
            return Err(WorkerError::Method {
                job: spec.job_id.clone(),
                tile: None,
                reason: format!(
                    "input {} has shape {:?}, the job was planned for {:?}",
                    spec.input_url,
                    scene.shape(),
                    spec.shape
                ),
            });
        }
        let staging = Staging::open(&spec.staging_url).map_err(storage)?;
        let model = match method {
            Method::Diffusion => Some(crate::diffusion::load_model(&spec, device).await?),
            _ => None,
        };
        let on_cpu = device.device().map(|d| d.is_cpu()).unwrap_or(true);
        Ok(Self {
            id,
            spec,
            grid,
            method,
            staging,
            model,
            on_cpu,
            scene,
            metrics,
        })
    }

    /// Reads `window` of the scene (all leading dims), NaN where missing.
    ///
    /// # Errors
    /// [`WorkerError::Storage`] naming the tile.
    pub async fn read(&self, tile: u64, window: Window) -> Result<TileData, WorkerError> {
        self.timed_read(tile, self.scene.read_window(window)).await
    }

    /// The staged output of tile `neighbour`, which tile `tile` continues from (parity phases).
    ///
    /// # Errors
    /// [`WorkerError::Pending`] when it is not staged, [`WorkerError::Storage`] or
    /// [`WorkerError::Task`] when it cannot be read or decoded.
    pub async fn staged_tile(
        &self,
        tile: u64,
        neighbour: u64,
    ) -> Result<wire::StagedTile, WorkerError> {
        let key = wire::staging_keys::tile(&self.id, neighbour);
        let bytes = self
            .staging
            .get(&key)
            .await
            .map_err(|source| WorkerError::Storage {
                job: self.id.to_string(),
                tile: Some(tile),
                source,
            })?
            .ok_or_else(|| WorkerError::Pending {
                job: self.id.to_string(),
                tile,
                neighbour,
            })?;
        wire::StagedTile::decode(&bytes).map_err(|source| WorkerError::Task {
            job: self.id.to_string(),
            tile: Some(tile),
            source,
        })
    }

    /// Awaits a scene read, recording its time and size and naming the tile on failure.
    async fn timed_read(
        &self,
        tile: u64,
        read: impl std::future::Future<Output = Result<TileData, zarr_io::ZarrIoError>>,
    ) -> Result<TileData, WorkerError> {
        let timer = self
            .metrics
            .stage_seconds
            .with_label_values(&["read"])
            .start_timer();
        let data = read.await.map_err(|source| WorkerError::Storage {
            job: self.id.to_string(),
            tile: Some(tile),
            source,
        })?;
        timer.observe_duration();
        self.metrics.bytes_read.inc_by(4 * data.values.len() as u64);
        Ok(data)
    }
}

/// A small cache of open jobs (a worker usually serves one or two at a time), whose scenes
/// share one cache of decoded chunks.
#[derive(Debug)]
pub struct JobCache {
    jobs: HashMap<String, Arc<JobContext>>,
    order: VecDeque<String>,
    chunks: Arc<ChunkCache>,
}

/// How many jobs a worker keeps open.
const MAX_OPEN_JOBS: usize = 8;

impl JobCache {
    /// No open jobs; their scenes will read through `chunks`.
    pub fn new(chunks: Arc<ChunkCache>) -> JobCache {
        JobCache {
            jobs: HashMap::new(),
            order: VecDeque::new(),
            chunks,
        }
    }

    /// The context of `spec`'s job, opening it on first use.
    ///
    /// # Errors
    /// As [`JobContext::open`].
    pub async fn get(
        &mut self,
        spec: &JobSpec,
        device: &model::DeviceSpec,
        metrics: &WorkerMetrics,
    ) -> Result<Arc<JobContext>, WorkerError> {
        if let Some(job) = self.jobs.get(&spec.job_id) {
            return Ok(job.clone());
        }
        let job = Arc::new(
            JobContext::open(spec.clone(), device, metrics.clone(), self.chunks.clone()).await?,
        );
        if self.order.len() >= MAX_OPEN_JOBS {
            if let Some(old) = self.order.pop_front() {
                self.jobs.remove(&old);
            }
        }
        self.order.push_back(spec.job_id.clone());
        self.jobs.insert(spec.job_id.clone(), job.clone());
        Ok(job)
    }
}
