//! Conformance cases for reading scenes; each takes a fresh base URL.

use anyhow::{ensure, Context};
use serde_json::json;
use zarr_io::{ChunkCache, Scene, Window, ZarrIoError};

use super::fixtures::{
    ramp, write_v2_array, write_v2_group, write_v3_array, write_v3_group, ArrayFixture, Dtype,
};

/// Every numeric dtype converts to f32; `nodata` attribute values and a nonzero Zarr fill value
/// (including chunks absent from the store) become NaN.
pub async fn int_and_float_dtypes(base: &str) -> anyhow::Result<()> {
    for dtype in Dtype::ALL_NUMERIC {
        let url = format!("{base}/{}.zarr", dtype.v3_name());
        write_v3_group(&url, json!({})).await?;
        let mut a = ArrayFixture::new("data", &[1, 4, 6], &[1, 4, 3], dtype);
        a.fill = 7.0; // nonzero fill value: counts as missing
        a.attributes = json!({"nodata": 5});
        a.skip_chunks = vec![vec![0, 0, 1]]; // columns 3..6 are absent -> fill -> NaN
        let values: Vec<f64> = ramp(24).iter().map(|v| v % 10.0).collect();
        write_v3_array(&url, &a, &values).await?;
        let scene = Scene::open(&url, "data", None).await?;
        let tile = scene.read_window(Window::new(0, 0, 4, 6)).await?;
        ensure!(
            tile.shape == vec![1, 4, 6],
            "{dtype:?}: shape {:?}",
            tile.shape
        );
        for (i, &got) in tile.values.iter().enumerate() {
            let (y, x) = (i / 6, i % 6);
            let raw = values[y * 6 + x];
            let missing = x >= 3 || raw == 5.0 || raw == 7.0;
            if missing {
                ensure!(
                    got.is_nan(),
                    "{dtype:?} ({y},{x}) raw {raw} should be missing, got {got}"
                );
            } else {
                ensure!(
                    got == raw as f32,
                    "{dtype:?} ({y},{x}) expected {raw}, got {got}"
                );
            }
        }
    }
    Ok(())
}

/// A zero fill value is zarr's default and must not turn zeros into gaps; NaN always is a gap.
pub async fn zero_fill_is_not_missing(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/zero.zarr");
    write_v3_group(&url, json!({})).await?;
    let a = ArrayFixture::new("data", &[2, 3], &[2, 2], Dtype::F32);
    write_v3_array(&url, &a, &[0.0, 1.0, f64::NAN, 0.0, -0.0, 3.5]).await?;
    let scene = Scene::open(&url, "data", None).await?;
    let tile = scene.read_window(Window::new(0, 0, 2, 3)).await?;
    ensure!(tile.shape == vec![2, 3]);
    ensure!(tile.values[0] == 0.0 && tile.values[1] == 1.0 && tile.values[2].is_nan());
    ensure!(tile.values[3] == 0.0 && tile.values[4].to_bits() == (-0.0f32).to_bits());
    ensure!(scene.lead_len() == 1 && scene.dimension_names() == ["y", "x"]);
    Ok(())
}

/// `_FillValue` on the array, else `nodata` on the group, marks missing values.
pub async fn attribute_sentinels(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/attrs.zarr");
    write_v3_group(&url, json!({"nodata": -1, "crs": "EPSG:4326"})).await?;
    let mut a = ArrayFixture::new("data", &[1, 2, 2], &[1, 2, 2], Dtype::I16);
    a.attributes = json!({"_FillValue": -9999});
    write_v3_array(&url, &a, &[-9999.0, -1.0, 0.0, 12.0]).await?;
    let b = ArrayFixture::new("other", &[1, 2, 2], &[1, 2, 2], Dtype::I16);
    write_v3_array(&url, &b, &[-9999.0, -1.0, 0.0, 12.0]).await?;

    let scene = Scene::open(&url, "data", None).await?;
    let v = scene.read_window(Window::new(0, 0, 2, 2)).await?.values;
    // The array's own attribute wins; the group's `nodata` does not apply to it.
    ensure!(
        v[0].is_nan() && v[1] == -1.0 && v[2] == 0.0 && v[3] == 12.0,
        "{v:?}"
    );
    ensure!(scene.group_attributes().get("crs") == Some(&json!("EPSG:4326")));
    ensure!(scene.array_attributes().get("_FillValue") == Some(&json!(-9999)));

    let other = Scene::open(&url, "other", None).await?;
    let v = other.read_window(Window::new(0, 0, 2, 2)).await?.values;
    ensure!(v[0] == -9999.0 && v[1].is_nan() && v[2] == 0.0, "{v:?}");
    Ok(())
}

/// Mask arrays: full-shape and `[y, x]` broadcast masks; an incompatible mask is an error.
pub async fn mask_arrays(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/mask.zarr");
    write_v3_group(&url, json!({})).await?;
    let data = ArrayFixture::new("data", &[2, 3, 4], &[2, 2, 2], Dtype::F32);
    write_v3_array(&url, &data, &ramp(24)).await?;
    let full = ArrayFixture::new("mask", &[2, 3, 4], &[2, 3, 4], Dtype::U8);
    let mut full_values = vec![0.0; 24];
    full_values[1] = 1.0;
    full_values[12 + 5] = 1.0;
    write_v3_array(&url, &full, &full_values).await?;
    let flat = ArrayFixture::new("mask2d", &[3, 4], &[2, 2], Dtype::U8);
    let mut flat_values = vec![0.0; 12];
    flat_values[6] = 1.0;
    write_v3_array(&url, &flat, &flat_values).await?;
    let bad = ArrayFixture::new("badmask", &[3, 3], &[3, 3], Dtype::U8);
    write_v3_array(&url, &bad, &[0.0; 9]).await?;

    let w = Window::new(0, 0, 3, 4);
    let tile = Scene::open(&url, "data", Some("mask"))
        .await?
        .read_window(w)
        .await?;
    let nan: Vec<usize> = (0..24).filter(|&i| tile.values[i].is_nan()).collect();
    ensure!(nan == vec![1, 17], "full mask NaNs at {nan:?}");
    ensure!(tile.values[2] == 2.0);

    let tile = Scene::open(&url, "data", Some("mask2d"))
        .await?
        .read_window(w)
        .await?;
    let nan: Vec<usize> = (0..24).filter(|&i| tile.values[i].is_nan()).collect();
    ensure!(nan == vec![6, 18], "broadcast mask NaNs at {nan:?}");

    // A window that crosses chunks in both data and mask.
    let tile = Scene::open(&url, "data", Some("mask2d"))
        .await?
        .read_window(Window::new(1, 1, 2, 2))
        .await?;
    ensure!(tile.shape == vec![2, 2, 2]);
    ensure!(
        tile.values[0] == 5.0 && tile.values[1].is_nan() && tile.values[5].is_nan(),
        "{:?}",
        tile.values
    );

    match Scene::open(&url, "data", Some("badmask")).await {
        Err(e @ ZarrIoError::MaskShape { .. }) => ensure!(e.to_string().contains("badmask")),
        other => anyhow::bail!("expected MaskShape, got {other:?}"),
    }
    Ok(())
}

/// A `[time, band, y, x]` scene over several chunks; default dimension names.
pub async fn four_d_scene(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/4d.zarr");
    write_v3_group(&url, json!({})).await?;
    let a = ArrayFixture::new("data", &[2, 3, 10, 12], &[1, 2, 4, 5], Dtype::F32);
    write_v3_array(&url, &a, &ramp(2 * 3 * 10 * 12)).await?;
    let scene = Scene::open(&url, "data", None).await?;
    ensure!(scene.shape() == [2, 3, 10, 12] && scene.lead_len() == 6);
    ensure!((scene.height(), scene.width()) == (10, 12));
    ensure!(scene.chunk_shape_yx() == (4, 5));
    ensure!(scene.dimension_names() == ["time", "band", "y", "x"]);
    let w = Window::new(3, 4, 5, 7);
    let tile = scene.read_window(w).await?;
    ensure!(tile.shape == vec![2, 3, 5, 7]);
    for lead in 0..6usize {
        for y in 0..5usize {
            for x in 0..7usize {
                let expected = (lead * 120 + (y + 3) * 12 + (x + 4)) as f32;
                let got = tile.values[lead * 35 + y * 7 + x];
                ensure!(
                    got == expected,
                    "lead {lead} ({y},{x}): {got} != {expected}"
                );
            }
        }
    }
    Ok(())
}

/// Zarr v2: `.zgroup`/`.zarray`/`.zattrs`, `_ARRAY_DIMENSIONS`, `_FillValue`, group attributes.
pub async fn zarr_v2_scene(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/v2.zarr");
    write_v2_group(&url, json!({"title": "v2 fixture"})).await?;
    let mut a = ArrayFixture::new("data", &[2, 5, 6], &[1, 3, 4], Dtype::U16);
    a.dimension_names = Some(vec!["band".into(), "lat".into(), "lon".into()]);
    a.attributes = json!({"_FillValue": 3});
    write_v2_array(&url, &a, &ramp(60)).await?;
    let scene = Scene::open(&url, "data", None).await?;
    ensure!(
        scene.dimension_names() == ["band", "lat", "lon"],
        "{:?}",
        scene.dimension_names()
    );
    ensure!(scene.group_attributes().get("title") == Some(&json!("v2 fixture")));
    ensure!(scene.chunk_shape_yx() == (3, 4));
    let tile = scene.read_window(Window::new(0, 0, 5, 6)).await?;
    ensure!(tile.values[3].is_nan() && tile.values[4] == 4.0 && tile.values[59] == 59.0);
    Ok(())
}

/// Mirror padding (numpy `reflect`), repeated for outputs much larger than the scene.
pub async fn reflection_padding(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/small.zarr");
    write_v3_group(&url, json!({})).await?;
    let a = ArrayFixture::new("data", &[2, 3, 4], &[1, 2, 2], Dtype::F32);
    write_v3_array(&url, &a, &ramp(24)).await?;
    let scene = Scene::open(&url, "data", None).await?;
    let tile = scene
        .read_window_padded(Window::new(0, 0, 3, 4), 8, 11)
        .await?;
    ensure!(tile.shape == vec![2, 8, 11]);
    // np.pad(np.arange(3), (0, 5), "reflect") -> [0 1 2 1 0 1 2 1]
    let ry = [0usize, 1, 2, 1, 0, 1, 2, 1];
    // np.pad(np.arange(4), (0, 7), "reflect") -> [0 1 2 3 2 1 0 1 2 3 2]
    let rx = [0usize, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2];
    for b in 0..2 {
        for (y, sy) in ry.iter().enumerate() {
            for (x, sx) in rx.iter().enumerate() {
                let expected = (b * 12 + sy * 4 + sx) as f32;
                ensure!(
                    tile.values[b * 88 + y * 11 + x] == expected,
                    "({b},{y},{x})"
                );
            }
        }
    }
    // A sub-window pads from its own pixels.
    let tile = scene
        .read_window_padded(Window::new(1, 1, 2, 2), 3, 3)
        .await?;
    ensure!(
        tile.values[..9] == [5.0, 6.0, 5.0, 9.0, 10.0, 9.0, 5.0, 6.0, 5.0],
        "{:?}",
        &tile.values[..9]
    );
    let err = scene
        .read_window_padded(Window::new(0, 0, 3, 4), 2, 4)
        .await;
    ensure!(
        matches!(err, Err(ZarrIoError::InvalidPadding { .. })),
        "{err:?}"
    );
    Ok(())
}

/// Bad input gives errors naming the thing at fault.
pub async fn bad_input_errors(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/errors.zarr");
    write_v3_group(&url, json!({})).await?;
    write_v3_array(
        &url,
        &ArrayFixture::new("data", &[1, 4, 5], &[1, 4, 5], Dtype::F32),
        &ramp(20),
    )
    .await?;
    write_v3_array(
        &url,
        &ArrayFixture::new("line", &[7], &[7], Dtype::F32),
        &ramp(7),
    )
    .await?;
    write_v3_array(
        &url,
        &ArrayFixture::new("five", &[1, 1, 1, 2, 2], &[1, 1, 1, 2, 2], Dtype::F32),
        &ramp(4),
    )
    .await?;

    let scene = Scene::open(&url, "data", None).await?;
    for w in [
        Window::new(0, 0, 5, 5),
        Window::new(2, 3, 2, 3),
        Window::new(u64::MAX - 1, 0, 2, 1),
    ] {
        match scene.read_window(w).await {
            Err(e @ ZarrIoError::WindowOutOfBounds { .. }) => {
                let msg = e.to_string();
                ensure!(
                    msg.contains(&format!("[{}..", w.y0)) && msg.contains("[1, 4, 5]"),
                    "{msg}"
                );
                ensure!(!e.is_retryable());
            }
            other => anyhow::bail!("window {w}: expected WindowOutOfBounds, got {other:?}"),
        }
    }
    for name in ["line", "five"] {
        match Scene::open(&url, name, None).await {
            Err(e @ ZarrIoError::UnsupportedRank { .. }) => ensure!(e.to_string().contains(name)),
            other => anyhow::bail!("{name}: expected UnsupportedRank, got {other:?}"),
        }
    }
    match Scene::open(&url, "nope", None).await {
        Err(e @ ZarrIoError::ArrayNotFound { .. }) => ensure!(e.to_string().contains("nope")),
        other => anyhow::bail!("expected ArrayNotFound, got {other:?}"),
    }
    let empty = format!("{base}/not-there.zarr");
    match Scene::open(&empty, "data", None).await {
        Err(e @ ZarrIoError::NotAZarr { .. }) => {
            ensure!(e.to_string().contains(&empty), "{e}");
            ensure!(!e.is_retryable());
        }
        other => anyhow::bail!("expected NotAZarr, got {other:?}"),
    }
    Ok(())
}

/// Single objects (checkpoints) round-trip; a missing one is `ObjectNotFound` naming the URL.
pub async fn single_objects(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/ckpt/model.safetensors");
    let payload = bytes::Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
    zarr_io::put_bytes(&url, payload.clone()).await?;
    let back = zarr_io::get_bytes(&url).await.context("get_bytes")?;
    ensure!(back == payload);
    zarr_io::put_bytes(&url, bytes::Bytes::from_static(b"v2")).await?;
    ensure!(zarr_io::get_bytes(&url).await?.as_ref() == b"v2");
    let missing = format!("{base}/ckpt/none.safetensors");
    match zarr_io::get_bytes(&missing).await {
        Err(e @ ZarrIoError::ObjectNotFound { .. }) => ensure!(e.to_string().contains(&missing)),
        other => anyhow::bail!("expected ObjectNotFound, got {other:?}"),
    }
    Ok(())
}

/// Reading through a shared chunk cache gives the same values, bit for bit, as reading directly:
/// windows across chunk boundaries and the scene's ragged edge, leading dimensions chunked apart,
/// `nodata` and nonzero-fill sentinels and absent chunks; a second read decodes nothing new.
pub async fn shared_chunks_read_the_same(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/shared.zarr");
    write_v3_group(&url, json!({})).await?;
    let mut a = ArrayFixture::new("data", &[2, 3, 10, 12], &[1, 2, 4, 5], Dtype::I16);
    a.fill = 7.0;
    a.attributes = json!({"nodata": 5});
    a.skip_chunks = vec![vec![1, 0, 2, 1]];
    let values: Vec<f64> = ramp(2 * 3 * 10 * 12).iter().map(|v| v % 13.0).collect();
    write_v3_array(&url, &a, &values).await?;
    let direct = Scene::open(&url, "data", None).await?;
    let cache = std::sync::Arc::new(ChunkCache::new(1 << 20));
    let shared = Scene::open(&url, "data", None)
        .await?
        .share_chunks(cache.clone(), "job-1");
    let windows = [
        Window::new(0, 0, 10, 12),
        Window::new(3, 4, 5, 7),
        Window::new(8, 10, 2, 2),
        Window::new(4, 5, 4, 5),
    ];
    for w in windows {
        let (want, got) = (direct.read_window(w).await?, shared.read_window(w).await?);
        ensure!(got.shape == want.shape, "{w:?}: shape {:?}", got.shape);
        let same = |(a, b): (&f32, &f32)| a.to_bits() == b.to_bits();
        ensure!(
            got.values.iter().zip(&want.values).all(same),
            "{w:?}: values differ through the cache"
        );
        // Some leading planes only (flattened: time · 3 + band), through the cache or not.
        let area = w.area() as usize;
        for planes in [0..6, 2..5, 4..4] {
            let want = &want.values[planes.start * area..planes.end * area];
            for scene in [&direct, &shared] {
                let got = scene.read_planes(w, planes.clone()).await?;
                ensure!(
                    got.len() == want.len() && got.iter().zip(want).all(same),
                    "{w:?} planes {planes:?} differ"
                );
            }
        }
    }
    ensure!(shared.read_planes(windows[0], 5..7).await.is_err());
    ensure!(
        direct
            .read_window(Window::new(0, 0, 10, 12))
            .await?
            .missing_count()
            > 0
    );
    let held = cache.bytes();
    // Every cell of the scene is cached: 3 × 3 cells of 6 planes, the edge ones clipped.
    ensure!(held == 4 * 6 * 10 * 12, "cache holds {held} bytes");
    shared.read_window(Window::new(1, 1, 8, 8)).await?;
    ensure!(cache.bytes() == held);
    Ok(())
}
