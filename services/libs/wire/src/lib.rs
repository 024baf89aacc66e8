//! terrafill's wire contract: the prost types generated from `proto/terrafill/v1`, their checked
//! decoding, the broker topology names, the staging key layout and job signatures.

mod codec;
mod job_id;
mod names;
mod staged_tile;
pub mod staging_keys;
mod tile_set;
pub mod train_keys;
pub mod trust;

pub use codec::{decode, encode, f32_from_le_bytes, f32_to_le_bytes, WireError};
pub use job_id::JobId;
pub use names::*;
pub use staged_tile::StagedTile;
pub use tile_set::TileSet;
pub use trust::{JobKey, JOB_KEY_ENV};

/// Generated protobuf types of package `terrafill.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/terrafill.v1.rs"));
}

/// Milliseconds since the Unix epoch now (0 if the clock is before it): the timestamps of plans
/// and statuses.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds from `unix_ms` (a [`unix_ms_now`] taken earlier, maybe on another machine) to now,
/// at least 0; `None` when `unix_ms` is 0 (unknown, e.g. a task from an older coordinator).
pub fn seconds_since_unix_ms(unix_ms: u64) -> Option<f64> {
    (unix_ms > 0).then(|| unix_ms_now().saturating_sub(unix_ms) as f64 / 1e3)
}

impl v1::JobSpec {
    /// The validated job id.
    ///
    /// # Errors
    /// [`WireError::InvalidJobId`].
    pub fn id(&self) -> Result<JobId, WireError> {
        JobId::parse(&self.job_id)
    }

    /// The tile grid of the job's scene.
    ///
    /// # Errors
    /// [`WireError::BadSpec`] when the shape has fewer than two dimensions or the grid is invalid.
    pub fn grid(&self) -> Result<tiling::TileGrid, WireError> {
        let (h, w) = self.plane()?;
        tiling::TileGrid::new(h, w, self.tile, self.overlap).map_err(|e| WireError::BadSpec {
            job: self.job_id.clone(),
            reason: e.to_string(),
        })
    }

    /// The output chunk grid.
    ///
    /// # Errors
    /// [`WireError::BadSpec`] when the shape has fewer than two dimensions.
    pub fn chunk_grid(&self) -> Result<tiling::ChunkGrid, WireError> {
        let (h, w) = self.plane()?;
        Ok(tiling::ChunkGrid::new(h, w, self.chunk_y, self.chunk_x))
    }

    /// Whether the output has a `spread` array: an ensemble mean of more than one member.
    pub fn with_spread(&self) -> bool {
        self.ensemble > 1 && self.member.is_none()
    }

    /// Members in the output's `members` array (0: no such array).
    pub fn members_written(&self) -> u32 {
        if self.members && self.with_spread() {
            self.ensemble
        } else {
            0
        }
    }

    /// Product of the leading (band/time) dimensions; `usize::MAX` for a shape whose product
    /// overflows (no real scene has one: workers compare the shape with the input first).
    pub fn lead_len(&self) -> usize {
        let n = self.shape.len().saturating_sub(2);
        self.shape[..n]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(usize::MAX)
    }

    fn plane(&self) -> Result<(u64, u64), WireError> {
        match self.shape.as_slice() {
            [.., h, w] => Ok((*h, *w)),
            _ => Err(WireError::BadSpec {
                job: self.job_id.clone(),
                reason: format!("shape {:?} has fewer than two dimensions", self.shape),
            }),
        }
    }
}
