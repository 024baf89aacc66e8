//! Fill methods a worker runs on tiles. Compute runs on blocking threads, never on the runtime.

use tiling::{Tile, Window};
use wire::v1::Method;

use crate::job::JobContext;
use crate::WorkerError;

/// A tile's output: `[lead, tile window]` values and, for ensembles, their standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct TileFill {
    /// Filled values (observed pixels unchanged).
    pub values: Vec<f32>,
    /// Ensemble spread, when the method has one.
    pub spread: Option<Vec<f32>>,
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
                    spread: None,
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
            tile: tiles.first().map_or(0, |t| t.index),
            reason: "method unspecified".into(),
        }),
    }
}

/// IDW with context: reads the tile plus a margin so gaps near the tile edge see observed pixels
/// beyond it; if a gap is wider than the margin, grows the margin (×4) up to the whole scene.
async fn idw_tile(job: &JobContext, tile: &Tile) -> Result<TileFill, WorkerError> {
    Ok(TileFill {
        values: idw_with_context(job, tile).await?.filled,
        spread: None,
    })
}

/// A tile's `[lead, window]` values as read, and with every gap filled by IDW.
pub(crate) struct ContextFill {
    /// The tile's values, NaN where missing.
    pub observed: Vec<f32>,
    /// The same with gaps filled from the observed pixels around the tile; NaN only where a
    /// plane has no observed pixel at all.
    pub filled: Vec<f32>,
}

/// Reads a tile with context and fills its gaps by IDW (see [`idw_tile`]); one read serves both
/// the observed values and the fill.
///
/// # Errors
/// [`WorkerError::Storage`] naming the tile.
pub(crate) async fn idw_with_context(
    job: &JobContext,
    tile: &Tile,
) -> Result<ContextFill, WorkerError> {
    let (h, w) = (job.grid.height(), job.grid.width());
    let mut margin = job.grid.tile_size().max(1);
    loop {
        let context = tile.window.expand(margin, h, w);
        let data = job.read(tile.index, context).await?;
        // The tile's window in the context's own coordinates.
        let inner = Window::new(
            tile.window.y0 - context.y0,
            tile.window.x0 - context.x0,
            tile.window.height,
            tile.window.width,
        );
        let (fill, left) = tokio::task::spawn_blocking(move || {
            let plane = context.area() as usize;
            let (ch, cw) = (context.height as usize, context.width as usize);
            let filled: Vec<f32> = data
                .values
                .chunks(plane)
                .flat_map(|p| idw::fill_region(p, ch, cw, &inner))
                .collect();
            let left = filled.iter().filter(|v| v.is_nan()).count();
            let lead = data.values.len() / plane.max(1);
            let observed =
                Window::new(0, 0, context.height, context.width).crop(&data.values, lead, &inner);
            (ContextFill { observed, filled }, left)
        })
        .await?;
        if left == 0 || covers(&context, h, w) {
            return Ok(fill);
        }
        margin = margin.saturating_mul(4);
    }
}

fn covers(window: &Window, h: u64, w: u64) -> bool {
    window.y0 == 0 && window.x0 == 0 && window.height == h && window.width == w
}
