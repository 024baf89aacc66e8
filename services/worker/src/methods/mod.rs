//! Fill methods a worker runs on tiles. Compute runs on blocking threads, never on the runtime.

use tiling::{Tile, Window};
use wire::v1::Method;

use crate::job::JobContext;
use crate::WorkerError;

/// A tile's output: `[lead, tile window]` values and, for ensembles, their standard deviation
/// and (when the job asks) the members.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TileFill {
    /// Filled values (observed pixels unchanged).
    pub values: Vec<f32>,
    /// Ensemble spread, when the method has one.
    pub spread: Option<Vec<f32>>,
    /// Every member, `[member, lead, tile window]`, when the job writes members.
    pub members: Option<Vec<f32>>,
}

/// Computes the outputs of `tiles` (all of one job), in order.
///
/// # Errors
/// [`WorkerError`] for unreadable input or a method failure, naming the tile.
pub async fn compute(job: &JobContext, tiles: &[Tile]) -> Result<Vec<TileFill>, WorkerError> {
    match job.method {
        Method::Identity => {
            let mut out = Vec::with_capacity(tiles.len());
            for tile in tiles {
                let data = job.read(tile.index, tile.window).await?;
                out.push(TileFill {
                    values: data.values,
                    ..TileFill::default()
                });
            }
            Ok(out)
        }
        Method::Idw => {
            let mut out = Vec::with_capacity(tiles.len());
            for tile in tiles {
                out.push(idw_tile(job, tile).await?);
            }
            Ok(out)
        }
        Method::Diffusion => crate::diffusion::compute(job, tiles).await,
        Method::Unspecified => Err(WorkerError::Method {
            job: job.id.to_string(),
            tile: None,
            reason: "method unspecified".into(),
        }),
    }
}

/// IDW with context: reads the tile plus a margin of the search radius so gaps near the tile edge
/// see observed pixels beyond it, in passes of growing radius (see [`idw::search_radii`]) while
/// pixels are left unfilled.
async fn idw_tile(job: &JobContext, tile: &Tile) -> Result<TileFill, WorkerError> {
    Ok(TileFill {
        values: idw_with_context(job, tile).await?.filled,
        ..TileFill::default()
    })
}

/// A tile's `[lead, window]` values as read, and with every gap filled by IDW.
pub(crate) struct ContextFill {
    /// The tile's values, NaN where missing.
    pub observed: Vec<f32>,
    /// The same with gaps filled from the observed pixels around the tile; NaN only where a
    /// plane has no observed pixel on any ray in the whole scene.
    pub filled: Vec<f32>,
}

/// Reads a tile with context and fills its gaps by IDW (see [`idw_tile`]); the first read serves
/// both the observed values and the fill. Each pass searches as far as its context reaches and
/// fills only the pixels earlier passes left, so every pixel gets the value a whole-scene fill
/// at the same radius gives it, whichever tile computes it: overlapping tiles agree exactly.
///
/// # Errors
/// [`WorkerError::Storage`] naming the tile.
pub(crate) async fn idw_with_context(
    job: &JobContext,
    tile: &Tile,
) -> Result<ContextFill, WorkerError> {
    let (h, w) = (job.grid.height(), job.grid.width());
    let mut result: Option<ContextFill> = None;
    for radius in idw::search_radii(h, w) {
        let context = tile.window.expand(radius, h, w);
        let data = job.read(tile.index, context).await?;
        let (inner, earlier) = (tile.window.within(&context), result.take());
        let pass = tokio::task::spawn_blocking(move || {
            idw_pass(&data.values, &context, &inner, radius, earlier)
        })
        .await?;
        let done = !pass.filled.iter().any(|v| v.is_nan());
        result = Some(pass);
        if done {
            break;
        }
    }
    Ok(result.expect("search_radii yields at least one radius"))
}

/// One pass of [`idw_with_context`] over `values` (`[lead, context]`): fills the pixels of
/// `inner` that `earlier` left NaN (all gaps on the first pass) from within `radius`.
fn idw_pass(
    values: &[f32],
    context: &Window,
    inner: &Window,
    radius: u64,
    earlier: Option<ContextFill>,
) -> ContextFill {
    let plane = context.area() as usize;
    let (ch, cw) = (context.height as usize, context.width as usize);
    let lead = values.len() / plane.max(1);
    let mut fill = earlier.unwrap_or_else(|| {
        let observed = Window::new(0, 0, context.height, context.width).crop(values, lead, inner);
        ContextFill {
            filled: observed.clone(),
            observed,
        }
    });
    let tile_plane = inner.area() as usize;
    for (p, source) in values.chunks(plane).enumerate() {
        let target = &mut fill.filled[p * tile_plane..(p + 1) * tile_plane];
        if !target.iter().any(|v| v.is_nan()) {
            continue;
        }
        let found = idw::fill_region(source, (ch, cw), inner, Some(radius as f64));
        for (t, f) in target.iter_mut().zip(found) {
            if t.is_nan() {
                *t = f;
            }
        }
    }
    fill
}
