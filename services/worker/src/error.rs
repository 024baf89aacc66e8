//! Worker errors, split by whether retrying the tile can help.

/// Why a tile or the worker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Reading the scene or staging the output failed.
    #[error("tile {tile} of job {job}: {source}")]
    Storage {
        /// Job id.
        job: String,
        /// Tile index.
        tile: u64,
        /// The storage error.
        source: zarr_io::ZarrIoError,
    },
    /// The task itself is invalid.
    #[error("tile {tile} of job {job}: {source}")]
    Task {
        /// Job id.
        job: String,
        /// Tile index.
        tile: u64,
        /// What is wrong with it.
        source: wire::WireError,
    },
    /// The method cannot run on this tile (bad checkpoint, shape mismatch …).
    #[error("tile {tile} of job {job}: {reason}")]
    Method {
        /// Job id.
        job: String,
        /// Tile index.
        tile: u64,
        /// What went wrong.
        reason: String,
    },
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// A compute thread panicked or was cancelled.
    #[error("compute thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The worker's `--device` cannot be used (checked once, at start).
    #[error("--device {spec}: {source}")]
    Device {
        /// The device as given.
        spec: String,
        /// Why it is unusable (unknown name, no CUDA in this build, no such GPU).
        #[source]
        source: model::ModelError,
    },
}

impl WorkerError {
    /// Whether another attempt at the same tile may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Storage { source, .. } => source.is_retryable(),
            Self::Broker(e) => e.is_retryable(),
            Self::Join(_) => true,
            Self::Task { .. } | Self::Method { .. } | Self::Device { .. } => false,
        }
    }
}
