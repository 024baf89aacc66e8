//! One output chunk from its input pixels and the staged tiles touching it: read, blend, write.
//!
//! A [`ChunkWork`] owns everything its chunk needs, so the chunks of a batch are composed and
//! written at once on several threads (the blend on blocking threads, never on the runtime), and
//! the bytes do not depend on which finishes first.

use std::sync::Arc;

use tiling::{Blender, Tile, TileGrid, Window};
use zarr_io::{LeaveAlone, Mosaic, Scene};

use crate::tile_cache::CachedTile;
use crate::StitcherError;

/// What the chunks of one job share.
#[derive(Debug, Clone)]
pub(super) struct ChunkContext {
    pub job: String,
    pub grid: TileGrid,
    pub scene: Arc<Scene>,
    pub leave_alone: Option<Arc<LeaveAlone>>,
    pub mosaic: Arc<Mosaic>,
    pub lead: usize,
    /// Whether the fill has an ensemble spread.
    pub ensemble: bool,
    /// Members written (0: none).
    pub members: usize,
    /// `identity`: every pixel comes from the blend (the pipeline's self-check).
    pub identity: bool,
}

/// One chunk to write: its place and the staged tiles touching it, in tile-index order.
#[derive(Debug)]
pub(super) struct ChunkWork {
    pub row: u64,
    pub col: u64,
    pub window: Window,
    pub tiles: Vec<(Tile, Arc<CachedTile>)>,
}

/// A composed chunk's buffers.
struct Composed {
    data: Vec<f32>,
    filled: Vec<u8>,
    spread: Option<Vec<f32>>,
    members: Option<Vec<f32>>,
}

impl Composed {
    fn bytes(&self) -> u64 {
        let floats = self.data.len()
            + self.spread.as_ref().map_or(0, Vec::len)
            + self.members.as_ref().map_or(0, Vec::len);
        (4 * floats + self.filled.len()) as u64
    }
}

/// Reads chunk `work`'s input, blends its tiles (observed pixels copied bit-exactly, gaps from
/// the tiles summed in tile-index order) and writes it; returns the bytes written.
///
/// # Errors
/// [`StitcherError`] naming the job when a read, blend or write fails.
pub(super) async fn write(cx: Arc<ChunkContext>, work: ChunkWork) -> Result<u64, StitcherError> {
    let storage = |source| StitcherError::Storage {
        job: cx.job.clone(),
        source,
    };
    let input = cx
        .scene
        .read_window(work.window)
        .await
        .map_err(storage)?
        .values;
    let leave = match &cx.leave_alone {
        Some(rule) => Some(rule.mask(&cx.scene, work.window).await.map_err(storage)?),
        None => None,
    };
    let (row, col) = (work.row, work.col);
    let context = cx.clone();
    let composed = tokio::task::spawn_blocking(move || compose(&context, &work, input, leave))
        .await
        .map_err(|e| StitcherError::Inconsistent {
            job: cx.job.clone(),
            reason: format!("chunk blend stopped: {e}"),
        })?
        .map_err(|e| *e)?;
    cx.mosaic
        .write_chunk(
            row,
            col,
            &composed.data,
            &composed.filled,
            composed.spread.as_deref(),
        )
        .await
        .map_err(storage)?;
    if let Some(m) = &composed.members {
        cx.mosaic
            .write_members(row, col, m)
            .await
            .map_err(storage)?;
    }
    Ok(composed.bytes())
}

fn compose(
    cx: &ChunkContext,
    work: &ChunkWork,
    input: Vec<f32>,
    leave: Option<Vec<bool>>,
) -> Result<Composed, Box<StitcherError>> {
    let n = input.len();
    let k = cx.members;
    let mut out = Composed {
        data: input.clone(),
        filled: vec![0u8; n],
        spread: cx.ensemble.then(|| vec![0f32; n]),
        // Members: observed pixels copied into each, gaps from each member's own blend.
        members: (k > 0).then(|| input.repeat(k)),
    };
    if work.tiles.is_empty() {
        return Ok(out);
    }
    let blend_err = |source| {
        Box::new(StitcherError::Blend {
            job: cx.job.clone(),
            source,
        })
    };
    let mut blend = Blender::new(work.window, cx.lead);
    let mut spread_blend = cx.ensemble.then(|| Blender::new(work.window, cx.lead));
    let mut members_blend = (k > 0).then(|| Blender::for_samples(work.window, k * cx.lead));
    for (tile, staged) in &work.tiles {
        blend
            .add(&cx.grid, tile, &staged.values)
            .map_err(blend_err)?;
        if let (Some(b), Some(s)) = (spread_blend.as_mut(), staged.spread.as_ref()) {
            b.add(&cx.grid, tile, s).map_err(blend_err)?;
        }
        if let Some(b) = members_blend.as_mut() {
            let m = staged.members.as_ref().ok_or_else(|| {
                Box::new(StitcherError::Inconsistent {
                    job: cx.job.clone(),
                    reason: format!("staged tile {} has no members", tile.index),
                })
            })?;
            b.add(&cx.grid, tile, m).map_err(blend_err)?;
        }
    }
    let blended = blend.finish();
    let blended_spread = spread_blend.map(Blender::finish);
    let blended_members = members_blend.map(|b| b.finish_samples(&blended));
    for i in 0..n {
        let v = blended[i];
        if cx.identity {
            // The pipeline self-check: every pixel comes from the blend.
            if !v.is_nan() {
                out.data[i] = v;
            }
        } else if input[i].is_nan() && !v.is_nan() && !leave.as_ref().is_some_and(|l| l[i]) {
            out.data[i] = v;
            out.filled[i] = 1;
            if let (Some(s), Some(bs)) = (out.spread.as_mut(), blended_spread.as_ref()) {
                s[i] = bs[i];
            }
            if let (Some(m), Some(bm)) = (out.members.as_mut(), blended_members.as_ref()) {
                for j in (i..k * n).step_by(n) {
                    m[j] = bm[j];
                }
            }
        }
    }
    Ok(out)
}
