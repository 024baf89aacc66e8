//! Stitcher errors.

/// Why a job could not be stitched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StitcherError {
    /// Reading input/staging or writing the mosaic failed.
    #[error("job {job}: {source}")]
    Storage {
        /// Job id.
        job: String,
        /// The storage error.
        source: zarr_io::ZarrIoError,
    },
    /// A staged object or event is malformed.
    #[error("job {job}: {source}")]
    Wire {
        /// Job id.
        job: String,
        /// What is wrong.
        source: wire::WireError,
    },
    /// The job's staged state contradicts itself (missing plan, wrong sizes …).
    #[error("job {job}: {reason}")]
    Inconsistent {
        /// Job id.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// Blending refused a contribution.
    #[error("job {job}: {source}")]
    Blend {
        /// Job id.
        job: String,
        /// The blend error.
        source: tiling::BlendError,
    },
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
}

impl StitcherError {
    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Storage { source, .. } => source.is_retryable(),
            Self::Broker(e) => e.is_retryable(),
            Self::Wire { .. } | Self::Inconsistent { .. } | Self::Blend { .. } => false,
        }
    }
}
