//! Queue, exchange and header names: the broker topology, in one place.

/// Work queue of tile tasks (`terrafill.v1.TileTask`), consumed by workers.
pub const TILE_QUEUE: &str = "terrafill.tiles";
/// Queue of stitcher events (`terrafill.v1.StitchEvent`), consumed by the stitcher.
pub const STITCH_QUEUE: &str = "terrafill.stitch";
/// Fan-out exchange of job progress (`terrafill.v1.JobStatus`).
pub const STATUS_EXCHANGE: &str = "terrafill.status";
/// Work queue of training shard tasks (`terrafill.v1.ShardTask`), consumed by workers.
pub const TRAIN_QUEUE: &str = "terrafill.train";
/// Fan-out exchange of shard reports (`terrafill.v1.ShardResult`), read by training
/// coordinators (each keeps the events of its own job).
pub const TRAIN_EXCHANGE: &str = "terrafill.train.events";

/// The work queues, each declared alike by every service that touches it
/// ([`QUEUES`] is the whole topology; exchanges are declared by their subscribers).
pub const QUEUES: [&str; 3] = [TILE_QUEUE, STITCH_QUEUE, TRAIN_QUEUE];

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
    /// `ShardTask`.
    pub const SHARD_TASK: &str = "terrafill.v1.ShardTask";
    /// `ShardResult`.
    pub const SHARD_RESULT: &str = "terrafill.v1.ShardResult";
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
