//! zarr-io: the one place terrafill touches Zarr (zarrs) and object storage (object_store).
//!
//! - [`open_store`], [`get_bytes`], [`put_bytes`]: locations (paths, `file://`, `s3://`, `gs://`,
//!   `az://`, `memory://`) and single objects such as checkpoints;
//! - [`Scene`]: input scenes read window by window as `f32`, missing pixels as NaN;
//! - [`Mosaic`]: output groups written chunk by chunk and finalized last;
//! - [`Staging`]: validated keys for tile outputs and job state.

mod convert;
mod error;
mod location;
mod mosaic;
mod pad;
mod scene;
mod staging;
mod zarr_store;

pub use error::ZarrIoError;
pub use location::{get_bytes, open_store, put_bytes, StoreAndPrefix};
pub use mosaic::{Mosaic, MosaicSpec, DATA_ARRAY, FILLED_ARRAY, SPREAD_ARRAY};
pub use scene::{Scene, TileData};
pub use staging::{validate_key, Staging};
pub use tiling::Window;
