//! Conformance cases for the staging area; each takes a fresh base URL.

use anyhow::ensure;
use bytes::Bytes;
use zarr_io::{Staging, ZarrIoError};

/// put/get/exists/list/delete_prefix, overwrite, missing keys, and key validation.
pub async fn staging_roundtrip(base: &str) -> anyhow::Result<()> {
    let staging = Staging::open(&format!("{base}/staging"))?;
    ensure!(staging.list("").await?.is_empty());
    ensure!(staging.get("job-1/tiles/0_0.bin").await?.is_none());
    ensure!(!staging.exists("job-1/tiles/0_0.bin").await?);

    staging
        .put("job-1/tiles/0_0.bin", Bytes::from_static(b"a"))
        .await?;
    staging
        .put("job-1/tiles/0_1.bin", Bytes::from_static(b"b"))
        .await?;
    staging
        .put("job-1/state.json", Bytes::from_static(b"{}"))
        .await?;
    staging
        .put("job-2/tiles/0_0.bin", Bytes::from_static(b"c"))
        .await?;
    staging
        .put("job-1/tiles/0_0.bin", Bytes::from_static(b"a2"))
        .await?;

    ensure!(staging.get("job-1/tiles/0_0.bin").await?.as_deref() == Some(&b"a2"[..]));
    ensure!(staging.exists("job-1/state.json").await?);
    let tiles = staging.list("job-1/tiles").await?;
    ensure!(
        tiles == ["job-1/tiles/0_0.bin", "job-1/tiles/0_1.bin"],
        "{tiles:?}"
    );
    ensure!(staging.list("").await?.len() == 4);
    // Prefixes are whole segments: `job-1/til` matches nothing.
    ensure!(staging.list("job-1/til").await?.is_empty());

    staging.delete_prefix("job-1").await?;
    ensure!(staging.list("").await? == ["job-2/tiles/0_0.bin"]);
    staging.delete_prefix("job-1").await?; // deleting nothing is fine
    ensure!(staging.get("job-2/tiles/0_0.bin").await?.as_deref() == Some(&b"c"[..]));

    // Same root opened twice sees the same objects.
    let again = Staging::open(&format!("{base}/staging"))?;
    ensure!(again.exists("job-2/tiles/0_0.bin").await?);

    for bad in ["../escape", "/abs", "a//b", "a/./b", "a b", "job/..", ""] {
        match staging.put(bad, Bytes::from_static(b"x")).await {
            Err(e @ ZarrIoError::InvalidKey { .. }) => ensure!(!e.is_retryable()),
            other => anyhow::bail!("key {bad:?}: expected InvalidKey, got {other:?}"),
        }
    }
    ensure!(matches!(
        staging.get("../x").await,
        Err(ZarrIoError::InvalidKey { .. })
    ));
    ensure!(matches!(
        staging.list("a/../b").await,
        Err(ZarrIoError::InvalidKey { .. })
    ));
    ensure!(matches!(
        staging.delete_prefix("/").await,
        Err(ZarrIoError::InvalidKey { .. })
    ));
    Ok(())
}

/// Deferred puts are visible at once and durable after `sync`, which succeeds on every backend
/// (also before anything was written).
pub async fn staging_deferred_puts(base: &str) -> anyhow::Result<()> {
    let staging = Staging::open(&format!("{base}/deferred"))?;
    staging.sync().await?;
    staging
        .put_deferred("job-1/tiles/0.bin", Bytes::from_static(b"t"))
        .await?;
    ensure!(staging.get("job-1/tiles/0.bin").await?.as_deref() == Some(&b"t"[..]));
    staging.sync().await?;
    ensure!(staging.list("job-1").await? == ["job-1/tiles/0.bin"]);
    ensure!(matches!(
        staging.put_deferred("../x", Bytes::from_static(b"x")).await,
        Err(ZarrIoError::InvalidKey { .. })
    ));
    Ok(())
}
