//! Worker errors, split by whether retrying the tile can help.

/// Why a tile or the worker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Reading the scene or staging the output failed.
    #[error("{}: {source}", scope(.job, *.tile))]
    Storage {
        /// Job id.
        job: String,
        /// Tile index, or `None` for what concerns the whole job (opening its scene or model).
        tile: Option<u64>,
        /// The storage error.
        source: zarr_io::ZarrIoError,
    },
    /// The task itself is invalid.
    #[error("{}: {source}", scope(.job, *.tile))]
    Task {
        /// Job id.
        job: String,
        /// Tile index, or `None` when the job's spec is at fault.
        tile: Option<u64>,
        /// What is wrong with it.
        source: wire::WireError,
    },
    /// The method cannot run on this tile (bad checkpoint, shape mismatch …).
    #[error("{}: {reason}", scope(.job, *.tile))]
    Method {
        /// Job id.
        job: String,
        /// Tile index, or `None` for what concerns the whole job (its checkpoint, its input).
        tile: Option<u64>,
        /// What went wrong.
        reason: String,
    },
    /// A phased tile came before the neighbour it continues from was staged (retried).
    #[error("{}: its earlier-phase neighbour {neighbour} is not staged yet", scope(.job, Some(*.tile)))]
    Pending {
        /// Job id.
        job: String,
        /// The tile waiting.
        tile: u64,
        /// The neighbour it waits for.
        neighbour: u64,
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

/// What an error is about: "tile 7 of job j" or, for job-wide failures, "job j".
fn scope(job: &str, tile: Option<u64>) -> String {
    match tile {
        Some(tile) => format!("tile {tile} of job {job}"),
        None => format!("job {job}"),
    }
}

impl WorkerError {
    /// Whether another attempt at the same tile may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Storage { source, .. } => source.is_retryable(),
            Self::Broker(e) => e.is_retryable(),
            Self::Join(_) | Self::Pending { .. } => true,
            Self::Task { .. } | Self::Method { .. } | Self::Device { .. } => false,
        }
    }

    /// The cause as a metric label: `storage`, `task`, `method`, `broker`, `join` or `device`.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Storage { .. } => "storage",
            Self::Task { .. } => "task",
            Self::Method { .. } => "method",
            Self::Broker(_) => "broker",
            Self::Join(_) => "join",
            Self::Pending { .. } => "pending",
            Self::Device { .. } => "device",
        }
    }
}

/// Every value [`WorkerError::cause`] takes.
pub const CAUSES: [&str; 6] = ["storage", "task", "method", "broker", "join", "device"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_tile_only_when_there_is_one() {
        let job_wide = WorkerError::Method {
            job: "j".into(),
            tile: None,
            reason: "checkpoint unreadable".into(),
        };
        assert_eq!(job_wide.to_string(), "job j: checkpoint unreadable");
        let one_tile = WorkerError::Method {
            job: "j".into(),
            tile: Some(7),
            reason: "shape".into(),
        };
        assert_eq!(one_tile.to_string(), "tile 7 of job j: shape");
    }
}
