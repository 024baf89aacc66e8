//! `generate`: a new field from a checkpoint. Generation is a diffusion fill of a blank canvas:
//! the canvas (`OUTPUT.canvas`, metadata only: every chunk reads as missing) is written first,
//! then filled on the ordinary pipeline with parity phases, so the first tiles start from the
//! model's prior (the band means) and later ones continue from their staged neighbours.

use anyhow::Context;
use serde_json::{Map, Value};
use zarr_io::{Mosaic, MosaicSpec, Scene};

use crate::args::{FillArgs, GenerateArgs, MethodArg, SampleArgs};
use crate::config::Config;

/// Owner recorded on the canvas (it is only ever written by `generate`).
const CANVAS_OWNER: &str = "terrafill-generate-canvas";

pub async fn generate(args: &GenerateArgs, cfg: &Config) -> anyhow::Result<()> {
    let model = super::train::load_checkpoint(&args.checkpoint).await?;
    if model.history().blank_share == 0.0 {
        eprintln!(
            "terrafill generate: checkpoint {} was trained without blank windows \
             (train --blank-share 0.25): its first tiles start from nothing it has seen, and the \
             field will look washed out",
            args.checkpoint
        );
    }
    let canvas = format!("{}.canvas", args.output.trim_end_matches('/'));
    write_canvas(args, &canvas, model.lead_shape()).await?;
    let fill = FillArgs {
        input: canvas,
        output: args.output.clone(),
        array: zarr_io::DATA_ARRAY.into(),
        mask_array: None,
        method: MethodArg::Diffusion,
        max_distance: None,
        keep_array: None,
        checkpoint: Some(args.checkpoint.clone()),
        ensemble: args.ensemble,
        sample: SampleArgs {
            // One member is a sample; the ensemble's point estimate of a blank tile is the band
            // means, so one member is written as itself, not as an estimate.
            member: args.sample.member.or((args.ensemble == 1).then_some(0)),
            ..args.sample.clone()
        },
        phases: !args.no_phases,
        job_id: args.job_id.clone(),
        staging: None,
        broker: args.broker.clone(),
        workers: args.workers,
        stitchers: 1,
        device: args.device.clone(),
        metrics_addr: args.metrics_addr.clone(),
        date: None,
        retry: false,
        generate: true,
    };
    super::fill::fill(&fill, cfg).await
}

/// Writes the blank canvas at `canvas`: the --shape (with the model's leading dims) or the
/// --like scene's layout, attributes and coordinates. Idempotent, so a re-run resumes.
async fn write_canvas(args: &GenerateArgs, canvas: &str, lead: &[usize]) -> anyhow::Result<()> {
    let (spec, attrs, like) = match (&args.shape, &args.like) {
        (Some(shape), None) => {
            let (h, w) = parse_shape(shape)?;
            let mut shape: Vec<u64> = lead.iter().map(|&d| d as u64).collect();
            shape.extend([h, w]);
            let spec = MosaicSpec {
                dimension_names: zarr_io::default_dimension_names(shape.len()),
                shape,
                chunk_yx: (args.chunk.min(h), args.chunk.min(w)),
                with_spread: false,
                members: 0,
                array_attributes: Map::new(),
                data_fill: f32::NAN,
            };
            (spec, Map::new(), None)
        }
        (None, Some(like)) => {
            let scene = Scene::open(like, &args.array, None)
                .await
                .with_context(|| format!("--like {like}: opening array `{}`", args.array))?;
            let spec = MosaicSpec::for_scene(&scene, scene.chunk_shape_yx(), false);
            (spec, scene.group_attributes(), Some(scene))
        }
        _ => anyhow::bail!("generate needs the field's size: --shape HEIGHT,WIDTH or --like SCENE"),
    };
    let mosaic = Mosaic::create(canvas, &spec, CANVAS_OWNER)
        .await
        .with_context(|| format!("creating the canvas {canvas}"))?;
    if let Some(scene) = &like {
        mosaic
            .copy_coordinates(scene)
            .await
            .with_context(|| format!("copying the coordinates of {} to {canvas}", scene.url()))?;
    }
    let mut attrs: Map<String, Value> = attrs;
    attrs.insert(
        "terrafill".into(),
        serde_json::json!({ "canvas": true, "checkpoint": args.checkpoint }),
    );
    mosaic
        .finalize(attrs)
        .await
        .with_context(|| format!("writing the canvas {canvas}"))?;
    Ok(())
}

/// `HEIGHT,WIDTH`, both at least 1.
fn parse_shape(text: &str) -> anyhow::Result<(u64, u64)> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let bad = || format!("--shape {text:?} must be HEIGHT,WIDTH in pixels, e.g. 1024,1024");
    let [h, w] = parts.as_slice() else {
        anyhow::bail!(bad());
    };
    let (h, w): (u64, u64) = (h.parse().with_context(bad)?, w.parse().with_context(bad)?);
    if h == 0 || w == 0 {
        anyhow::bail!(bad());
    }
    Ok((h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_or_name_the_flag() {
        assert_eq!(parse_shape("40, 56").ok(), Some((40, 56)));
        for bad in ["40", "0,5", "a,5", "1,2,3", ""] {
            let message = parse_shape(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains("--shape"), "{bad}: {message}");
        }
    }
}
