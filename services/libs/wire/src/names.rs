//! Queue, exchange and header names: the broker topology, in one place.

/// Work queue of tile tasks (`terrafill.v1.TileTask`), consumed by workers.
pub const TILE_QUEUE: &str = "terrafill.tiles";
/// Queue of stitcher events (`terrafill.v1.StitchEvent`), consumed by the stitcher.
pub const STITCH_QUEUE: &str = "terrafill.stitch";
/// Fan-out exchange of job progress (`terrafill.v1.JobStatus`).
pub const STATUS_EXCHANGE: &str = "terrafill.status";

/// Header naming the message type, e.g. `terrafill.v1.TileTask`.
pub const HEADER_TYPE: &str = "terrafill-type";
/// Header carrying the job id, so operators can read it without decoding.
pub const HEADER_JOB: &str = "terrafill-job";

/// Type names carried in [`HEADER_TYPE`].
pub mod types {
    /// `TileTask`.
    pub const TILE_TASK: &str = "terrafill.v1.TileTask";
    /// `StitchEvent`.
    pub const STITCH_EVENT: &str = "terrafill.v1.StitchEvent";
    /// `JobStatus`.
    pub const JOB_STATUS: &str = "terrafill.v1.JobStatus";
}

/// Largest message any terrafill service accepts (tile tasks and events are a few hundred bytes).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The headers every terrafill message carries: its type and its job.
pub fn headers(type_name: &str, job: &str) -> std::collections::BTreeMap<String, String> {
    [
        (HEADER_TYPE.to_owned(), type_name.to_owned()),
        (HEADER_JOB.to_owned(), job.to_owned()),
    ]
    .into_iter()
    .collect()
}
