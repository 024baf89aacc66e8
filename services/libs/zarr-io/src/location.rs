//! Locations: turning a path or URL into an object store and a key prefix inside it.
//!
//! Supported forms: `./rel/path`, `/abs/path`, `file:///abs/path`, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`, `memory://name/prefix`. Credentials, regions and
//! endpoints come from the environment only (`AWS_*`, `GOOGLE_*`, `AZURE_*`).

use std::collections::HashMap;
use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::ZarrIoError;

/// A store together with the key prefix a URL points at.
pub type StoreAndPrefix = (Arc<dyn ObjectStore>, Path);

/// When the writes to a location reach stable storage.
///
/// Object stores make every completed write durable. A local filesystem makes a write durable only
/// once it is synced, and syncing file by file (an `fsync` of the file and of its directory per
/// write) costs more than the write itself for tile-sized objects. A store opened with
/// [`open_store_deferred`] therefore writes atomically (temporary file and rename) but leaves the
/// durability to one [`Durability::sync`] per batch: the caller writes a batch, syncs, and only
/// then records anywhere that the batch exists (an acknowledgement, a marker, a status). A crash
/// of the process loses nothing either way (the page cache survives it); a crash of the machine
/// loses at most the writes after the last sync, which nothing refers to yet.
#[derive(Debug, Clone)]
pub struct Durability {
    /// The directory whose filesystem a sync flushes; `None` when writes are durable at once.
    local: Option<PathBuf>,
}

impl Durability {
    /// Makes every write completed so far to the location durable: one `syncfs` of the local
    /// filesystem (Linux; a full `sync` elsewhere), nothing for object stores.
    ///
    /// # Errors
    /// [`ZarrIoError::Sync`] naming the location when the filesystem reports a write-back error.
    pub async fn sync(&self) -> Result<(), ZarrIoError> {
        let Some(dir) = self.local.clone() else {
            return Ok(());
        };
        let fail = |dir: &std::path::Path, source: std::io::Error| ZarrIoError::Sync {
            path: dir.display().to_string(),
            source,
        };
        tokio::task::spawn_blocking(move || {
            // The location may not exist yet (nothing written): its nearest existing ancestor is
            // on the same filesystem.
            let existing = dir
                .ancestors()
                .find(|p| p.exists())
                .unwrap_or(std::path::Path::new("/"));
            let handle = std::fs::File::open(existing).map_err(|e| fail(existing, e))?;
            sync_filesystem(&handle).map_err(|e| fail(existing, e.into()))
        })
        .await
        .map_err(|e| fail(std::path::Path::new("/"), std::io::Error::other(e)))?
    }
}

#[cfg(target_os = "linux")]
fn sync_filesystem(handle: &std::fs::File) -> rustix::io::Result<()> {
    rustix::fs::syncfs(handle)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_handle: &std::fs::File) -> rustix::io::Result<()> {
    rustix::fs::sync();
    Ok(())
}

/// [`open_store`], except that local writes are made durable by [`Durability::sync`], not one by
/// one (see [`Durability`]). Object stores are the same as with [`open_store`].
///
/// # Errors
/// The errors of [`open_store`].
pub fn open_store_deferred(url: &str) -> Result<(StoreAndPrefix, Durability), ZarrIoError> {
    if url.starts_with("file://") || !url.contains("://") {
        let path = local_path(url)?;
        let prefix = Path::from_absolute_path(&path).map_err(|e| invalid(url, e.to_string()))?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        return Ok(((store, prefix), Durability { local: Some(path) }));
    }
    Ok((open_store(url)?, Durability { local: None }))
}

/// Open the object store behind `url` and return it with the key prefix the URL points at.
///
/// Local paths map to a filesystem store rooted at `/` (writes go through a temporary file and an
/// atomic rename, with fsync, and create missing directories); `memory://name/...` URLs share one
/// process-global in-memory store per `name`, so two opens see the same data.
///
/// # Errors
/// [`ZarrIoError::UnsupportedScheme`] for unknown schemes, [`ZarrIoError::InvalidUrl`] for
/// unparseable URLs or missing bucket names, [`ZarrIoError::StoreConfig`] when the environment holds
/// an invalid store configuration.
pub fn open_store(url: &str) -> Result<StoreAndPrefix, ZarrIoError> {
    if url.starts_with("file://") || !url.contains("://") {
        return open_local(url);
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
    let prefix = Path::from_url_path(parsed.path()).map_err(|e| invalid(url, e.to_string()))?;
    let host = parsed.host_str().filter(|h| !h.is_empty());
    let config = |source| ZarrIoError::StoreConfig {
        url: url.to_owned(),
        source: Box::new(source),
    };
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "memory" => memory_store(host.unwrap_or("default")),
        "s3" | "s3a" => {
            let bucket = host.ok_or_else(|| invalid(url, "missing bucket name".into()))?;
            Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(config)?,
            )
        }
        "gs" => {
            let bucket = host.ok_or_else(|| invalid(url, "missing bucket name".into()))?;
            Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(config)?,
            )
        }
        "az" | "azure" => {
            let container = host.ok_or_else(|| invalid(url, "missing container name".into()))?;
            Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .build()
                    .map_err(config)?,
            )
        }
        other => {
            return Err(ZarrIoError::UnsupportedScheme {
                url: url.to_owned(),
                scheme: other.to_owned(),
            })
        }
    };
    Ok((store, prefix))
}

/// Read one whole object (e.g. a checkpoint) at `url`.
///
/// # Errors
/// [`ZarrIoError::ObjectNotFound`] when there is no object at `url`, [`ZarrIoError::Store`] for
/// other store failures, plus the errors of [`open_store`].
pub async fn get_bytes(url: &str) -> Result<Bytes, ZarrIoError> {
    let (store, path) = open_store(url)?;
    let result = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    result.map_err(|source| match source {
        object_store::Error::NotFound { .. } => ZarrIoError::ObjectNotFound {
            url: url.to_owned(),
        },
        source => store_error(url, &path, "get", source),
    })
}

/// The Zarr groups directly below the prefix `url` (children named `*.zarr` that hold a
/// `zarr.json`), as URLs, sorted. One delimited listing plus a `HEAD` per child: it does not
/// walk the groups' chunks.
///
/// # Errors
/// [`ZarrIoError::Store`] when listing fails, plus the errors of [`open_store`].
pub async fn child_groups(url: &str) -> Result<Vec<String>, ZarrIoError> {
    let (store, path) = open_store(url)?;
    let listing = store
        .list_with_delimiter(Some(&path))
        .await
        .map_err(|source| store_error(url, &path, "list", source))?;
    let base = url.trim_end_matches('/');
    let mut out = Vec::new();
    for child in &listing.common_prefixes {
        let Some(name) = child.filename().filter(|n| n.ends_with(".zarr")) else {
            continue;
        };
        let group = format!("{base}/{name}");
        if object_exists(&format!("{group}/zarr.json")).await? {
            out.push(group);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether there is an object at `url` (a `HEAD`, nothing read).
///
/// # Errors
/// [`ZarrIoError::Store`] for store failures other than "not found", plus the errors of
/// [`open_store`].
pub async fn object_exists(url: &str) -> Result<bool, ZarrIoError> {
    let (store, path) = open_store(url)?;
    match store.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(source) => Err(store_error(url, &path, "head", source)),
    }
}

/// Write one whole object at `url`, atomically replacing any previous one.
///
/// # Errors
/// [`ZarrIoError::Store`] when the write fails, plus the errors of [`open_store`].
pub async fn put_bytes(url: &str, bytes: Bytes) -> Result<(), ZarrIoError> {
    let (store, path) = open_store(url)?;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|source| store_error(url, &path, "put", source))
}

/// Build a [`ZarrIoError::Store`] for an operation on `key` below `url`.
pub(crate) fn store_error(
    url: &str,
    key: &Path,
    operation: &'static str,
    source: object_store::Error,
) -> ZarrIoError {
    ZarrIoError::Store {
        url: url.to_owned(),
        key: key.to_string(),
        operation,
        source: Box::new(source),
    }
}

fn invalid(url: &str, reason: String) -> ZarrIoError {
    ZarrIoError::InvalidUrl {
        url: url.to_owned(),
        reason,
    }
}

/// Environment variables from which object_store takes AWS credentials before it falls back to
/// the EC2 instance metadata service.
const AWS_CREDENTIAL_VARS: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SKIP_SIGNATURE",
];

/// What to add to a store error whose cause the store's own message hides, or `None`.
///
/// Without AWS credentials in the environment object_store asks the EC2 instance metadata
/// service for some, and off EC2 the error shows only that service's refusal (a 403, or a
/// connection error to 169.254.169.254), never that credentials were missing.
pub fn store_error_hint(message: &str) -> Option<&'static str> {
    let from_metadata_service =
        message.contains("latest/api/token") || message.contains("latest/meta-data/iam");
    let env_has_credentials = AWS_CREDENTIAL_VARS
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    (from_metadata_service && !env_has_credentials).then_some(
        "no AWS credentials were found in the environment, so the EC2 instance metadata service \
         was asked for some and failed: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
         AWS_WEB_IDENTITY_TOKEN_FILE, or AWS_SKIP_SIGNATURE=true for a public bucket)",
    )
}

/// Whether two locations are the same or one lies inside the other, so that writing one would
/// overwrite or pollute the other. Compared by store (scheme and bucket) and key segments;
/// local paths are made absolute and symbolic links in their existing part resolved.
///
/// # Errors
/// [`ZarrIoError::InvalidUrl`] for an unparseable location.
pub fn locations_overlap(a: &str, b: &str) -> Result<bool, ZarrIoError> {
    let (store_a, keys_a) = place(a)?;
    let (store_b, keys_b) = place(b)?;
    Ok(store_a == store_b && (keys_a.starts_with(&keys_b) || keys_b.starts_with(&keys_a)))
}

/// The store a location is in (`file`, or scheme and bucket) and its key segments.
fn place(url: &str) -> Result<(String, Vec<String>), ZarrIoError> {
    if url.starts_with("file://") || !url.contains("://") {
        let path = resolve_links(&local_path(url)?);
        let keys = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        return Ok(("file".into(), keys));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
    let scheme = match parsed.scheme() {
        "s3a" => "s3",
        "azure" => "az",
        other => other,
    };
    let store = format!("{scheme}://{}", parsed.host_str().unwrap_or_default());
    let keys = parsed
        .path()
        .split('/')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((store, keys))
}

/// `path` with its longest existing ancestor canonicalised (the rest may not exist yet).
fn resolve_links(path: &std::path::Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path.to_path_buf();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The absolute, lexically normalised path of a local path or `file://` URL.
fn local_path(url: &str) -> Result<PathBuf, ZarrIoError> {
    let path = if url.starts_with("file://") {
        let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
        parsed
            .to_file_path()
            .map_err(|()| invalid(url, "not an absolute local file URL".into()))?
    } else {
        PathBuf::from(url)
    };
    if path.as_os_str().is_empty() {
        return Err(invalid(url, "empty path".into()));
    }
    let absolute = std::path::absolute(&path).map_err(|e| invalid(url, e.to_string()))?;
    Ok(normalize(&absolute))
}

/// Local paths and `file://` URLs: a filesystem store at `/` with the absolute path as prefix.
fn open_local(url: &str) -> Result<StoreAndPrefix, ZarrIoError> {
    let normalized = local_path(url)?;
    let prefix = Path::from_absolute_path(&normalized).map_err(|e| invalid(url, e.to_string()))?;
    let store = LocalFileSystem::new().with_fsync(true);
    Ok((Arc::new(store), prefix))
}

/// Resolve `.` and `..` lexically (the path may not exist yet, so no canonicalisation).
fn normalize(path: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The process-global in-memory store called `name`.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the map is still valid.
    let mut map = registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let store = map
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(InMemory::new()));
    Arc::clone(store) as Arc<dyn ObjectStore>
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_absolute_prefixes() {
        let (_, p) = open_store("/tmp/a/../b/scene.zarr").expect("abs path");
        assert_eq!(p.as_ref(), "tmp/b/scene.zarr");
        let (_, p) = open_store("file:///tmp/x.zarr").expect("file url");
        assert_eq!(p.as_ref(), "tmp/x.zarr");
        let (_, p) = open_store("./rel.zarr").expect("relative");
        assert!(p.as_ref().ends_with("rel.zarr"));
        assert!(!p.as_ref().contains("./"));
    }

    #[test]
    fn overlapping_locations() -> Result<(), ZarrIoError> {
        let dir = tempfile::tempdir().map_err(|e| invalid("tempdir", e.to_string()))?;
        let base = dir.path().display().to_string();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link"))
            .map_err(|e| invalid("symlink", e.to_string()))?;
        for (a, b, overlap) in [
            (format!("{base}/in.zarr"), format!("{base}/in.zarr/"), true),
            (
                format!("{base}/in.zarr"),
                format!("{base}/in.zarr/out.zarr"),
                true,
            ),
            (
                format!("{base}/in.zarr/x/.."),
                format!("{base}/in.zarr"),
                true,
            ),
            (
                format!("{base}/in.zarr"),
                format!("file://{base}/in.zarr"),
                true,
            ),
            (
                format!("{base}/in.zarr"),
                format!("{base}/link/in.zarr/o"),
                true,
            ),
            (
                format!("{base}/out.zarr"),
                format!("{base}/out.zarr.staging"),
                false,
            ),
            (format!("{base}/a.zarr"), format!("{base}/b.zarr"), false),
            (
                "s3://b/in.zarr".into(),
                "s3a://b/in.zarr/out.zarr".into(),
                true,
            ),
            ("s3://b/in.zarr".into(), "s3://c/in.zarr".into(), false),
            ("s3://b/in.zarr".into(), "gs://b/in.zarr".into(), false),
            ("memory://m/x".into(), "memory://m/x/y".into(), true),
        ] {
            assert_eq!(locations_overlap(&a, &b)?, overlap, "{a} vs {b}");
            assert_eq!(locations_overlap(&b, &a)?, overlap, "{b} vs {a}");
        }
        Ok(())
    }

    #[test]
    fn memory_urls_share_a_store_per_name() {
        let (a, pa) = open_store("memory://shared-name/x/y").expect("memory");
        let (b, _) = open_store("memory://shared-name/other").expect("memory");
        let (c, _) = open_store("memory://another-name/x/y").expect("memory");
        assert_eq!(pa.as_ref(), "x/y");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            a.put(&Path::from("x/y/k"), Bytes::from_static(b"v").into())
                .await
                .expect("put");
            assert!(b.head(&Path::from("x/y/k")).await.is_ok());
            assert!(c.head(&Path::from("x/y/k")).await.is_err());
        });
    }

    #[test]
    fn unknown_scheme_names_the_url() {
        let err = open_store("ftp://host/data.zarr").expect_err("must fail");
        assert!(matches!(err, ZarrIoError::UnsupportedScheme { .. }));
        assert!(err.to_string().contains("ftp://host/data.zarr"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn s3_needs_a_bucket() {
        let err = open_store("s3:///prefix").expect_err("must fail");
        assert!(matches!(err, ZarrIoError::InvalidUrl { .. }), "{err}");
    }
}
