//! zarr-io: the one place terrafill touches Zarr (zarrs) and object storage (object_store).
//!
//! - [`open_store`], [`get_bytes`], [`put_bytes`]: locations (paths, `file://`, `s3://`, `gs://`,
//!   `az://`, `memory://`) and single objects such as checkpoints;
//! - [`Scene`]: input scenes read window by window as `f32`, missing pixels as NaN;
//! - [`Mosaic`]: output groups written chunk by chunk and finalized last;
//! - [`claim`], [`owner`]: which job owns an output;
//! - [`Staging`]: validated keys for tile outputs and job state;
//! - [`LeaveAlone`]: the missing pixels a job leaves missing (keep array, maximum distance).

mod chunk_cache;
mod convert;
mod coordinates;
mod error;
mod leave_alone;
mod location;
mod mosaic;
mod mosaic_for_scene;
mod ownership;
mod pad;
mod scene;
mod scene_writer;
mod staging;
mod zarr_store;

pub use chunk_cache::{ChunkCache, DEFAULT_LIMIT_BYTES};
pub use coordinates::write_coordinate;
pub use error::ZarrIoError;
pub use leave_alone::LeaveAlone;
pub use location::{
    child_groups, get_bytes, locations_overlap, object_exists, open_store, open_store_deferred,
    put_bytes, store_error_hint, Durability, StoreAndPrefix,
};
pub use mosaic::{Mosaic, MosaicSpec, DATA_ARRAY, FILLED_ARRAY, MEMBERS_ARRAY, SPREAD_ARRAY};
pub use ownership::{claim, owner, OWNER_KEY};
pub use pad::reflect_pad;
pub use scene::{default_dimension_names, Scene, TileData};
pub use scene_writer::write_scene;
pub use staging::{validate_key, Staging};
pub use tiling::Window;

#[cfg(test)]
mod send_checks {
    //! Services spawn these futures on a multi-threaded runtime: they must be `Send`.
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn public_futures_are_send() {
        let staging = Staging::open("memory://send-check/s").expect("memory store");
        assert_send(&staging.get("k"));
        assert_send(&staging.put("k", bytes::Bytes::new()));
        assert_send(&staging.list(""));
        assert_send(&staging.delete_prefix("k"));
        assert_send(&staging.exists("k"));
        assert_send(&get_bytes("memory://send-check/x"));
        assert_send(&put_bytes("memory://send-check/x", bytes::Bytes::new()));
        assert_send(&Scene::open("memory://send-check/s", "data", None));
        assert_send(&Mosaic::is_finalized("memory://send-check/s"));
    }

    #[allow(dead_code)]
    fn method_futures_are_send(scene: &Scene, mosaic: &Mosaic, spec: &MosaicSpec) {
        assert_send(&scene.read_window(Window::new(0, 0, 1, 1)));
        assert_send(&scene.read_window_padded(Window::new(0, 0, 1, 1), 2, 2));
        assert_send(&mosaic.write_chunk(0, 0, &[], &[], None));
        assert_send(&mosaic.finalize(serde_json::Map::new()));
        assert_send(&Mosaic::create("memory://x/y", spec, "job"));
    }
}
