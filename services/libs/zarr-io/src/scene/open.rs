//! Opening a scene's arrays: the checks that name what a store holds when it is not what was
//! asked for (no group, no such array, an unsupported data type, a mask of the wrong shape).

use object_store::ObjectStore;
use zarrs::array::data_type::BoolDataType;
use zarrs::array::{Array, ArrayCreateError};

use super::Mask;
use crate::convert::is_supported;
use crate::error::ZarrIoError;
use crate::zarr_store::{Objects, Opened, ZarrStore};

/// What an array is read for: data must be numeric; a mask may also be boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Data,
    Mask,
}

/// Why `url` holds no group metadata: the store's own error when it cannot even be listed (a
/// missing bucket, refused credentials), else whether anything is stored there at all.
pub(super) async fn not_a_group(url: &str, objects: &Objects) -> ZarrIoError {
    match objects.list_with_delimiter(None).await {
        Ok(listing) => ZarrIoError::NotAZarr {
            url: url.to_owned(),
            empty: listing.objects.is_empty() && listing.common_prefixes.is_empty(),
        },
        Err(object_store::Error::NotFound { .. }) => ZarrIoError::NotAZarr {
            url: url.to_owned(),
            empty: true,
        },
        Err(source) => {
            crate::location::store_error(url, &object_store::path::Path::default(), "list", source)
        }
    }
}

/// The names of the group's child nodes (its first-level "directories"), for error messages;
/// empty when they cannot be listed.
async fn child_nodes(objects: &Objects) -> Vec<String> {
    match objects.list_with_delimiter(None).await {
        Ok(listing) => {
            let mut names: Vec<String> = listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

/// Open array `name` of the group and check that its data type converts to `f32` (and, for
/// data, is not boolean: true/false are no measurements to interpolate). A name that is no
/// array (or empty, i.e. the group itself) is refused with the group's nodes listed.
pub(super) async fn open_array(
    opened: &Opened,
    url: &str,
    name: &str,
    role: Role,
) -> Result<Array<ZarrStore>, ZarrIoError> {
    let path = format!("/{}", name.trim_start_matches('/'));
    let opened_array = if path == "/" {
        Err(ArrayCreateError::MissingMetadata)
    } else {
        Array::async_open(opened.zarr.clone(), &path).await
    };
    let array = match opened_array {
        Ok(array) => array,
        Err(ArrayCreateError::MissingMetadata) => {
            return Err(ZarrIoError::ArrayNotFound {
                url: url.to_owned(),
                array: name.to_owned(),
                available: child_nodes(&opened.objects).await,
            })
        }
        Err(source) => {
            return Err(ZarrIoError::OpenArray {
                url: url.to_owned(),
                array: name.to_owned(),
                source: Box::new(source),
            })
        }
    };
    let boolean = array.data_type().is::<BoolDataType>();
    if !is_supported(array.data_type()) || (boolean && role == Role::Data) {
        return Err(ZarrIoError::UnsupportedDataType {
            url: url.to_owned(),
            array: name.to_owned(),
            data_type: array.data_type().to_string(),
        });
    }
    Ok(array)
}

/// Open the mask array and check that it is full-shape or `[y, x]`-shaped.
pub(super) async fn open_mask(
    opened: &Opened,
    url: &str,
    name: &str,
    data_shape: &[u64],
) -> Result<Mask, ZarrIoError> {
    let array = open_array(opened, url, name, Role::Mask).await?;
    let mask_shape = array.shape();
    let yx = &data_shape[data_shape.len() - 2..];
    if mask_shape != data_shape && mask_shape != yx {
        return Err(ZarrIoError::MaskShape {
            url: url.to_owned(),
            mask: name.to_owned(),
            mask_shape: mask_shape.to_vec(),
            data_shape: data_shape.to_vec(),
        });
    }
    Ok(Mask {
        name: name.to_owned(),
        array,
    })
}
