//! The diffusion method in the worker: loads the checkpoint once per job and fills batches of
//! tiles. Each tile comes with its IDW interpolation from the pixels around it (the prior the
//! model refines); both are padded by reflection to the model's tile size and cropped back
//! afterwards. In a phased job a tile first takes its staged neighbours' pixels in the overlap
//! (see the `phases` module); in a generated field there is no IDW prior.

use std::sync::Arc;

use model::{FillModel, SampleOptions, Sampler, TileInput};
use tiling::{Tile, Window};
use wire::v1::JobSpec;

use crate::job::JobContext;
use crate::methods::{idw_with_context, ContextFill, TileFill};
use crate::phases::Continuation;
use crate::WorkerError;

/// Reads and validates the job's checkpoint on the worker's device.
///
/// # Errors
/// [`WorkerError::Storage`] when it cannot be read, [`WorkerError::Method`] when it is invalid.
pub(crate) async fn load_model(
    spec: &JobSpec,
    device: &model::DeviceSpec,
) -> Result<Arc<FillModel>, WorkerError> {
    let job = spec.job_id.clone();
    let bytes = zarr_io::get_bytes(&spec.checkpoint_url)
        .await
        .map_err(|source| WorkerError::Storage {
            job: job.clone(),
            tile: None,
            source,
        })?;
    let method_err = |e: model::ModelError| WorkerError::Method {
        job: job.clone(),
        tile: None,
        reason: format!("checkpoint {}: {e}", spec.checkpoint_url),
    };
    let device = device.device().map_err(method_err)?;
    let model = tokio::task::spawn_blocking(move || FillModel::from_checkpoint(&bytes, &device))
        .await?
        .map_err(method_err)?;
    Ok(Arc::new(model))
}

/// Fills `tiles` with the job's model. On CPU each tile is its own forward batch (its ensemble
/// members), so the bytes never depend on which tiles happened to share a batch; on a GPU the
/// tiles of a batch go through together.
pub(crate) async fn compute(
    job: &JobContext,
    tiles: &[Tile],
) -> Result<Vec<TileFill>, WorkerError> {
    let method_err = |tile: Option<u64>, reason: String| WorkerError::Method {
        job: job.id.to_string(),
        tile,
        reason,
    };
    let Some(model) = job.model.clone() else {
        return Err(method_err(
            None,
            "no model loaded for a diffusion job".into(),
        ));
    };
    let multiple = model.size_multiple().max(1) as u64;
    let side = job
        .grid
        .tile_size()
        .max(model.tile_size() as u64)
        .div_ceil(multiple)
        * multiple;
    let lead = job.spec.lead_len();
    let ensemble = job.spec.ensemble.max(1) as usize;
    let mut inputs = Vec::with_capacity(tiles.len());
    let mut continuations = Vec::with_capacity(tiles.len());
    for tile in tiles {
        let mut fill = if job.spec.generate {
            // A blank canvas: nothing to interpolate, and a context search would read all of
            // it. The model's own prior (IDW from the tile's known pixels, else the band
            // means) is what it starts from.
            let observed = job.read(tile.index, tile.window).await?.values;
            ContextFill {
                filled: Vec::new(),
                observed,
            }
        } else {
            idw_with_context(job, tile).await?
        };
        let continuation = if job.spec.phased {
            Continuation::gather(job, tile, &fill.observed).await?
        } else {
            Continuation::default()
        };
        let member_values = continuation.member_values(&fill.observed, ensemble);
        continuation.apply(&mut fill.observed);
        let (h, w) = (tile.window.height as usize, tile.window.width as usize);
        let pad =
            |v: &[f32], planes| zarr_io::reflect_pad(v, planes, h, w, side as usize, side as usize);
        let mut shape: Vec<usize> = job.spec.shape.iter().map(|&d| d as usize).collect();
        if shape.len() == 2 {
            shape.insert(0, 1);
        }
        let n = shape.len();
        (shape[n - 2], shape[n - 1]) = (side as usize, side as usize);
        inputs.push(TileInput {
            shape,
            values: pad(&fill.observed, lead),
            seed: model::tile_seed(job.spec.seed, tile.index),
            prior: (!fill.filled.is_empty()).then(|| pad(&fill.filled, lead)),
            member_values: member_values.map(|m| pad(&m, ensemble * lead)),
        });
        continuations.push(continuation);
    }
    let opts = SampleOptions {
        sampler: Sampler::Ddim {
            steps: job.spec.steps as usize,
            eta: f64::from(job.spec.eta),
        },
        ensemble,
        member: job.spec.member.map(|m| m as usize),
        // A phased ensemble stages its members: the next phase continues them one by one.
        keep_members: job.spec.members || (job.spec.phased && job.spec.with_spread()),
    };
    let per_tile = job.on_cpu;
    let indices: Vec<u64> = tiles.iter().map(|t| t.index).collect();
    let batch = format!("{indices:?}");
    let outputs = tokio::task::spawn_blocking(move || {
        if per_tile {
            inputs
                .chunks(1)
                .zip(indices)
                .map(|(one, index)| {
                    model
                        .fill(one, &opts)
                        .map_err(|e| (Some(index), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.concat())
        } else {
            // A batch fails as a whole: the error names its tiles.
            model
                .fill(&inputs, &opts)
                .map_err(|e| (None, e.to_string()))
        }
    })
    .await?
    .map_err(|(tile, e)| match tile {
        Some(_) => method_err(tile, e),
        None => method_err(None, format!("batch of tiles {batch}: {e}")),
    })?;
    let padded = Window::new(0, 0, side, side);
    let with_spread = opts.ensemble > 1 && opts.member.is_none();
    Ok(tiles
        .iter()
        .zip(outputs)
        .zip(continuations)
        .map(|((tile, out), continuation)| {
            let inner = Window::new(0, 0, tile.window.height, tile.window.width);
            let mut fill = TileFill {
                values: padded.crop(&out.values, lead, &inner),
                spread: with_spread.then(|| padded.crop(&out.spread, lead, &inner)),
                members: opts
                    .keep_members
                    .then(|| padded.crop(&out.members, opts.ensemble * lead, &inner)),
            };
            continuation.restore(&mut fill);
            fill
        })
        .collect())
}
