//! Coordinator errors.

/// Why a job could not be planned, published or completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The request is invalid (bad tile/overlap, unknown method, missing checkpoint …).
    #[error("{0}")]
    Invalid(String),
    /// Input, output or staging storage failed.
    #[error("{context}: {source}")]
    Storage {
        /// What was being done.
        context: String,
        /// The storage error.
        source: Box<zarr_io::ZarrIoError>,
    },
    /// A wire-level problem (job id, spec, staged plan).
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// The job ran and failed.
    #[error("job {job} failed: {reason}")]
    JobFailed {
        /// Job id.
        job: String,
        /// The stitcher's reason.
        reason: String,
    },
    /// Waiting was interrupted; the job itself goes on and a re-run resumes it.
    #[error(
        "interrupted while waiting for job {job}; it continues, re-run the same command to resume"
    )]
    Interrupted {
        /// Job id.
        job: String,
    },
}

impl CoordinatorError {
    /// A storage error with what was being done.
    pub fn storage(context: impl Into<String>) -> impl FnOnce(zarr_io::ZarrIoError) -> Self {
        let context = context.into();
        move |source| Self::Storage {
            context,
            source: Box::new(source),
        }
    }
}
