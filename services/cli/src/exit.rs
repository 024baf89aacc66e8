//! Exit statuses, so that a scheduler can tell a failure worth retrying from one that is not.
//!
//! | status | meaning | what to do |
//! |---|---|---|
//! | 0 | done (or already complete) | |
//! | 1 | permanent: bad input, arguments, checkpoint or configuration | fix it; the same command fails again |
//! | 2 | usage: the command line or a job file is malformed | fix the command |
//! | 3 | the job ran and failed (a tile or the mosaic); re-running it is refused | fix the cause, then `terrafill retry` |
//! | 75 | transient (`EX_TEMPFAIL`): the broker or a store was unreachable, or the wait was interrupted | run the same command again: it resumes |

use coordinator::CoordinatorError;

/// A permanent failure.
pub const PERMANENT: u8 = 1;
/// A malformed command line or job file (clap's own status for usage errors).
pub const USAGE: u8 = 2;
/// A job that ran and failed.
pub const JOB_FAILED: u8 = 3;
/// A failure that may pass: try again later.
pub const TRANSIENT: u8 = 75;

/// The exit status for `error`, from the first cause in its chain that says which kind it is.
pub fn code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<CoordinatorError>() {
                return Some(match e {
                    CoordinatorError::JobFailed { .. } => JOB_FAILED,
                    CoordinatorError::Interrupted { .. } => TRANSIENT,
                    CoordinatorError::Broker(b) => transient_if(b.is_retryable()),
                    CoordinatorError::Storage { source, .. } => transient_if(source.is_retryable()),
                    _ => PERMANENT,
                });
            }
            if let Some(e) = cause.downcast_ref::<broker::BrokerError>() {
                return Some(transient_if(e.is_retryable()));
            }
            cause
                .downcast_ref::<zarr_io::ZarrIoError>()
                .map(|e| transient_if(e.is_retryable()))
        })
        .unwrap_or(PERMANENT)
}

fn transient_if(retryable: bool) -> u8 {
    if retryable {
        TRANSIENT
    } else {
        PERMANENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_first_cause_that_knows() {
        let failed = anyhow::Error::new(CoordinatorError::JobFailed {
            job: "j".into(),
            reason: "tile 3".into(),
        })
        .context("waiting");
        assert_eq!(code(&failed), JOB_FAILED);
        let interrupted = anyhow::Error::new(CoordinatorError::Interrupted { job: "j".into() });
        assert_eq!(code(&interrupted), TRANSIENT);
        let timeout = broker::BrokerError::Timeout {
            op: "publish",
            target: "tiles".into(),
            timeout: std::time::Duration::from_secs(5),
        };
        assert_eq!(
            code(&anyhow::Error::new(timeout).context("submitting")),
            TRANSIENT
        );
        let closed = anyhow::Error::new(broker::BrokerError::Closed).context("publishing");
        assert_eq!(code(&closed), PERMANENT);
        let invalid = anyhow::Error::new(CoordinatorError::Invalid("--tile 0".into()));
        assert_eq!(code(&invalid), PERMANENT);
        assert_eq!(code(&anyhow::anyhow!("anything else")), PERMANENT);
    }
}
