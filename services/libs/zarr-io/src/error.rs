//! The error type of this crate: every variant names the thing at fault.

use tiling::Window;
use zarrs::array::{ArrayCreateError, ArrayError};
use zarrs::group::GroupCreateError;
use zarrs::storage::StorageError;

/// Anything that can go wrong opening, reading or writing Zarr data and objects.
///
/// Each variant carries the URL (and array, key or window) it is about; [`ZarrIoError::is_retryable`]
/// tells whether trying again later can succeed (network and store hiccups) or not (bad input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZarrIoError {
    /// The URL has a scheme this crate does not know.
    #[error("unsupported URL scheme `{scheme}` in `{url}` (expected a path, file://, s3://, gs://, az://, memory://)")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },

    /// The URL could not be parsed or lacks a required part (e.g. the bucket).
    #[error("invalid location `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Building the object store client for a URL failed (bad configuration in the environment).
    #[error("cannot configure object store for `{url}`: {source}")]
    StoreConfig {
        /// The URL as given.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },

    /// An object store operation failed.
    #[error("object store {operation} of `{key}` in `{url}` failed: {source}")]
    Store {
        /// The location the store was opened at.
        url: String,
        /// The object key (relative to `url`).
        key: String,
        /// What was attempted (`get`, `put`, `list`, `delete`, `head`).
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },

    /// Syncing a local location's filesystem failed: writes since the last sync may not be on disk.
    #[error("cannot make the writes under `{path}` durable (syncfs): {source}")]
    Sync {
        /// The local directory whose filesystem was synced.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A single object asked for does not exist.
    #[error("object not found: `{url}`")]
    ObjectNotFound {
        /// The object's URL.
        url: String,
    },

    /// There is no Zarr group at the URL (no `zarr.json` / `.zgroup`).
    #[error("`{url}` is not a Zarr group ({})", if *empty { "nothing is stored there" } else { "it holds objects, but no zarr.json or .zgroup" })]
    NotAZarr {
        /// The location.
        url: String,
        /// Whether nothing at all is stored under the location.
        empty: bool,
    },

    /// The URL holds a Zarr array, not the group terrafill reads.
    #[error(
        "`{url}` is a Zarr array, not a group: give the group that holds it, `{parent}`, with \
         --array {name}"
    )]
    ArrayNotGroup {
        /// The location.
        url: String,
        /// The location one level up.
        parent: String,
        /// The array's name there.
        name: String,
    },

    /// The group metadata exists but cannot be read.
    #[error("cannot open Zarr group `{url}`: {source}")]
    OpenGroup {
        /// The location.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<GroupCreateError>,
    },

    /// The named array does not exist in the group.
    #[error(
        "array `{array}` not found in Zarr group `{url}`{}",
        list_nodes(available)
    )]
    ArrayNotFound {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The nodes the group does hold (empty when unknown).
        available: Vec<String>,
    },

    /// The array metadata exists but is invalid or uses an unsupported feature.
    #[error("cannot open array `{array}` in `{url}`: {source}")]
    OpenArray {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The underlying error.
        #[source]
        source: Box<ArrayCreateError>,
    },

    /// The array has a rank other than 2, 3 or 4.
    #[error("array `{array}` in `{url}` has shape {shape:?}; expected [y, x], [band, y, x] or [time, band, y, x]")]
    UnsupportedRank {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The array's shape.
        shape: Vec<u64>,
    },

    /// The array's data type cannot be converted to float32.
    #[error("array `{array}` in `{url}` has unsupported data type `{data_type}` (need an integer or float type; bool only for a mask)")]
    UnsupportedDataType {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The data type's name.
        data_type: String,
    },

    /// The mask array's shape fits neither the data's shape nor its last two dimensions.
    #[error("mask array `{mask}` in `{url}` has shape {mask_shape:?}, incompatible with data shape {data_shape:?}")]
    MaskShape {
        /// The group location.
        url: String,
        /// The mask array name.
        mask: String,
        /// The mask's shape.
        mask_shape: Vec<u64>,
        /// The data's shape.
        data_shape: Vec<u64>,
    },

    /// The output belongs to another job (its ownership record names that job).
    #[error("output `{url}` belongs to job {owner}; job {job} (other settings or --job-id) may not write into it: remove it or choose another output")]
    OwnedByAnotherJob {
        /// The output location.
        url: String,
        /// The job that owns it.
        owner: String,
        /// The job that tried to write it.
        job: String,
    },

    /// An object terrafill wrote holds something it cannot read.
    #[error("`{key}` in `{url}` is corrupt: {reason}")]
    Corrupt {
        /// The group location.
        url: String,
        /// The object's key below `url`.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A mask holds a value other than 0 (observed) and 1 (missing), NaN included.
    #[error("mask array `{mask}` in `{url}` holds {value} at {at}; a mask must hold only 0 (observed) and 1 (missing)")]
    BadMask {
        /// The group location.
        url: String,
        /// The mask array name.
        mask: String,
        /// Where, as `dim=index, …`.
        at: String,
        /// The offending value.
        value: f32,
    },

    /// A data value is infinite (after masking): it would spread into every filled pixel near it.
    #[error("array `{array}` in `{url}` holds {value} at {at}; infinities cannot be filled around: set them to NaN (missing) or declare a _FillValue")]
    NonFinite {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// Where, as `dim=index, …`.
        at: String,
        /// The offending value.
        value: f32,
    },

    /// A window does not lie inside the scene.
    #[error(
        "window {} is outside array `{array}` of shape {shape:?} in `{url}`",
        show(window)
    )]
    WindowOutOfBounds {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The window asked for.
        window: Window,
        /// The array's shape.
        shape: Vec<u64>,
    },

    /// A padded read was asked for a target smaller than the window, or an empty window.
    #[error("cannot pad window {} of `{url}` to {out_h}x{out_w}", show(window))]
    InvalidPadding {
        /// The group location.
        url: String,
        /// The window asked for.
        window: Window,
        /// Requested output height.
        out_h: u64,
        /// Requested output width.
        out_w: u64,
    },

    /// Reading array data failed.
    #[error(
        "reading window {} of array `{array}` in `{url}` failed: {source}",
        show(window)
    )]
    Read {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// The window being read.
        window: Window,
        /// The underlying error.
        #[source]
        source: Box<ArrayError>,
    },

    /// Writing a chunk failed.
    #[error("writing chunk ({cy}, {cx}) of array `{array}` in `{url}` failed: {source}")]
    Write {
        /// The group location.
        url: String,
        /// The array name.
        array: String,
        /// Chunk row.
        cy: u64,
        /// Chunk column.
        cx: u64,
        /// The underlying error.
        #[source]
        source: Box<ArrayError>,
    },

    /// A coordinate array could not be copied from the input (or written) into the output.
    #[error("writing coordinate array `{array}` (from `{from}`) into `{url}` failed: {reason}")]
    CopyCoordinate {
        /// The output location.
        url: String,
        /// Where the values came from (the input location).
        from: String,
        /// The coordinate array.
        array: String,
        /// What failed.
        reason: String,
    },

    /// Writing array or group metadata failed.
    #[error("writing metadata of `{node}` in `{url}` failed: {source}")]
    WriteMetadata {
        /// The group location.
        url: String,
        /// The node (array name, or `/` for the root group).
        node: String,
        /// The underlying error.
        #[source]
        source: Box<StorageError>,
    },

    /// A mosaic specification is inconsistent.
    #[error("invalid mosaic spec for `{url}`: {reason}")]
    InvalidSpec {
        /// The output location.
        url: String,
        /// What is inconsistent.
        reason: String,
    },

    /// An existing output's array differs from the spec it is being resumed with.
    #[error("existing array `{array}` in `{url}` does not match the requested spec: {detail}")]
    SpecMismatch {
        /// The output location.
        url: String,
        /// The array name.
        array: String,
        /// Which property differs, with both values.
        detail: String,
    },

    /// A chunk index lies outside the chunk grid.
    #[error("chunk ({cy}, {cx}) is outside the chunk grid {rows}x{cols} of `{url}`")]
    ChunkOutOfGrid {
        /// The output location.
        url: String,
        /// Chunk row.
        cy: u64,
        /// Chunk column.
        cx: u64,
        /// Chunk grid rows.
        rows: u64,
        /// Chunk grid columns.
        cols: u64,
    },

    /// The buffer handed to a chunk write has the wrong length.
    #[error("chunk ({cy}, {cx}) of array `{array}` in `{url}` needs {expected} values, got {got}")]
    ChunkLength {
        /// The output location.
        url: String,
        /// The array name.
        array: String,
        /// Chunk row.
        cy: u64,
        /// Chunk column.
        cx: u64,
        /// Expected number of values.
        expected: usize,
        /// Number of values given.
        got: usize,
    },

    /// A staging key or prefix is not a safe relative path.
    #[error("invalid staging key `{key}`: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl ZarrIoError {
    /// Whether trying the same operation again later may succeed.
    ///
    /// True for transient store failures (network, throttling, I/O); false for bad input, missing
    /// objects, permission problems and unsupported data.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => object_store_retryable(source),
            Self::OpenGroup { source, .. } => {
                matches!(&**source, GroupCreateError::StorageError(e) if storage_retryable(e))
            }
            Self::OpenArray { source, .. } => {
                matches!(&**source, ArrayCreateError::StorageError(e) if storage_retryable(e))
            }
            Self::Read { source, .. } | Self::Write { source, .. } => array_retryable(source),
            Self::WriteMetadata { source, .. } => storage_retryable(source),
            // The writes are redone from scratch by whoever retries; the disk may recover.
            Self::Sync { .. } => true,
            _ => false,
        }
    }
}

/// `; it holds: a, b` for a non-empty list of nodes.
fn list_nodes(nodes: &[String]) -> String {
    if nodes.is_empty() {
        String::new()
    } else {
        format!("; it holds: {}", nodes.join(", "))
    }
}

/// A window as `[y0..y1, x0..x1]`, without overflowing for absurd windows.
fn show(w: &Window) -> String {
    format!(
        "[{}..{}, {}..{}]",
        w.y0,
        w.y0.saturating_add(w.height),
        w.x0,
        w.x0.saturating_add(w.width)
    )
}

/// Transient object store failures: generic (network/HTTP) errors and task join failures.
fn object_store_retryable(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// zarrs flattens object store errors into `Other(String)`; those and I/O errors may be transient.
fn storage_retryable(e: &StorageError) -> bool {
    matches!(e, StorageError::Other(_) | StorageError::IOError(_))
}

fn array_retryable(e: &ArrayError) -> bool {
    match e {
        ArrayError::StorageError(s) => storage_retryable(s),
        ArrayError::CodecError(zarrs::array::CodecError::StorageError(s)) => storage_retryable(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let transient = ZarrIoError::Store {
            url: "s3://b/p".into(),
            key: "k".into(),
            operation: "get",
            source: Box::new(object_store::Error::Generic {
                store: "S3",
                source: "connection reset".into(),
            }),
        };
        assert!(transient.is_retryable());
        let missing = ZarrIoError::Store {
            url: "s3://b/p".into(),
            key: "k".into(),
            operation: "get",
            source: Box::new(object_store::Error::NotFound {
                path: "k".into(),
                source: "gone".into(),
            }),
        };
        assert!(!missing.is_retryable());
        let bad = ZarrIoError::NotAZarr {
            url: "memory://x".into(),
            empty: true,
        };
        assert!(!bad.is_retryable());
        assert!(bad.to_string().contains("memory://x"));
        let key = ZarrIoError::InvalidKey {
            key: "../x".into(),
            reason: "`..` segment",
        };
        assert!(!key.is_retryable());
    }
}
