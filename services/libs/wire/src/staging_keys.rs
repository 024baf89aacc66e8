//! Keys of job state in the staging store. Workers write tile outputs, the coordinator writes the
//! plan, the stitchers write chunk markers, progress and status; all of them name keys through here.

use crate::JobId;

/// The job spec and plan, written by the coordinator before any task is published.
pub fn plan(job: &JobId) -> String {
    format!("{job}/plan.pb")
}

/// Prefix under which tile outputs are staged.
pub fn tiles_prefix(job: &JobId) -> String {
    format!("{job}/tiles")
}

/// A staged tile output (zero-padded so listings sort by tile index).
pub fn tile(job: &JobId, index: u64) -> String {
    format!("{job}/tiles/{index:012}.pb")
}

/// Parses a tile index back from a key listed under [`tiles_prefix`].
pub fn tile_index(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".pb")?.parse().ok()
}

/// Prefix of the markers of written output chunks.
pub fn chunks_prefix(job: &JobId) -> String {
    format!("{job}/chunks")
}

/// Marker: output chunk `index` is durably written.
pub fn chunk_done(job: &JobId, index: u64) -> String {
    format!("{job}/chunks/{index:012}.done")
}

/// A stitcher's claim to write output chunk `index` (see the stitcher): not a [`chunk_done`]
/// marker, so [`chunk_index`] skips it.
pub fn chunk_claim(job: &JobId, index: u64) -> String {
    format!("{job}/chunks/{index:012}.claim")
}

/// Parses a chunk index back from a key listed under [`chunks_prefix`].
pub fn chunk_index(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".done")?.parse().ok()
}

/// The job's end (`JobStatus`, succeeded or failed), written once by the stitcher that ends it.
pub fn status(job: &JobId) -> String {
    format!("{job}/status.pb")
}

/// The job's latest progress (`JobStatus`, running). Every stitcher of the job overwrites it, so
/// it is kept apart from [`status`]: a late progress report can never hide the job's end.
pub fn progress(job: &JobId) -> String {
    format!("{job}/progress.pb")
}

/// Everything of the job.
pub fn job_prefix(job: &JobId) -> String {
    format!("{job}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip() -> Result<(), crate::WireError> {
        let job = JobId::parse("j1")?;
        assert_eq!(tile_index(&tile(&job, 42)), Some(42));
        assert_eq!(chunk_index(&chunk_done(&job, 7)), Some(7));
        assert_eq!(chunk_index(&chunk_claim(&job, 7)), None);
        assert_eq!(tile_index("j1/tiles/garbage"), None);
        Ok(())
    }
}
