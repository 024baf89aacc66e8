//! Conformance cases for writing mosaics; each takes a fresh base URL.

use anyhow::ensure;
use serde_json::{json, Map, Value};
use zarr_io::{Mosaic, MosaicSpec, Scene, Window, ZarrIoError};

/// Deterministic float32 bit patterns covering the awkward values (subnormals, -0, extremes);
/// NaN patterns are replaced by NaN (they are gaps and need not keep their payload).
fn pattern(i: u64) -> f32 {
    const SPECIAL: [f32; 8] = [
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::MIN,
        0.1,
        -1.0e30,
    ];
    if i % 11 == 0 {
        return SPECIAL[usize::try_from((i / 11) % 8).unwrap_or(0)];
    }
    // SplitMix64 finaliser: scrambles all mantissa and exponent bits.
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    #[allow(clippy::cast_possible_truncation)]
    let v = f32::from_bits((z ^ (z >> 31)) as u32);
    if v.is_nan() {
        f32::NAN
    } else {
        v
    }
}

fn spec(shape: &[u64], with_spread: bool) -> MosaicSpec {
    let names = ["time", "band", "y", "x"];
    let mut attrs = Map::new();
    attrs.insert("units".into(), json!("DN"));
    MosaicSpec {
        shape: shape.to_vec(),
        chunk_yx: (16, 16),
        dimension_names: names[4 - shape.len()..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        with_spread,
        members: 0,
        array_attributes: attrs,
        data_fill: f32::NAN,
    }
}

/// Global value of element (lead, y, x) for a `width`-wide scene with `plane` pixels per lead.
fn global(lead: u64, y: u64, x: u64, plane: u64, width: u64) -> u64 {
    lead * plane + y * width + x
}

/// Write every chunk of a 3-D mosaic, finalize, and read it back bit-exactly; the output only
/// opens once finalized; resuming with the same spec works, with another spec does not.
pub async fn mosaic_roundtrip(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/out.zarr");
    let shape = [2u64, 37, 53];
    let spec = spec(&shape, true);
    let mosaic = Mosaic::create(&url, &spec, "job-test").await?;
    ensure!(mosaic.chunk_grid() == (3, 4));
    ensure!(mosaic.chunk_window(2, 3) == Window::new(32, 48, 5, 5));
    ensure!(!Mosaic::is_finalized(&url).await?);
    let (h, w) = (shape[1], shape[2]);
    for cy in 0..3 {
        for cx in 0..4 {
            let cw = mosaic.chunk_window(cy, cx);
            let mut data = Vec::new();
            let mut filled = Vec::new();
            let mut spread = Vec::new();
            for lead in 0..2 {
                for y in cw.y0..cw.y1() {
                    for x in cw.x0..cw.x1() {
                        let g = global(lead, y, x, h * w, w);
                        data.push(pattern(g));
                        filled.push(u8::from(g % 3 == 0));
                        spread.push(if g % 3 == 0 { 0.5 } else { 0.0 });
                    }
                }
            }
            mosaic
                .write_chunk(cy, cx, &data, &filled, Some(&spread))
                .await?;
        }
    }
    // Not finalized yet: the group must not open.
    ensure!(!Mosaic::is_finalized(&url).await?);
    match Scene::open(&url, "data", None).await {
        Err(ZarrIoError::NotAZarr { .. }) => {}
        other => anyhow::bail!("unfinished output opened: {other:?}"),
    }
    let mut group_attrs = Map::new();
    group_attrs.insert("terrafill".into(), json!({"method": "identity"}));
    mosaic.finalize(group_attrs).await?;
    ensure!(Mosaic::is_finalized(&url).await?);

    let scene = Scene::open(&url, "data", None).await?;
    ensure!(scene.dimension_names() == ["band", "y", "x"]);
    ensure!(scene.chunk_shape_yx() == (16, 16));
    ensure!(scene.group_attributes().get("terrafill") == Some(&json!({"method": "identity"})));
    ensure!(scene.array_attributes().get("units") == Some(&json!("DN")));
    let tile = scene.read_window(Window::new(0, 0, h, w)).await?;
    ensure!(tile.shape == vec![2, 37, 53]);
    for (g, got) in tile.values.iter().enumerate() {
        let expected = pattern(g as u64);
        let same = got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan());
        ensure!(
            same,
            "element {g}: {got:e} ({:#x}) != {expected:e}",
            got.to_bits()
        );
    }
    let filled = Scene::open(&url, "filled", None)
        .await?
        .read_window(Window::new(30, 40, 7, 13))
        .await?;
    for (i, v) in filled.values.iter().enumerate() {
        let i = i as u64;
        let (lead, y, x) = (i / 91, 30 + (i % 91) / 13, 40 + i % 13);
        let expected = if global(lead, y, x, h * w, w) % 3 == 0 {
            1.0
        } else {
            0.0
        };
        ensure!(*v == expected, "filled ({lead},{y},{x}) = {v}");
    }
    let spread = Scene::open(&url, "spread", None)
        .await?
        .read_window(Window::new(0, 0, 2, 2))
        .await?;
    ensure!(spread.values[0] == 0.5 && spread.values[1] == 0.0);

    // Resume with the same spec keeps the data; another spec is refused.
    let again = Mosaic::create(&url, &spec, "job-test").await?;
    ensure!(again.chunk_grid() == (3, 4));
    let tile = scene.read_window(Window::new(0, 0, 1, 1)).await?;
    ensure!(tile.values[0].to_bits() == pattern(0).to_bits());
    let mut other = spec.clone();
    other.chunk_yx = (8, 8);
    match Mosaic::create(&url, &other, "job-test").await {
        Err(e @ ZarrIoError::SpecMismatch { .. }) => ensure!(e.to_string().contains("data")),
        other => anyhow::bail!("expected SpecMismatch, got {other:?}"),
    }
    Ok(())
}

/// A 4-D mosaic without spread: partially written, unwritten chunks read as NaN / 0; bad chunk
/// writes are refused with errors naming the chunk.
pub async fn mosaic_4d_and_errors(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/out4d.zarr");
    let spec = spec(&[2, 2, 20, 18], false);
    let mosaic = Mosaic::create(&url, &spec, "job-test").await?;
    ensure!(mosaic.chunk_grid() == (2, 2) && mosaic.lead_len() == 4);
    let cw = mosaic.chunk_window(1, 1);
    ensure!(cw == Window::new(16, 16, 4, 2));
    let n = 4 * 4 * 2;
    let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
    mosaic.write_chunk(1, 1, &data, &vec![1u8; n], None).await?;
    mosaic.finalize(Map::<String, Value>::new()).await?;
    let scene = Scene::open(&url, "data", None).await?;
    ensure!(scene.dimension_names() == ["time", "band", "y", "x"]);
    let tile = scene.read_window(Window::new(14, 14, 6, 4)).await?;
    ensure!(tile.shape == vec![2, 2, 6, 4]);
    // Row 16, col 16 of lead 0 is data[0]; rows 14..16 lie in unwritten chunks -> NaN.
    ensure!(
        tile.values[0].is_nan() && tile.values[2 * 4 + 2] == 0.0,
        "{:?}",
        &tile.values[..12]
    );
    ensure!(tile.values[24 + 2 * 4 + 3] == 9.0);
    let filled = Scene::open(&url, "filled", None)
        .await?
        .read_window(Window::new(0, 0, 2, 2))
        .await?;
    ensure!(filled.values.iter().all(|v| *v == 0.0));
    match Scene::open(&url, "spread", None).await {
        Err(ZarrIoError::ArrayNotFound { .. }) => {}
        other => anyhow::bail!("spread should not exist: {other:?}"),
    }

    let err = mosaic.write_chunk(2, 0, &data, &vec![0u8; n], None).await;
    ensure!(
        matches!(err, Err(ZarrIoError::ChunkOutOfGrid { cy: 2, cx: 0, .. })),
        "{err:?}"
    );
    let err = mosaic
        .write_chunk(1, 1, &data[1..], &vec![0u8; n], None)
        .await;
    match err {
        Err(e @ ZarrIoError::ChunkLength { .. }) => {
            ensure!(e.to_string().contains("(1, 1)") && !e.is_retryable())
        }
        other => anyhow::bail!("expected ChunkLength, got {other:?}"),
    }
    let err = mosaic
        .write_chunk(1, 1, &data, &vec![0u8; n], Some(&data))
        .await;
    ensure!(
        matches!(err, Err(ZarrIoError::InvalidSpec { .. })),
        "{err:?}"
    );
    let mut bad = spec.clone();
    bad.dimension_names.pop();
    let err = Mosaic::create(&format!("{base}/bad.zarr"), &bad, "job-test").await;
    ensure!(
        matches!(err, Err(ZarrIoError::InvalidSpec { .. })),
        "{err:?}"
    );
    Ok(())
}
