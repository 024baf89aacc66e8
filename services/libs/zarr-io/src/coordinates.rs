//! Coordinate arrays (time, band, lat/y, lon/x …) carried from an input group into an output
//! mosaic, so xarray opens the output with the input's coordinates.

use serde_json::{Map, Value};
use zarrs::array::{data_type, Array, ArrayBuilder, ArrayBytes};

use crate::error::ZarrIoError;
use crate::zarr_store::open_zarr_store;
use crate::{Mosaic, Scene};

/// Writes `values` as the float64 dimension coordinate `name` (a 1-D array of dimension `name`,
/// one chunk) into the group at `url`, with `attributes` (such as `units`).
///
/// # Errors
/// [`ZarrIoError::CopyCoordinate`] naming the array when the write fails.
pub async fn write_coordinate(
    url: &str,
    name: &str,
    values: &[f64],
    attributes: Map<String, Value>,
) -> Result<(), ZarrIoError> {
    let err = |reason: String| ZarrIoError::CopyCoordinate {
        url: url.to_owned(),
        from: "the values given".to_owned(),
        array: name.to_owned(),
        reason,
    };
    let opened = open_zarr_store(url)?;
    let len = values.len().max(1) as u64;
    let array = ArrayBuilder::new(
        vec![values.len() as u64],
        vec![len],
        data_type::float64(),
        f64::NAN,
    )
    .dimension_names(Some([name]))
    .attributes(attributes)
    .build(opened.zarr.clone(), &format!("/{name}"))
    .map_err(|e| err(e.to_string()))?;
    store_whole(&array, values.to_vec()).await.map_err(err)
}

/// Writes `array`'s metadata, then `values` as its whole content.
async fn store_whole<'a>(
    array: &Array<crate::zarr_store::ZarrStore>,
    values: impl zarrs::array::IntoArrayBytes<'a> + Send,
) -> Result<(), String> {
    array
        .async_store_metadata()
        .await
        .map_err(|e| e.to_string())?;
    array
        .async_store_array_subset(&array.subset_all(), values)
        .await
        .map_err(|e| e.to_string())
}

impl Mosaic {
    /// Copies from the scene's group every array named after one of the data's dimensions whose
    /// shape is that dimension's length (xarray's dimension coordinates), re-encoded as Zarr v3
    /// with its dimension name, whatever the input's Zarr version. Returns the names copied.
    /// Idempotent: a resumed job writes the same bytes again.
    ///
    /// # Errors
    /// [`ZarrIoError::CopyCoordinate`] naming the array, when a coordinate array that exists cannot
    /// be read or written.
    pub async fn copy_coordinates(&self, scene: &Scene) -> Result<Vec<String>, ZarrIoError> {
        let input = open_zarr_store(scene.url())?;
        let mut copied = Vec::new();
        for (name, &len) in scene.dimension_names().iter().zip(scene.shape()) {
            let err = |reason: String| ZarrIoError::CopyCoordinate {
                url: self.url().to_owned(),
                from: scene.url().to_owned(),
                array: name.clone(),
                reason,
            };
            if name.is_empty() || name.contains('/') || name == scene.array_name() {
                continue;
            }
            let path = format!("/{name}");
            let Ok(source) = Array::async_open(input.zarr.clone(), &path).await else {
                continue; // no such array: the dimension has no coordinate
            };
            if source.shape() != [len] {
                continue;
            }
            let values: ArrayBytes<'static> = source
                .async_retrieve_array_subset(&source.subset_all())
                .await
                .map_err(|e| err(e.to_string()))?;
            let mut builder = ArrayBuilder::from_array(&source);
            builder.dimension_names(Some([name.as_str()]));
            builder.attributes_mut().remove(XARRAY_DIMENSIONS);
            let target = builder
                .build(self.zarr_store(), &path)
                .map_err(|e| err(e.to_string()))?;
            store_whole(&target, values).await.map_err(err)?;
            copied.push(name.clone());
        }
        Ok(copied)
    }
}

/// xarray's Zarr v2 dimension-name attribute, replaced by v3 `dimension_names`.
const XARRAY_DIMENSIONS: &str = "_ARRAY_DIMENSIONS";
