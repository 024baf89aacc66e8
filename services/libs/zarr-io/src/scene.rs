//! Input scenes: a Zarr group (v3, or v2) with a numeric array `[y, x]`, `[band, y, x]` or
//! `[time, band, y, x]`, read window by window as `f32` with missing pixels as NaN.

use object_store::ObjectStore;
use serde_json::{Map, Value};
use std::sync::Arc;

use zarrs::array::Array;
use zarrs::group::{Group, GroupCreateError};

use crate::chunk_cache::ChunkCache;
use crate::convert::MissingRule;
use crate::error::ZarrIoError;
use crate::zarr_store::{open_zarr_store, Objects, ZarrStore};

mod open;
mod read;

use open::{not_a_group, open_array, open_mask, Role};

/// Attributes that name a sentinel for missing data, in the order they are looked up.
pub(crate) const MISSING_ATTRIBUTES: [&str; 3] = ["_FillValue", "missing_value", "nodata"];

/// xarray's attribute holding the dimension names of a Zarr v2 array.
const XARRAY_DIMENSIONS: &str = "_ARRAY_DIMENSIONS";

/// Values of a window: all leading dimensions × the window's rows × columns, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TileData {
    /// `[lead..., height, width]`; for a rank-2 array just `[height, width]`.
    pub shape: Vec<usize>,
    /// The values; missing pixels are NaN.
    pub values: Vec<f32>,
}

impl TileData {
    /// Number of NaN (missing) values.
    pub fn missing_count(&self) -> usize {
        self.values.iter().filter(|v| v.is_nan()).count()
    }
}

/// The mask array: either the data's shape or its `[y, x]` shape (broadcast over leading
/// dimensions; its rank tells which).
struct Mask {
    name: String,
    array: Array<ZarrStore>,
}

/// An opened input scene.
///
/// Opening reads only metadata; [`Scene::read_window`] fetches just the chunks a window touches.
pub struct Scene {
    url: String,
    array_name: String,
    data: Array<ZarrStore>,
    mask: Option<Mask>,
    group_attributes: Map<String, Value>,
    rule: MissingRule,
    chunk_yx: (u64, u64),
    /// Whether the data array has a regular chunk grid (`chunk_yx` is its chunk shape).
    regular: bool,
    objects: std::sync::Arc<Objects>,
    shared: Option<Shared>,
}

/// Where a scene's decoded cells are shared (see [`Scene::share_chunks`]).
struct Shared {
    cache: Arc<ChunkCache>,
    namespace: Arc<str>,
    array: Arc<str>,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("url", &self.url)
            .field("array", &self.array_name)
            .field("shape", &self.shape())
            .field("mask", &self.mask.as_ref().map(|m| &m.name))
            .finish_non_exhaustive()
    }
}

impl Scene {
    /// Open the array `array` (and optionally the mask array `mask_array`, 1 = missing) of the Zarr
    /// group at `url`.
    ///
    /// # Errors
    /// [`ZarrIoError::NotAZarr`] when `url` holds no group, [`ZarrIoError::ArrayNotFound`],
    /// [`ZarrIoError::UnsupportedRank`] for rank < 2 or > 4, [`ZarrIoError::UnsupportedDataType`]
    /// for non-numeric arrays, [`ZarrIoError::MaskShape`] for a mask that fits neither the data's
    /// shape nor its `[y, x]` shape, and store errors.
    pub async fn open(
        url: &str,
        array: &str,
        mask_array: Option<&str>,
    ) -> Result<Scene, ZarrIoError> {
        Self::open_ranked(url, array, mask_array, 2..=4).await
    }

    /// Open the `members` array of an output mosaic: `[member, lead..., y, x]`, rank 3 to 5
    /// (see [`crate::MEMBERS_ARRAY`]); read it like a scene whose leading dimensions start with
    /// the member.
    ///
    /// # Errors
    /// As [`Scene::open`].
    pub async fn open_members(url: &str) -> Result<Scene, ZarrIoError> {
        Self::open_ranked(url, crate::MEMBERS_ARRAY, None, 3..=5).await
    }

    async fn open_ranked(
        url: &str,
        array: &str,
        mask_array: Option<&str>,
        ranks: std::ops::RangeInclusive<usize>,
    ) -> Result<Scene, ZarrIoError> {
        let opened = open_zarr_store(url)?;
        let group = match Group::async_open(opened.zarr.clone(), "/").await {
            Ok(group) => group,
            Err(GroupCreateError::MissingMetadata) => {
                return Err(not_a_group(url, &opened.objects).await);
            }
            Err(source) => {
                if Array::async_open(opened.zarr.clone(), "/").await.is_ok() {
                    let trimmed = url.trim_end_matches('/');
                    let (parent, name) = trimmed.rsplit_once('/').unwrap_or((".", trimmed));
                    return Err(ZarrIoError::ArrayNotGroup {
                        url: url.to_owned(),
                        parent: parent.to_owned(),
                        name: name.to_owned(),
                    });
                }
                return Err(ZarrIoError::OpenGroup {
                    url: url.to_owned(),
                    source: Box::new(source),
                });
            }
        };
        let group_attributes = group.attributes().clone();
        let data = open_array(&opened, url, array, Role::Data).await?;
        let shape = data.shape().to_vec();
        if !ranks.contains(&shape.len()) {
            return Err(ZarrIoError::UnsupportedRank {
                url: url.to_owned(),
                array: array.to_owned(),
                shape,
            });
        }
        let mask = match mask_array {
            Some(name) => Some(open_mask(&opened, url, name, &shape).await?),
            None => None,
        };
        let rank = shape.len();
        let regular_yx = data
            .chunk_shape(&vec![0; rank])
            .map(|c| (c[rank - 2].get(), c[rank - 1].get()));
        let regular = regular_yx.is_ok();
        let chunk_yx = regular_yx.unwrap_or((shape[rank - 2], shape[rank - 1]));
        let rule = MissingRule {
            sentinels: sentinels(data.attributes())
                .or_else(|| sentinels(&group_attributes))
                .unwrap_or_default(),
            zarr_fill: true,
        };
        tracing::debug!(%url, array, shape = ?data.shape(), data_type = %data.data_type(), "scene opened");
        Ok(Scene {
            url: url.to_owned(),
            array_name: array.to_owned(),
            data,
            mask,
            group_attributes,
            rule,
            chunk_yx,
            regular,
            objects: opened.objects.clone(),
            shared: None,
        })
    }

    /// Reads the data array through `cache` from now on, its cells keyed under `namespace`: the
    /// readers of one process that share a cache and a namespace decode each chunk about once
    /// (see [`ChunkCache`]). The namespace must change whenever the stored data may have (a job
    /// id: a job's input is fixed while it runs). Scenes without a regular chunk grid read as
    /// before.
    pub fn share_chunks(mut self, cache: Arc<ChunkCache>, namespace: &str) -> Scene {
        if self.regular {
            self.shared = Some(Shared {
                cache,
                namespace: Arc::from(namespace),
                array: Arc::from(self.array_name.as_str()),
            });
        }
        self
    }

    /// The location the scene was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the data array.
    pub fn array_name(&self) -> &str {
        &self.array_name
    }

    /// The array's full shape, `[lead..., y, x]`.
    pub fn shape(&self) -> &[u64] {
        self.data.shape()
    }

    /// Number of rows (size of the `y` dimension).
    pub fn height(&self) -> u64 {
        let s = self.shape();
        s[s.len() - 2]
    }

    /// Number of columns (size of the `x` dimension).
    pub fn width(&self) -> u64 {
        let s = self.shape();
        s[s.len() - 1]
    }

    /// Product of the leading dimensions (1 for a rank-2 array).
    pub fn lead_len(&self) -> u64 {
        let s = self.shape();
        s[..s.len() - 2].iter().product()
    }

    /// The regular chunk shape of the array in its last two dimensions.
    pub fn chunk_shape_yx(&self) -> (u64, u64) {
        self.chunk_yx
    }

    /// The `(row, column)` positions, in the scene's `[y, x]` chunk grid, where the store holds
    /// at least one chunk of the data (any leading index) or of the mask. Every other position
    /// reads as the arrays' fill values, the same everywhere, so one read of one such chunk says
    /// what all of them hold. One listing of the arrays' keys, no chunk read.
    ///
    /// Returns `None` when positions cannot be told apart that way: a mask chunked unlike the
    /// data, or an irregular chunk grid.
    ///
    /// # Errors
    /// Store errors naming the location, when listing fails.
    pub async fn stored_chunk_columns(
        &self,
    ) -> Result<Option<std::collections::HashSet<(u64, u64)>>, ZarrIoError> {
        let mut arrays = vec![&self.data];
        if let Some(mask) = &self.mask {
            let rank = mask.array.shape().len();
            let mask_yx = mask
                .array
                .chunk_shape(&vec![0; rank])
                .ok()
                .map(|c| (c[rank - 2].get(), c[rank - 1].get()));
            if mask_yx != Some(self.chunk_yx) {
                return Ok(None);
            }
            arrays.push(&mask.array);
        }
        let mut columns = std::collections::HashSet::new();
        for array in arrays {
            let rank = array.shape().len();
            let grid = array.chunk_grid_shape().to_vec();
            let regular = array.chunk_shape(&vec![0; rank]).is_ok_and(|c| {
                c[rank - 2].get() == self.chunk_yx.0 && c[rank - 1].get() == self.chunk_yx.1
            });
            if !regular || grid.len() != rank {
                return Ok(None);
            }
            let prefix = array.path().as_str().trim_start_matches('/').to_owned();
            let listed = object_store::path::Path::from(prefix.as_str());
            let stored: std::collections::HashSet<String> = futures::TryStreamExt::try_collect(
                futures::TryStreamExt::map_ok(self.objects.list(Some(&listed)), |m| {
                    m.location.to_string()
                }),
            )
            .await
            .map_err(|e| crate::location::store_error(&self.url, &listed, "list", e))?;
            for indices in chunk_indices(&grid) {
                if stored.contains(array.chunk_key(&indices).as_str()) {
                    columns.insert((indices[rank - 2], indices[rank - 1]));
                }
            }
        }
        Ok(Some(columns))
    }

    /// Dimension names: Zarr v3 `dimension_names`, else xarray's `_ARRAY_DIMENSIONS` attribute,
    /// else `[y, x]`, `[band, y, x]` or `[time, band, y, x]` (also for any unnamed dimension).
    pub fn dimension_names(&self) -> Vec<String> {
        let rank = self.shape().len();
        let defaults = default_dimension_names(rank);
        let given: Option<Vec<Option<String>>> =
            self.data.dimension_names().clone().or_else(|| {
                let list = self.data.attributes().get(XARRAY_DIMENSIONS)?.as_array()?;
                Some(list.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            });
        match given {
            Some(names) if names.len() == rank => names
                .into_iter()
                .zip(defaults)
                .map(|(name, default)| name.filter(|n| !n.is_empty()).unwrap_or(default))
                .collect(),
            _ => defaults,
        }
    }

    /// The group's attributes (CRS, transform, units …).
    pub fn group_attributes(&self) -> Map<String, Value> {
        self.group_attributes.clone()
    }

    /// The data array's attributes.
    pub fn array_attributes(&self) -> Map<String, Value> {
        self.data.attributes().clone()
    }
}

/// Every index of a chunk grid of shape `grid`, row-major.
fn chunk_indices(grid: &[u64]) -> impl Iterator<Item = Vec<u64>> + '_ {
    let total: u64 = grid.iter().product();
    (0..total).map(move |mut flat| {
        let mut index = vec![0; grid.len()];
        for (i, &n) in grid.iter().enumerate().rev() {
            index[i] = flat % n.max(1);
            flat /= n.max(1);
        }
        index
    })
}

/// Missing-value sentinels declared in `attrs`, or `None` when it declares none.
fn sentinels(attrs: &Map<String, Value>) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    let mut declared = false;
    for key in MISSING_ATTRIBUTES {
        let Some(value) = attrs.get(key) else {
            continue;
        };
        declared = true;
        let values = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        out.extend(values.into_iter().filter_map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }));
    }
    declared.then_some(out)
}

/// `[time, band, y, x]`'s last `rank` names: the dimension names of a scene that records none.
pub fn default_dimension_names(rank: usize) -> Vec<String> {
    let all = ["time", "band", "y", "x"];
    let skip = all.len().saturating_sub(rank);
    let mut names: Vec<String> = all[skip..].iter().map(|s| (*s).to_owned()).collect();
    // Ranks above 4 never reach here (rejected at open), but keep the length right regardless.
    while names.len() < rank {
        names.insert(0, format!("dim_{}", rank - names.len() - 1));
    }
    names
}

/// Array sizes fit in memory whenever a read succeeds; saturate rather than wrap otherwise.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_names_by_rank() {
        assert_eq!(default_dimension_names(2), ["y", "x"]);
        assert_eq!(default_dimension_names(3), ["band", "y", "x"]);
        assert_eq!(default_dimension_names(4), ["time", "band", "y", "x"]);
    }

    #[test]
    fn sentinel_attributes() {
        let attrs = json!({"_FillValue": -9999, "nodata": "255", "units": "DN"});
        let Value::Object(attrs) = attrs else {
            unreachable!()
        };
        assert_eq!(sentinels(&attrs), Some(vec![-9999.0, 255.0]));
        let attrs = json!({"missing_value": [1, 2.5]});
        let Value::Object(attrs) = attrs else {
            unreachable!()
        };
        assert_eq!(sentinels(&attrs), Some(vec![1.0, 2.5]));
        assert_eq!(sentinels(&Map::new()), None);
    }
}
