//! An end-to-end fill on Azure Blob Storage (`az://`, the Azurite emulator `tests/run` starts):
//! input, output and staging live in the store, and the mosaic must equal the same fill on local
//! files bit for bit. (S3 is covered by `distributed.rs` and `fault_injection.rs`, the store-level
//! conformance suite by zarr-io's `conformance.rs`. No GCS emulator from the package registries
//! speaks the XML API that object_store's GCS client uses, so `gs://` has no test here.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn azure_blob_fill_equals_local_fill() {
    let prefix = azure_prefix("fill");
    let shape = [3u64, 150, 170];
    let values = synthetic(&shape, 0.3, 23);
    let dir = tempfile::tempdir().unwrap();
    let local_in = dir.path().join("in.zarr").display().to_string();
    let local_out = dir.path().join("out.zarr").display().to_string();
    let remote_in = format!("{prefix}/in.zarr");
    let remote_out = format!("{prefix}/out.zarr");
    write(&local_in, &shape, (64, 64), &values);
    write(&remote_in, &shape, (64, 64), &values);
    let grid = ["--tile", "48", "--overlap", "8", "--workers", "2"];
    fill_ok(&local_in, &local_out, &grid);
    fill_ok(&remote_in, &remote_out, &grid);
    assert_eq!(
        bits(&read(&remote_out, "data")),
        bits(&read(&local_out, "data")),
        "az:// mosaic differs from the local one"
    );
    assert_eq!(read(&remote_out, "filled"), read(&local_out, "filled"));
    // Re-running the finished job is a no-op, which needs the owner record written with the
    // store's create-if-absent put; another job on that output is refused.
    fill_ok(&remote_in, &remote_out, &grid);
    let other = terrafill(&[
        "fill",
        &remote_in,
        &remote_out,
        "--tile",
        "32",
        "--overlap",
        "8",
    ]);
    assert!(
        !other.status.success(),
        "a second job overwrote {remote_out}"
    );
}
