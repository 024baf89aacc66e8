//! The zarr-io conformance suite against every backend: `memory://`, a local temporary directory,
//! S3 (when `TERRAFILL_TEST_S3_ENDPOINT` is set; required when `TERRAFILL_REQUIRE_S3=1`), Azure
//! Blob (when `TERRAFILL_TEST_AZ_CONTAINER` names a container, as on the Azurite `tests/run`
//! starts; required when `TERRAFILL_REQUIRE_AZ=1`) and Google Cloud Storage (when
//! `TERRAFILL_TEST_GCS_BUCKET` names a bucket on a server that speaks GCS's XML API, which
//! object_store uses for puts and listings; fake-gcs-server and gcp-storage-emulator do not, so
//! `tests/run` starts none).

mod suite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A base URL for one test case, and whatever must live as long as it.
struct Base {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique(case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{case}-{}-{nanos}", std::process::id())
}

async fn memory_base(case: &str) -> anyhow::Result<Option<Base>> {
    Ok(Some(Base {
        url: format!("memory://{}/root", unique(case)),
        _dir: None,
    }))
}

async fn local_base(_case: &str) -> anyhow::Result<Option<Base>> {
    let dir = tempfile::tempdir()?;
    let url = dir
        .path()
        .join("nested")
        .to_str()
        .context("non-UTF-8 temp dir")?
        .to_owned();
    Ok(Some(Base {
        url,
        _dir: Some(dir),
    }))
}

/// S3 on the endpoint of `TERRAFILL_TEST_S3_ENDPOINT` (the store itself takes its endpoint and
/// credentials from `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, … like production code).
async fn s3_base(case: &str) -> anyhow::Result<Option<Base>> {
    let required = std::env::var("TERRAFILL_REQUIRE_S3").is_ok_and(|v| v == "1");
    let Ok(endpoint) = std::env::var("TERRAFILL_TEST_S3_ENDPOINT") else {
        if required {
            bail!("TERRAFILL_REQUIRE_S3=1 but TERRAFILL_TEST_S3_ENDPOINT is not set");
        }
        eprintln!("S3 conformance not run: TERRAFILL_TEST_S3_ENDPOINT is not set");
        return Ok(None);
    };
    let bucket = std::env::var("TERRAFILL_TEST_S3_BUCKET")
        .context("TERRAFILL_TEST_S3_ENDPOINT is set but TERRAFILL_TEST_S3_BUCKET is not")?;
    if std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .is_err()
    {
        bail!(
            "set AWS_ENDPOINT_URL={endpoint} (and AWS_ALLOW_HTTP=true for http) for the S3 tests"
        );
    }
    ensure_bucket(&endpoint, &bucket).await?;
    Ok(Some(Base {
        url: format!("s3://{bucket}/zarr-io-tests/{}", unique(case)),
        _dir: None,
    }))
}

/// Fail fast when the endpoint is unreachable, and create the bucket on servers that accept an
/// anonymous `PUT /bucket` (moto); elsewhere the bucket must already exist.
async fn ensure_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(endpoint).with_context(|| format!("bad S3 endpoint {endpoint}"))?;
    let host = url
        .host_str()
        .context("S3 endpoint without host")?
        .to_owned();
    let port = url
        .port_or_known_default()
        .context("S3 endpoint without port")?;
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .with_context(|| format!("S3 endpoint {endpoint} timed out"))?
        .with_context(|| format!("S3 endpoint {endpoint} unreachable"))?;
    if url.scheme() != "http" {
        return Ok(());
    }
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    Ok(())
}

/// A prefix in the container or bucket named by `$bucket_var` of the `scheme` store, whose
/// endpoint and credentials the store takes from the environment (`AZURE_STORAGE_USE_EMULATOR`,
/// `AZURITE_BLOB_STORAGE_URL`; `GOOGLE_SERVICE_ACCOUNT`) like production code.
fn emulated_base(
    case: &str,
    scheme: &str,
    bucket_var: &str,
    require_var: &str,
) -> anyhow::Result<Option<Base>> {
    let Ok(bucket) = std::env::var(bucket_var) else {
        if std::env::var(require_var).is_ok_and(|v| v == "1") {
            bail!("{require_var}=1 but {bucket_var} is not set");
        }
        eprintln!("{scheme}:// conformance not run: {bucket_var} is not set");
        return Ok(None);
    };
    Ok(Some(Base {
        url: format!("{scheme}://{bucket}/zarr-io-tests/{}", unique(case)),
        _dir: None,
    }))
}

/// Azure Blob Storage (Azurite in `tests/run`).
async fn az_base(case: &str) -> anyhow::Result<Option<Base>> {
    emulated_base(
        case,
        "az",
        "TERRAFILL_TEST_AZ_CONTAINER",
        "TERRAFILL_REQUIRE_AZ",
    )
}

/// Google Cloud Storage (real GCS, or an emulator with the XML API).
async fn gs_base(case: &str) -> anyhow::Result<Option<Base>> {
    emulated_base(
        case,
        "gs",
        "TERRAFILL_TEST_GCS_BUCKET",
        "TERRAFILL_REQUIRE_GCS",
    )
}

macro_rules! backend_tests {
    ($backend:ident, $make_base:path) => {
        mod $backend {
            use super::suite::{mosaic_cases, scene_cases, staging_cases};
            backend_tests!(@cases $make_base;
                int_and_float_dtypes => scene_cases::int_and_float_dtypes,
                zero_fill_is_not_missing => scene_cases::zero_fill_is_not_missing,
                attribute_sentinels => scene_cases::attribute_sentinels,
                mask_arrays => scene_cases::mask_arrays,
                four_d_scene => scene_cases::four_d_scene,
                zarr_v2_scene => scene_cases::zarr_v2_scene,
                reflection_padding => scene_cases::reflection_padding,
                bad_input_errors => scene_cases::bad_input_errors,
                single_objects => scene_cases::single_objects,
                mosaic_roundtrip => mosaic_cases::mosaic_roundtrip,
                mosaic_4d_and_errors => mosaic_cases::mosaic_4d_and_errors,
                staging_roundtrip => staging_cases::staging_roundtrip,
                staging_deferred_puts => staging_cases::staging_deferred_puts,
                shared_chunks_read_the_same => scene_cases::shared_chunks_read_the_same,
            );
        }
    };
    (@cases $make_base:path; $($case:ident => $f:path),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                let Some(base) = $make_base(stringify!($case)).await? else { return Ok(()) };
                $f(&base.url).await
            }
        )*
    };
}

backend_tests!(memory, super::memory_base);
backend_tests!(local, super::local_base);
backend_tests!(s3, super::s3_base);
backend_tests!(az, super::az_base);
backend_tests!(gs, super::gs_base);
