//! One conformance suite for zarr-io, run against every backend (memory, local files, S3).

pub mod fixtures;
pub mod mosaic_cases;
pub mod scene_cases;
pub mod staging_cases;
