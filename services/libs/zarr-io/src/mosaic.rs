//! Output mosaics: a Zarr v3 group with `data` (float32), `filled` (uint8) and optionally
//! `spread` and `members` (float32), written chunk by chunk; the root `zarr.json` is written last, by
//! [`Mosaic::finalize`], so an unfinished output never opens as a complete group.

use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};
use tiling::{ChunkGrid, Window};
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{data_type, Array, ArrayBuilder, ArrayCreateError, DataType, Element};
use zarrs::group::GroupBuilder;

use crate::convert::{check_window, read_error, window_subset};
use crate::error::ZarrIoError;
use crate::location::store_error;
use crate::location::Durability;
use crate::zarr_store::{open_zarr_store, open_zarr_store_deferred, ZarrStore};

/// Name of the array holding the (filled) values.
pub const DATA_ARRAY: &str = "data";
/// Name of the array flagging filled pixels (1 = filled).
pub const FILLED_ARRAY: &str = "filled";
/// Name of the array holding the ensemble standard deviation.
pub const SPREAD_ARRAY: &str = "spread";
/// Name of the array holding every ensemble member, with a leading `member` dimension.
pub const MEMBERS_ARRAY: &str = "members";
/// Key of the root group metadata, written by [`Mosaic::finalize`].
const GROUP_METADATA_KEY: &str = "zarr.json";
/// zstd level for output chunks: fast, and still shrinks `filled` and NaN-heavy chunks well.
const ZSTD_LEVEL: i32 = 1;

/// Shape and layout of an output mosaic.
#[derive(Debug, Clone, PartialEq)]
pub struct MosaicSpec {
    /// Array shape `[lead..., y, x]` (rank 2 to 4), same as the input's.
    pub shape: Vec<u64>,
    /// Chunk size in `y` and `x`; leading dimensions are never split.
    pub chunk_yx: (u64, u64),
    /// One name per dimension, e.g. `["band", "y", "x"]`.
    pub dimension_names: Vec<String>,
    /// Whether to create the `spread` array (ensembles of more than one member).
    pub with_spread: bool,
    /// Members in the `members` array, `[member, lead..., y, x]`; 0 for no such array.
    pub members: u32,
    /// Attributes of the `data` array (e.g. the input array's units).
    pub array_attributes: Map<String, Value>,
    /// Fill value of the `data` array: NaN, or the input's fill value when the plan leaves chunks
    /// that the input does not store unwritten (they then read as the input does).
    pub data_fill: f32,
}

/// An output mosaic being written.
pub struct Mosaic {
    url: String,
    spec: MosaicSpec,
    data: Array<ZarrStore>,
    filled: Array<ZarrStore>,
    spread: Option<Array<ZarrStore>>,
    members: Option<Array<ZarrStore>>,
    zarr: Arc<ZarrStore>,
    objects: Arc<dyn object_store::ObjectStore>,
    durability: Durability,
}

impl std::fmt::Debug for Mosaic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mosaic")
            .field("url", &self.url)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Mosaic {
    /// Create the arrays of a mosaic at `url` for job `owner` (not the root group metadata; see
    /// [`Mosaic::finalize`]). The job claims the output first (see [`crate::claim`]).
    ///
    /// Calling it again on an existing output with the same spec and owner succeeds and keeps the
    /// chunks already written (resume).
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidSpec`] for an inconsistent spec, [`ZarrIoError::OwnedByAnotherJob`]
    /// when another job owns the output, [`ZarrIoError::SpecMismatch`] when an existing array
    /// differs from the spec, store errors.
    pub async fn create(url: &str, spec: &MosaicSpec, owner: &str) -> Result<Mosaic, ZarrIoError> {
        validate(url, spec)?;
        crate::claim(url, owner).await?;
        let (opened, durability) = open_zarr_store_deferred(url)?;
        let zarr = opened.zarr;
        let mut filled_attrs = Map::new();
        filled_attrs.insert("flag_values".into(), Value::from(vec![0, 1]));
        filled_attrs.insert("flag_meanings".into(), Value::from("observed filled"));

        let data = ensure_array(
            url,
            &zarr,
            spec,
            DATA_ARRAY,
            data_type::float32(),
            spec.data_fill,
            &spec.array_attributes,
        )
        .await?;
        let filled = ensure_array(
            url,
            &zarr,
            spec,
            FILLED_ARRAY,
            data_type::uint8(),
            0u8,
            &filled_attrs,
        )
        .await?;
        let spread = if spec.with_spread {
            let long_name = "ensemble standard deviation";
            Some(float_array(url, &zarr, spec, SPREAD_ARRAY, long_name).await?)
        } else {
            None
        };
        let members = if spec.members > 0 {
            let mut layout = spec.clone();
            layout.shape.insert(0, u64::from(spec.members));
            layout.dimension_names.insert(0, "member".into());
            let long_name = "ensemble member";
            Some(float_array(url, &zarr, &layout, MEMBERS_ARRAY, long_name).await?)
        } else {
            None
        };
        durability.sync().await?;
        tracing::debug!(%url, shape = ?spec.shape, chunk_yx = ?spec.chunk_yx, "mosaic arrays ready");
        Ok(Mosaic {
            url: url.to_owned(),
            spec: spec.clone(),
            data,
            filled,
            spread,
            members,
            zarr,
            objects: opened.objects,
            durability,
        })
    }

    /// The output's Zarr store.
    pub(crate) fn zarr_store(&self) -> Arc<ZarrStore> {
        self.zarr.clone()
    }

    /// The output location.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The spec the mosaic was created with.
    pub fn spec(&self) -> &MosaicSpec {
        &self.spec
    }

    /// The chunk grid of the `y`, `x` plane (geometry lives in `tiling`).
    pub fn chunks(&self) -> ChunkGrid {
        let (h, w) = self.height_width();
        ChunkGrid::new(h, w, self.spec.chunk_yx.0, self.spec.chunk_yx.1)
    }

    /// Number of chunk rows and columns in the `y`, `x` plane.
    pub fn chunk_grid(&self) -> (u64, u64) {
        self.chunks().shape()
    }

    /// The pixels of chunk (`cy`, `cx`), clipped to the array (edge chunks are smaller).
    pub fn chunk_window(&self, cy: u64, cx: u64) -> Window {
        self.chunks().window(cy, cx)
    }

    /// Product of the leading dimensions (1 for rank 2).
    pub fn lead_len(&self) -> u64 {
        let s = &self.spec.shape;
        s[..s.len() - 2].iter().product()
    }

    /// Write one chunk-grid cell of every array.
    ///
    /// Each buffer holds `lead_len × h × w` values, row-major, for the clipped
    /// [`Mosaic::chunk_window`] of size `h × w`. `spread` is required to be `None` when the mosaic
    /// has no spread array; when it has one and `spread` is `None`, that chunk stays unwritten (NaN).
    /// Writing the same chunk again replaces it with the same bytes for the same input.
    ///
    /// # Errors
    /// [`ZarrIoError::ChunkOutOfGrid`], [`ZarrIoError::ChunkLength`] for wrongly sized buffers,
    /// [`ZarrIoError::InvalidSpec`] for a spread buffer without a spread array,
    /// [`ZarrIoError::Write`] when storing fails.
    pub async fn write_chunk(
        &self,
        cy: u64,
        cx: u64,
        data: &[f32],
        filled: &[u8],
        spread: Option<&[f32]>,
    ) -> Result<(), ZarrIoError> {
        self.check_chunk(cy, cx)?;
        let spread_target = match (&self.spread, spread) {
            (Some(array), Some(values)) => Some((array, values)),
            (None, Some(_)) => {
                return Err(ZarrIoError::InvalidSpec {
                    url: self.url.clone(),
                    reason: "a spread chunk was given but the mosaic has no spread array".into(),
                })
            }
            (_, None) => None,
        };
        let lead = self.lead_len();
        let data_fut = self.store(&self.data, DATA_ARRAY, (cy, cx), data, f32::NAN, lead);
        let filled_fut = self.store(&self.filled, FILLED_ARRAY, (cy, cx), filled, 0u8, lead);
        let spread_fut = async {
            match spread_target {
                Some((array, values)) => {
                    self.store(array, SPREAD_ARRAY, (cy, cx), values, f32::NAN, lead)
                        .await
                }
                None => Ok(()),
            }
        };
        futures::try_join!(data_fut, filled_fut, spread_fut).map(|_| ())
    }

    /// Write one chunk-grid cell of the `members` array: `members × lead_len × h × w` values,
    /// member-major, for the clipped [`Mosaic::chunk_window`].
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidSpec`] when the mosaic has no members array, plus the errors of
    /// [`Mosaic::write_chunk`].
    pub async fn write_members(&self, cy: u64, cx: u64, values: &[f32]) -> Result<(), ZarrIoError> {
        let Some(array) = &self.members else {
            return Err(ZarrIoError::InvalidSpec {
                url: self.url.clone(),
                reason: "members were given but the mosaic has no members array".into(),
            });
        };
        self.check_chunk(cy, cx)?;
        let planes = u64::from(self.spec.members) * self.lead_len();
        self.store(array, MEMBERS_ARRAY, (cy, cx), values, f32::NAN, planes)
            .await
    }

    /// Reads back every leading plane × window `w` of `data` (as written, NaN where nothing is)
    /// and of `filled`, row-major.
    ///
    /// # Errors
    /// [`ZarrIoError::WindowOutOfBounds`] for a window outside the mosaic, [`ZarrIoError::Read`].
    pub async fn read_window(&self, w: Window) -> Result<(Vec<f32>, Vec<u8>), ZarrIoError> {
        check_window(&self.url, DATA_ARRAY, &self.spec.shape, w)?;
        let subset = window_subset(&self.spec.shape, w);
        let read_err = |array| move |e| read_error(&self.url, array, w, e);
        let data = self
            .data
            .async_retrieve_array_subset::<Vec<f32>>(&subset)
            .await
            .map_err(read_err(DATA_ARRAY))?;
        let filled = self
            .filled
            .async_retrieve_array_subset::<Vec<u8>>(&subset)
            .await
            .map_err(read_err(FILLED_ARRAY))?;
        Ok((data, filled))
    }

    /// Makes every chunk written so far durable. Chunk writes are atomic and visible at once but
    /// reach the disk of a local output only at a sync (see [`Durability`]): sync before recording
    /// anywhere that a chunk is written.
    ///
    /// # Errors
    /// [`ZarrIoError::Sync`].
    pub async fn sync(&self) -> Result<(), ZarrIoError> {
        self.durability.sync().await
    }

    /// Write the root group metadata with `group_attributes`, making the output a complete group,
    /// durably, after making every chunk durable. Call it once every chunk is written; calling it
    /// again rewrites the attributes.
    ///
    /// # Errors
    /// [`ZarrIoError::WriteMetadata`] when storing fails, [`ZarrIoError::Sync`].
    pub async fn finalize(&self, group_attributes: Map<String, Value>) -> Result<(), ZarrIoError> {
        self.sync().await?;
        Self::write_group_metadata(&self.url, &self.zarr, group_attributes).await?;
        self.sync().await
    }

    /// Writes the root group's `zarr.json` with `group_attributes`.
    pub(crate) async fn write_group_metadata(
        url: &str,
        zarr: &Arc<ZarrStore>,
        group_attributes: Map<String, Value>,
    ) -> Result<(), ZarrIoError> {
        let meta_err = |source| ZarrIoError::WriteMetadata {
            url: url.to_owned(),
            node: "/".into(),
            source: Box::new(source),
        };
        let group = GroupBuilder::new()
            .attributes(group_attributes)
            .build(zarr.clone(), "/")
            .map_err(|e| match e {
                zarrs::group::GroupCreateError::StorageError(s) => meta_err(s),
                other => meta_err(zarrs::storage::StorageError::Other(other.to_string())),
            })?;
        group.async_store_metadata().await.map_err(meta_err)
    }

    /// Whether the output at `url` has been finalized (its root `zarr.json` exists).
    ///
    /// # Errors
    /// Store errors other than "not found", and URL errors.
    pub async fn is_finalized(url: &str) -> Result<bool, ZarrIoError> {
        let opened = open_zarr_store(url)?;
        let key = Path::from(GROUP_METADATA_KEY);
        match opened.objects.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(store_error(url, &key, "head", source)),
        }
    }

    /// Whether this mosaic has been finalized.
    ///
    /// # Errors
    /// As [`Mosaic::is_finalized`].
    pub async fn finalized(&self) -> Result<bool, ZarrIoError> {
        let key = Path::from(GROUP_METADATA_KEY);
        match self.objects.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(store_error(&self.url, &key, "head", source)),
        }
    }

    /// [`ZarrIoError::ChunkOutOfGrid`] unless (`cy`, `cx`) is a cell of the chunk grid.
    fn check_chunk(&self, cy: u64, cx: u64) -> Result<(), ZarrIoError> {
        let (rows, cols) = self.chunk_grid();
        if cy < rows && cx < cols {
            return Ok(());
        }
        Err(ZarrIoError::ChunkOutOfGrid {
            url: self.url.clone(),
            cy,
            cx,
            rows,
            cols,
        })
    }

    fn height_width(&self) -> (u64, u64) {
        let s = &self.spec.shape;
        (s[s.len() - 2], s[s.len() - 1])
    }

    /// Pad a clipped chunk buffer of `planes` (y, x) planes to the full chunk shape zarrs
    /// stores, then store it (leading dimensions are never split, so their chunk index is 0).
    async fn store<T: Element + Copy + Send + Sync>(
        &self,
        array: &Array<ZarrStore>,
        name: &str,
        (cy, cx): (u64, u64),
        values: &[T],
        fill: T,
        planes: u64,
    ) -> Result<(), ZarrIoError> {
        let window = self.chunk_window(cy, cx);
        let lead = to_usize(planes);
        let (h, w) = (to_usize(window.height), to_usize(window.width));
        let (fh, fw) = (
            to_usize(self.spec.chunk_yx.0),
            to_usize(self.spec.chunk_yx.1),
        );
        let expected = lead * h * w;
        if values.len() != expected {
            return Err(ZarrIoError::ChunkLength {
                url: self.url.clone(),
                array: name.to_owned(),
                cy,
                cx,
                expected,
                got: values.len(),
            });
        }
        let full = if (h, w) == (fh, fw) {
            values.to_vec()
        } else {
            let mut full = vec![fill; lead * fh * fw];
            for (dst_plane, src_plane) in full
                .chunks_exact_mut(fh * fw)
                .zip(values.chunks_exact(h * w))
            {
                for (dst_row, src_row) in dst_plane
                    .chunks_exact_mut(fw)
                    .zip(src_plane.chunks_exact(w))
                {
                    dst_row[..w].copy_from_slice(src_row);
                }
            }
            full
        };
        let mut indices = vec![0u64; array.shape().len() - 2];
        indices.extend([cy, cx]);
        array
            .async_store_chunk(&indices, full)
            .await
            .map_err(|source| ZarrIoError::Write {
                url: self.url.clone(),
                array: name.to_owned(),
                cy,
                cx,
                source: Box::new(source),
            })
    }
}

fn validate(url: &str, spec: &MosaicSpec) -> Result<(), ZarrIoError> {
    let invalid = |reason: String| ZarrIoError::InvalidSpec {
        url: url.to_owned(),
        reason,
    };
    let rank = spec.shape.len();
    if !(2..=4).contains(&rank) {
        return Err(invalid(format!(
            "shape {:?} must have rank 2, 3 or 4",
            spec.shape
        )));
    }
    if spec.shape.contains(&0) {
        return Err(invalid(format!(
            "shape {:?} has an empty dimension",
            spec.shape
        )));
    }
    if spec.chunk_yx.0 == 0 || spec.chunk_yx.1 == 0 {
        return Err(invalid(format!(
            "chunk size {:?} must be positive",
            spec.chunk_yx
        )));
    }
    if spec.dimension_names.len() != rank {
        return Err(invalid(format!(
            "{} dimension names {:?} for shape {:?}",
            spec.dimension_names.len(),
            spec.dimension_names,
            spec.shape
        )));
    }
    Ok(())
}

/// A float32 array of `layout` (NaN fill) with a `long_name` attribute, via [`ensure_array`].
async fn float_array(
    url: &str,
    zarr: &Arc<ZarrStore>,
    layout: &MosaicSpec,
    name: &str,
    long_name: &str,
) -> Result<Array<ZarrStore>, ZarrIoError> {
    let mut attrs = Map::new();
    attrs.insert("long_name".into(), Value::from(long_name));
    ensure_array(
        url,
        zarr,
        layout,
        name,
        data_type::float32(),
        f32::NAN,
        &attrs,
    )
    .await
}

/// Open array `name` if it exists and matches `spec`, else create its metadata.
pub(crate) async fn ensure_array<F: Into<zarrs::array::builder::ArrayBuilderFillValue>>(
    url: &str,
    zarr: &Arc<ZarrStore>,
    spec: &MosaicSpec,
    name: &str,
    dtype: DataType,
    fill: F,
    attributes: &Map<String, Value>,
) -> Result<Array<ZarrStore>, ZarrIoError> {
    let path = format!("/{name}");
    let rank = spec.shape.len();
    let mut chunk: Vec<u64> = spec.shape[..rank - 2].to_vec();
    chunk.extend([spec.chunk_yx.0, spec.chunk_yx.1]);
    let create_err = |source| ZarrIoError::OpenArray {
        url: url.to_owned(),
        array: name.to_owned(),
        source: Box::new(source),
    };
    match Array::async_open(zarr.clone(), &path).await {
        Ok(existing) => {
            check_matches(url, name, &existing, spec, &chunk, &dtype)?;
            Ok(existing)
        }
        Err(ArrayCreateError::MissingMetadata) => {
            let array = ArrayBuilder::new(spec.shape.clone(), chunk, dtype, fill)
                .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(ZSTD_LEVEL, false))])
                .dimension_names(Some(spec.dimension_names.iter().map(String::as_str)))
                .attributes(attributes.clone())
                .build(zarr.clone(), &path)
                .map_err(create_err)?;
            array
                .async_store_metadata()
                .await
                .map_err(|source| ZarrIoError::WriteMetadata {
                    url: url.to_owned(),
                    node: name.to_owned(),
                    source: Box::new(source),
                })?;
            Ok(array)
        }
        Err(source) => Err(create_err(source)),
    }
}

fn check_matches(
    url: &str,
    name: &str,
    existing: &Array<ZarrStore>,
    spec: &MosaicSpec,
    chunk: &[u64],
    dtype: &DataType,
) -> Result<(), ZarrIoError> {
    let mismatch = |detail: String| ZarrIoError::SpecMismatch {
        url: url.to_owned(),
        array: name.to_owned(),
        detail,
    };
    if existing.shape() != spec.shape.as_slice() {
        return Err(mismatch(format!(
            "shape {:?} != {:?}",
            existing.shape(),
            spec.shape
        )));
    }
    let zeros = vec![0u64; chunk.len()];
    let existing_chunk: Vec<u64> = existing
        .chunk_shape(&zeros)
        .map(|c| c.iter().map(|v| v.get()).collect())
        .unwrap_or_default();
    if existing_chunk != chunk {
        return Err(mismatch(format!(
            "chunk shape {existing_chunk:?} != {chunk:?}"
        )));
    }
    if existing.data_type() != dtype {
        return Err(mismatch(format!(
            "data type {} != {}",
            existing.data_type(),
            dtype
        )));
    }
    let names: Option<Vec<String>> = existing
        .dimension_names()
        .as_ref()
        .map(|n| n.iter().map(|d| d.clone().unwrap_or_default()).collect());
    if names.as_ref() != Some(&spec.dimension_names) {
        return Err(mismatch(format!(
            "dimension names {names:?} != {:?}",
            spec.dimension_names
        )));
    }
    Ok(())
}

/// Chunk sizes fit in memory whenever a write can succeed; saturate rather than wrap otherwise.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
