//! Output ownership: the first job to create an output group claims it with a small object at
//! its root, written with create-if-absent semantics, so two jobs (other settings, other ids)
//! can never interleave their chunks in one mosaic, whatever order they run in.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::ZarrIoError;
use crate::location::store_error;
use crate::zarr_store::open_zarr_store;

/// Key, relative to the output's root, of the object naming the job that owns the output.
pub const OWNER_KEY: &str = "terrafill-owner.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Owner {
    job: String,
}

/// The job that owns the output at `url`, if any job has claimed it.
///
/// # Errors
/// Store errors other than "not found", and [`ZarrIoError::Corrupt`] for an unreadable record.
pub async fn owner(url: &str) -> Result<Option<String>, ZarrIoError> {
    let opened = open_zarr_store(url)?;
    read_owner(url, &*opened.objects).await
}

/// Claims the output at `url` for `job`: succeeds when nobody owns it yet (atomically, where the
/// store supports create-if-absent writes) or when `job` already does.
///
/// # Errors
/// [`ZarrIoError::OwnedByAnotherJob`] when another job owns it, store errors otherwise.
pub async fn claim(url: &str, job: &str) -> Result<(), ZarrIoError> {
    let opened = open_zarr_store(url)?;
    let objects = &*opened.objects;
    let key = Path::from(OWNER_KEY);
    let record = serde_json::to_vec(&Owner {
        job: job.to_owned(),
    })
    .unwrap_or_default();
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match objects
        .put_opts(&key, PutPayload::from(record.clone()), create)
        .await
    {
        Ok(_) => return Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        // A store without conditional writes: check, then write (a race stays possible there).
        Err(object_store::Error::NotImplemented { .. }) => {
            if read_owner(url, objects).await?.is_none() {
                objects
                    .put(&key, PutPayload::from(record))
                    .await
                    .map_err(|source| store_error(url, &key, "put", source))?;
            }
        }
        Err(source) => return Err(store_error(url, &key, "put", source)),
    }
    match read_owner(url, objects).await? {
        Some(owner) if owner == job => Ok(()),
        Some(owner) => Err(ZarrIoError::OwnedByAnotherJob {
            url: url.to_owned(),
            owner,
            job: job.to_owned(),
        }),
        None => Err(ZarrIoError::Corrupt {
            url: url.to_owned(),
            key: OWNER_KEY.to_owned(),
            reason: "the ownership record vanished while it was being claimed".into(),
        }),
    }
}

async fn read_owner(url: &str, objects: &dyn ObjectStore) -> Result<Option<String>, ZarrIoError> {
    let key = Path::from(OWNER_KEY);
    let bytes = match objects.get(&key).await {
        Ok(got) => got
            .bytes()
            .await
            .map_err(|source| store_error(url, &key, "get", source))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(store_error(url, &key, "get", source)),
    };
    let record: Owner = serde_json::from_slice(&bytes).map_err(|e| ZarrIoError::Corrupt {
        url: url.to_owned(),
        key: OWNER_KEY.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(record.job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_job_owns_the_output() -> Result<(), ZarrIoError> {
        let dir = tempfile::tempdir().map_err(|e| ZarrIoError::InvalidUrl {
            url: "tempdir".into(),
            reason: e.to_string(),
        })?;
        for url in [
            "memory://ownership/out.zarr".to_owned(),
            dir.path().join("out.zarr").display().to_string(),
        ] {
            assert_eq!(owner(&url).await?, None);
            claim(&url, "job-a").await?;
            claim(&url, "job-a").await?;
            assert_eq!(owner(&url).await?.as_deref(), Some("job-a"));
            let err = claim(&url, "job-b").await.err().map(|e| e.to_string());
            let err = err.unwrap_or_default();
            assert!(err.contains("job-a") && err.contains("job-b"), "{err}");
            assert!(err.contains(&url), "{err}");
        }
        Ok(())
    }
}
