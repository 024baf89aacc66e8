//! The bridge from an object store location to a zarrs storage handle.

use std::sync::Arc;

use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use zarrs_object_store::AsyncObjectStore;

use crate::error::ZarrIoError;
use crate::location::open_store;

/// An object store with a location's prefix applied (keys are relative to the location).
pub(crate) type Objects = PrefixStore<Arc<dyn ObjectStore>>;

/// zarrs storage rooted at a location's prefix.
pub(crate) type ZarrStore = AsyncObjectStore<Objects>;

/// The raw store, and the same store as zarrs storage rooted at the prefix of `url`.
pub(crate) struct Opened {
    /// The object store with the prefix applied (keys are relative to `url`).
    pub objects: Arc<Objects>,
    /// The same, as zarrs storage.
    pub zarr: Arc<ZarrStore>,
}

/// Open `url` for Zarr access.
pub(crate) fn open_zarr_store(url: &str) -> Result<Opened, ZarrIoError> {
    let (store, prefix) = open_store(url)?;
    let prefixed = PrefixStore::new(store, prefix);
    let objects = Arc::new(prefixed.clone());
    let zarr = Arc::new(AsyncObjectStore::new(prefixed));
    Ok(Opened { objects, zarr })
}
