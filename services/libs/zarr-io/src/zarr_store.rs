//! The bridge from an object store location to a zarrs storage handle.

use std::sync::Arc;

use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use zarrs_object_store::AsyncObjectStore;

use crate::error::ZarrIoError;
use crate::location::{open_store, open_store_deferred, Durability, StoreAndPrefix};

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

/// Open `url` for Zarr access; every completed write is durable.
pub(crate) fn open_zarr_store(url: &str) -> Result<Opened, ZarrIoError> {
    Ok(opened(open_store(url)?))
}

/// Open `url` for Zarr access with local writes made durable in batches (see [`Durability`]).
pub(crate) fn open_zarr_store_deferred(url: &str) -> Result<(Opened, Durability), ZarrIoError> {
    let (store, durability) = open_store_deferred(url)?;
    Ok((opened(store), durability))
}

fn opened((store, prefix): StoreAndPrefix) -> Opened {
    let prefixed = PrefixStore::new(store, prefix);
    let objects = Arc::new(prefixed.clone());
    let zarr = Arc::new(AsyncObjectStore::new(prefixed));
    Opened { objects, zarr }
}
