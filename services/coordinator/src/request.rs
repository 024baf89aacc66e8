//! A user's fill request and its translation into an immutable job spec.

use wire::v1::{JobSpec, Method};
use wire::JobId;

use crate::CoordinatorError;

/// What to fill and how: the flags of `terrafill fill` / `submit`.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRequest {
    /// Input Zarr group URL.
    pub input: String,
    /// Output Zarr group URL.
    pub output: String,
    /// Array holding the data.
    pub array: String,
    /// Optional mask array (1 = missing).
    pub mask_array: Option<String>,
    /// Fill method.
    pub method: Method,
    /// Tile size in pixels.
    pub tile: u64,
    /// Overlap between neighbouring tiles in pixels.
    pub overlap: u64,
    /// Job seed.
    pub seed: u64,
    /// Checkpoint URL (diffusion).
    pub checkpoint: Option<String>,
    /// DDIM steps (diffusion).
    pub steps: u32,
    /// Ensemble members (diffusion).
    pub ensemble: u32,
    /// Write this member instead of the ensemble mean.
    pub member: Option<u32>,
    /// Also write every member (the output's `members` array).
    pub members: bool,
    /// DDIM η (0 = deterministic DDIM).
    pub eta: f32,
    /// Job id; derived from the request when absent, so re-running a command resumes it.
    pub job_id: Option<String>,
    /// Staging URL; default: the output URL with `.staging` appended.
    pub staging: Option<String>,
    /// Leave gaps farther than this many pixels from every observed pixel missing.
    pub max_distance: Option<u64>,
    /// Array of the input group, non-zero where missing pixels must stay missing.
    pub keep_array: Option<String>,
    /// Generate a field on an all-gap canvas (`terrafill generate`; diffusion only).
    pub generate: bool,
    /// Parity-phase scheduling: later-phase tiles continue from their staged neighbours.
    pub phased: bool,
    /// Restart the job if it failed, computing only the tiles it has not staged (`terrafill
    /// retry`); without it a failed job is refused at once. Not part of the job's identity.
    pub retry: bool,
}

/// The largest tile side: a tile and its context must fit a worker's memory many times over.
pub const MAX_TILE: u64 = 8192;

impl FillRequest {
    /// A request with the documented defaults.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            array: "data".into(),
            mask_array: None,
            method: Method::Idw,
            tile: 256,
            overlap: 32,
            seed: 0,
            checkpoint: None,
            steps: 25,
            ensemble: 4,
            member: None,
            members: false,
            eta: 1.0,
            job_id: None,
            staging: None,
            max_distance: None,
            keep_array: None,
            generate: false,
            phased: false,
            retry: false,
        }
    }

    /// Checks what can be checked without touching storage.
    ///
    /// # Errors
    /// [`CoordinatorError::Invalid`] naming the flag at fault.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let invalid = |m: String| Err(CoordinatorError::Invalid(m));
        if self.tile == 0 || self.tile > MAX_TILE {
            return invalid(format!(
                "--tile {} must be from 1 to {MAX_TILE} pixels",
                self.tile
            ));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return invalid(format!(
                "--eta {} must be a number from 0 (deterministic DDIM) to 1 (DDPM-like)",
                self.eta
            ));
        }
        if self.overlap >= self.tile {
            return invalid(format!(
                "--overlap {} must be smaller than --tile {}",
                self.overlap, self.tile
            ));
        }
        if self.method == Method::Unspecified {
            return invalid("no method given".into());
        }
        if self.max_distance == Some(0) {
            return invalid("--max-distance must be at least 1 pixel".into());
        }
        if self.method == Method::Diffusion {
            if self.checkpoint.is_none() {
                return invalid("--method diffusion needs --checkpoint URL".into());
            }
            if self.ensemble == 0 || self.steps == 0 {
                return invalid("--ensemble and --steps must be at least 1".into());
            }
            if let Some(m) = self.member.filter(|&m| m >= self.ensemble) {
                return invalid(format!(
                    "--member {m} must be below --ensemble {}",
                    self.ensemble
                ));
            }
        }
        if self.generate && self.method != Method::Diffusion {
            return invalid("generate needs --method diffusion and a --checkpoint".into());
        }
        if self.phased && (self.overlap == 0 || 2 * self.overlap > self.tile) {
            return invalid(format!(
                "--phases needs an --overlap from 1 to half the --tile ({}): later phases \
                 continue from their neighbours there, and tiles of one phase must not overlap",
                self.tile / 2
            ));
        }
        if self.members
            && (self.method != Method::Diffusion || self.ensemble < 2 || self.member.is_some())
        {
            return invalid(
                "--members needs --method diffusion with --ensemble of at least 2 and no --member"
                    .into(),
            );
        }
        let staging = self.staging_url();
        for (what, a, other, b) in [
            ("output", &self.output, "input", &self.input),
            ("staging", &staging, "input", &self.input),
            ("staging", &staging, "output", &self.output),
        ] {
            let overlap = zarr_io::locations_overlap(a, b).map_err(CoordinatorError::storage(
                format!("checking the {what} location"),
            ))?;
            if overlap {
                return invalid(format!(
                    "the {what} {a} must not be the {other} {b}, nor lie inside it or contain it"
                ));
            }
        }
        Ok(())
    }

    /// The job id: given, or a stable hash of everything that determines the output.
    ///
    /// # Errors
    /// [`wire::WireError::InvalidJobId`] for a malformed id.
    pub fn job_id(&self) -> Result<JobId, wire::WireError> {
        if let Some(id) = &self.job_id {
            return JobId::parse(id);
        }
        let key = format!(
            "{}|{}|{:?}|{}|{:?}|{}|{}|{}|{:?}|{}|{}|{:?}|{}{}{}{}{}{}",
            self.input,
            self.array,
            self.mask_array,
            self.output,
            self.method,
            self.tile,
            self.overlap,
            self.seed,
            self.checkpoint,
            self.steps,
            self.ensemble,
            self.member,
            self.eta,
            // Only set flags extend the key, so jobs without them keep their ids.
            if self.members { "|members" } else { "" },
            self.max_distance
                .map_or(String::new(), |d| format!("|max_distance={d}")),
            self.keep_array
                .as_ref()
                .map_or(String::new(), |k| format!("|keep={k}")),
            if self.generate { "|generate" } else { "" },
            if self.phased { "|phased" } else { "" },
        );
        Ok(JobId::derived("job", &key))
    }

    /// Staging URL of the job's intermediate state.
    pub fn staging_url(&self) -> String {
        self.staging
            .clone()
            .unwrap_or_else(|| format!("{}.staging", self.output.trim_end_matches('/')))
    }

    /// The job spec for a scene of `shape` with output chunks `chunk_yx`.
    pub(crate) fn spec(
        &self,
        id: &JobId,
        shape: &[u64],
        chunk_yx: (u64, u64),
        dimension_names: Vec<String>,
    ) -> JobSpec {
        let diffusion = self.method == Method::Diffusion;
        JobSpec {
            job_id: id.to_string(),
            input_url: self.input.clone(),
            array: self.array.clone(),
            mask_array: self.mask_array.clone().unwrap_or_default(),
            output_url: self.output.clone(),
            staging_url: self.staging_url(),
            method: self.method as i32,
            tile: self.tile,
            overlap: self.overlap,
            seed: self.seed,
            shape: shape.to_vec(),
            chunk_y: chunk_yx.0,
            chunk_x: chunk_yx.1,
            checkpoint_url: if diffusion {
                self.checkpoint.clone().unwrap_or_default()
            } else {
                String::new()
            },
            steps: if diffusion { self.steps } else { 0 },
            ensemble: if diffusion { self.ensemble } else { 1 },
            member: if diffusion { self.member } else { None },
            eta: if diffusion { self.eta } else { 0.0 },
            dimension_names,
            members: diffusion && self.members,
            max_distance: self.max_distance.unwrap_or(0),
            keep_array: self.keep_array.clone().unwrap_or_default(),
            generate: diffusion && self.generate,
            phased: self.phased,
        }
    }
}

/// FNV-1a, 64 bit: a hash that never changes between Rust releases (job ids must be stable).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_job_ids_are_stable_and_parameter_sensitive() -> Result<(), wire::WireError> {
        let a = FillRequest::new("in.zarr", "out.zarr");
        let mut b = a.clone();
        assert_eq!(a.job_id()?, b.job_id()?);
        b.seed = 1;
        assert_ne!(a.job_id()?, b.job_id()?);
        Ok(())
    }

    #[test]
    fn validation_names_the_flag() {
        let mut r = FillRequest::new("in.zarr", "out.zarr");
        r.overlap = r.tile;
        assert!(r
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("--overlap"));
        for (tile, eta, flag) in [
            (u64::MAX, 1.0, "--tile"),
            (0, 1.0, "--tile"),
            (64, f32::NAN, "--eta"),
            (64, -0.5, "--eta"),
        ] {
            let mut r = FillRequest::new("in.zarr", "out.zarr");
            (r.tile, r.overlap, r.eta) = (tile, 0, eta);
            let message = r
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(flag), "tile {tile} eta {eta}: {message:?}");
        }
        let mut r = FillRequest::new("in.zarr", "out.zarr");
        r.method = Method::Diffusion;
        assert!(r
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("--checkpoint"));
    }
}
