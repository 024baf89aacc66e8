//! The output layout that mirrors an input scene.

use serde_json::{Map, Value};

use crate::{MosaicSpec, Scene};

/// The input array's attributes as they apply to the float32 output: without the ones that
/// encode missing values (the output marks them NaN, and an integer `_FillValue` on float data
/// stops xarray from opening it).
fn float_attributes(mut attributes: Map<String, Value>) -> Map<String, Value> {
    for key in crate::scene::MISSING_ATTRIBUTES {
        attributes.remove(key);
    }
    attributes
}

impl MosaicSpec {
    /// A mosaic with the scene's shape, dimension names and array attributes, chunked
    /// `chunk_yx` in (y, x), with a `spread` array when `with_spread`, and NaN as fill value.
    pub fn for_scene(scene: &Scene, chunk_yx: (u64, u64), with_spread: bool) -> Self {
        Self {
            shape: scene.shape().to_vec(),
            chunk_yx,
            dimension_names: scene.dimension_names(),
            with_spread,
            members: 0,
            array_attributes: float_attributes(scene.array_attributes()),
            data_fill: f32::NAN,
        }
    }
}
