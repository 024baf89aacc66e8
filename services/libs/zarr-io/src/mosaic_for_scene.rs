//! The output layout that mirrors an input scene.

use crate::{MosaicSpec, Scene};

impl MosaicSpec {
    /// A mosaic with the scene's shape, dimension names and array attributes, chunked
    /// `chunk_yx` in (y, x), with a `spread` array when `with_spread`.
    pub fn for_scene(scene: &Scene, chunk_yx: (u64, u64), with_spread: bool) -> Self {
        Self {
            shape: scene.shape().to_vec(),
            chunk_yx,
            dimension_names: scene.dimension_names(),
            with_spread,
            members: 0,
            array_attributes: scene.array_attributes(),
        }
    }
}
