//! `import`: a GeoTIFF into a Zarr scene `fill` reads: float32 `[band, y, x]` with no-data as
//! NaN, the CRS and geotransform as group attributes, and pixel-centre `x`/`y` coordinates.

use anyhow::Context;
use serde_json::{json, Map};

use crate::args::ImportArgs;
use crate::geotiff;

pub async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let bytes = zarr_io::get_bytes(&args.input)
        .await
        .with_context(|| format!("reading {}", args.input))?;
    let raster = geotiff::decode(std::io::Cursor::new(bytes))
        .with_context(|| format!("decoding GeoTIFF {}", args.input))?;
    let [bands, h, w] = raster.shape;
    let mut group = Map::new();
    group.insert("source".into(), json!(args.input));
    if let Some(crs) = &raster.crs {
        group.insert("crs".into(), json!(crs));
    }
    if let Some(gt) = raster.geotransform {
        group.insert("geotransform".into(), json!(gt));
    }
    if let Some((xs, ys)) = raster.coordinates() {
        for (name, values) in [("x", xs), ("y", ys)] {
            let attrs = json!({"long_name": format!("{name} of pixel centre"), "crs": raster.crs});
            let attrs = attrs.as_object().cloned().unwrap_or_default();
            zarr_io::write_coordinate(&args.output, name, &values, attrs).await?;
        }
    }
    let chunk = args.chunk.max(1);
    let spec = zarr_io::MosaicSpec {
        shape: vec![bands as u64, h as u64, w as u64],
        chunk_yx: (chunk.min(h as u64), chunk.min(w as u64)),
        dimension_names: vec!["band".into(), "y".into(), "x".into()],
        with_spread: false,
        members: 0,
        array_attributes: Map::new(),
        data_fill: f32::NAN,
    };
    zarr_io::write_scene(&args.output, &args.array, &spec, group, &raster.values).await?;
    let missing = raster.values.iter().filter(|v| v.is_nan()).count();
    println!(
        "imported {} ({bands}×{h}×{w}, {}, {:.1}% no-data) into {} as `{}`",
        args.input,
        raster.crs.as_deref().unwrap_or("no CRS"),
        100.0 * missing as f64 / raster.values.len().max(1) as f64,
        args.output,
        args.array
    );
    Ok(())
}
