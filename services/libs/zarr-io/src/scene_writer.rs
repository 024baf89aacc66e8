//! Writing a whole single-array scene group: fixtures, the demo's gapped input, generated fields.

use serde_json::{Map, Value};
use zarrs::array::data_type;
use zarrs::array::ArraySubset;

use crate::mosaic::ensure_array;
use crate::zarr_store::open_zarr_store;
use crate::{Mosaic, MosaicSpec, ZarrIoError};

/// Writes `values` (float32, `spec.shape`, row-major, NaN = missing) as array `array` of a new
/// Zarr v3 group at `url`, with `group_attributes`; the group metadata is written last.
///
/// # Errors
/// [`ZarrIoError`] naming the URL when the layout is invalid, the length is wrong or a write fails.
pub async fn write_scene(
    url: &str,
    array: &str,
    spec: &MosaicSpec,
    group_attributes: Map<String, Value>,
    values: &[f32],
) -> Result<(), ZarrIoError> {
    let expected: u64 = spec.shape.iter().product();
    if values.len() as u64 != expected {
        return Err(ZarrIoError::InvalidSpec {
            url: url.to_owned(),
            reason: format!("{} values for shape {:?}", values.len(), spec.shape),
        });
    }
    let opened = open_zarr_store(url)?;
    let arr = ensure_array(
        url,
        &opened.zarr,
        spec,
        array,
        data_type::float32(),
        f32::NAN,
        &spec.array_attributes,
    )
    .await?;
    let subset = ArraySubset::new_with_shape(spec.shape.clone());
    arr.async_store_array_subset(&subset, values.to_vec())
        .await
        .map_err(|source| ZarrIoError::Write {
            url: url.to_owned(),
            array: array.to_owned(),
            cy: 0,
            cx: 0,
            source: Box::new(source),
        })?;
    Mosaic::write_group_metadata(url, &opened.zarr, group_attributes).await
}
