//! Staging: a flat key → bytes area under a location, for tile outputs and job state.
//!
//! Keys are validated relative paths (`job-1/tiles/0003_0007.bin`), so ids from messages can never
//! escape the staging root. Each `put` is atomic: readers see the old object or the new one, never
//! a partial write (object stores replace whole objects; the local filesystem store writes a
//! temporary file and renames it into place). [`Staging::put`] is durable when it returns;
//! [`Staging::put_deferred`] is durable after the next [`Staging::sync`], which lets a worker make
//! a whole batch of tiles durable at once (see [`Durability`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::ZarrIoError;
use crate::location::{open_store, open_store_deferred, store_error, Durability};

/// Number of deletes kept in flight by [`Staging::delete_prefix`].
const DELETE_CONCURRENCY: usize = 16;

/// A staging area rooted at a location.
#[derive(Clone)]
pub struct Staging {
    url: String,
    store: Arc<PrefixStore<Arc<dyn ObjectStore>>>,
    /// The same location, with local writes made durable by [`Staging::sync`].
    deferred: Arc<PrefixStore<Arc<dyn ObjectStore>>>,
    durability: Durability,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Staging {
    /// Open the staging area at `url` (nothing is created until the first `put`).
    ///
    /// # Errors
    /// The errors of [`open_store`](crate::open_store).
    pub fn open(url: &str) -> Result<Staging, ZarrIoError> {
        let (store, prefix) = open_store(url)?;
        let ((deferred, deferred_prefix), durability) = open_store_deferred(url)?;
        Ok(Staging {
            url: url.to_owned(),
            store: Arc::new(PrefixStore::new(store, prefix)),
            deferred: Arc::new(PrefixStore::new(deferred, deferred_prefix)),
            durability,
        })
    }

    /// The location of the staging area.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Store `bytes` under `key`, atomically replacing any previous value.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`], [`ZarrIoError::Store`].
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ZarrIoError> {
        self.put_to(&self.store, key, bytes).await
    }

    /// Store `bytes` under `key` as [`Staging::put`] does (atomically, visible at once), but
    /// durable only after the next [`Staging::sync`]: record nowhere that the value exists
    /// before that.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`], [`ZarrIoError::Store`].
    pub async fn put_deferred(&self, key: &str, bytes: Bytes) -> Result<(), ZarrIoError> {
        self.put_to(&self.deferred, key, bytes).await
    }

    /// Makes every [`Staging::put_deferred`] completed so far durable (one filesystem sync for
    /// local staging, nothing for object stores).
    ///
    /// # Errors
    /// [`ZarrIoError::Sync`].
    pub async fn sync(&self) -> Result<(), ZarrIoError> {
        self.durability.sync().await
    }

    async fn put_to(
        &self,
        store: &PrefixStore<Arc<dyn ObjectStore>>,
        key: &str,
        bytes: Bytes,
    ) -> Result<(), ZarrIoError> {
        let path = key_path(key)?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| store_error(&self.url, &path, "put", e))
    }

    /// The value under `key`, or `None` if there is none.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`], [`ZarrIoError::Store`].
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ZarrIoError> {
        let path = key_path(key)?;
        let result = match self.store.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.url, &path, "get", e)),
        }
    }

    /// Whether a value exists under `key`.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`], [`ZarrIoError::Store`].
    pub async fn exists(&self, key: &str) -> Result<bool, ZarrIoError> {
        let path = key_path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(&self.url, &path, "head", e)),
        }
    }

    /// All keys below `prefix` (whole segments; `""` lists everything), relative to the staging
    /// root, sorted.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`] for a bad prefix, [`ZarrIoError::Store`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ZarrIoError> {
        let prefix = prefix_path(prefix)?;
        let mut keys: Vec<String> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| store_error(&self.url, &prefix.clone().unwrap_or_default(), "list", e))?;
        keys.sort();
        Ok(keys)
    }

    /// The first-level "directories" of the staging area (one per job), sorted; one delimited
    /// listing, so it does not walk every staged tile.
    ///
    /// # Errors
    /// [`ZarrIoError::Store`].
    pub async fn top_level(&self) -> Result<Vec<String>, ZarrIoError> {
        let listing = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| store_error(&self.url, &Path::default(), "list", e))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .map(|p| p.to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Delete the object at `key`; a key that holds nothing is not an error. (`delete_prefix`
    /// of an object's own key deletes nothing: prefixes are whole segments *above* keys.)
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`] for a bad key, [`ZarrIoError::Store`].
    pub async fn delete(&self, key: &str) -> Result<(), ZarrIoError> {
        let path = key_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&self.url, &path, "delete", e)),
        }
    }

    /// Delete every key below `prefix` (whole segments; `""` deletes everything). Deleting
    /// nothing is not an error.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidKey`] for a bad prefix, [`ZarrIoError::Store`].
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), ZarrIoError> {
        let keys = self.list(prefix).await?;
        futures::stream::iter(keys)
            .map(|key| async move { self.delete(&key).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}

/// Check that `key` is a safe relative key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty,
/// `.` or `..`, no leading `/`.
///
/// # Errors
/// [`ZarrIoError::InvalidKey`] saying what is wrong.
pub fn validate_key(key: &str) -> Result<(), ZarrIoError> {
    let reject = |reason| {
        Err(ZarrIoError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return reject("empty key");
    }
    if key.starts_with('/') {
        return reject("leading `/`");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return reject("empty segment");
        }
        if segment == "." || segment == ".." {
            return reject("`.` or `..` segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return reject("characters outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

fn key_path(key: &str) -> Result<Path, ZarrIoError> {
    validate_key(key)?;
    Ok(Path::from(key))
}

fn prefix_path(prefix: &str) -> Result<Option<Path>, ZarrIoError> {
    if prefix.is_empty() {
        return Ok(None);
    }
    key_path(prefix).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        for ok in ["a", "job-1/tiles/0003_0007.bin", "A.b_c-d/e"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", "a b", "a\\b", "é", "a?b",
        ] {
            let err = validate_key(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} must be rejected"));
            assert!(matches!(err, ZarrIoError::InvalidKey { .. }));
        }
    }

    #[tokio::test]
    async fn delete_removes_one_object_and_prefixes_are_segments_above_keys(
    ) -> Result<(), ZarrIoError> {
        let s = Staging::open("memory://staging-delete-test")?;
        s.put("j/status.pb", Bytes::from_static(b"failed")).await?;
        s.put("j/tiles/1", Bytes::from_static(b"t")).await?;
        s.delete_prefix("j/status.pb").await?;
        assert!(
            s.exists("j/status.pb").await?,
            "a key is not its own prefix"
        );
        s.delete("j/status.pb").await?;
        assert!(!s.exists("j/status.pb").await?);
        s.delete("j/status.pb").await?;
        s.delete_prefix("j/tiles").await?;
        assert!(s.list("j").await?.is_empty());
        Ok(())
    }
}
