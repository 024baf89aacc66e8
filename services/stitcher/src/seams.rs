//! The seam metric of a finished mosaic, for its provenance: read back block by block (bounded
//! memory at any scene size) over the pixels the job filled.

use scoring::{Region, SeamAccumulator, SeamLayout, Seams};
use tiling::{TileGrid, Window};
use zarr_io::{Mosaic, ZarrIoError};

/// Side of the blocks the metric counts at a time (each read with the metric's halo around it).
const BLOCK: u64 = 512;

/// [`scoring::seams`] of `mosaic`'s `data` on `grid`, over its filled pixels; `None` when the grid
/// has no regular overlap zone or nothing was filled there.
///
/// # Errors
/// Reading the mosaic back.
pub(crate) async fn measure(
    mosaic: &Mosaic,
    grid: &TileGrid,
) -> Result<Option<Seams>, ZarrIoError> {
    let shape = &mosaic.spec().shape;
    let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let Some(mut acc) = SeamAccumulator::new(h as usize, w as usize, SeamLayout::of(grid)) else {
        return Ok(None);
    };
    let halo = acc.halo() as u64;
    for y0 in (0..h).step_by(BLOCK as usize) {
        for x0 in (0..w).step_by(BLOCK as usize) {
            let core = Window::new(y0, x0, BLOCK.min(h - y0), BLOCK.min(w - x0));
            let (by, bx) = (y0.saturating_sub(halo), x0.saturating_sub(halo));
            let block = Window::new(
                by,
                bx,
                (core.y1() + halo).min(h) - by,
                (core.x1() + halo).min(w) - bx,
            );
            let (data, filled) = mosaic.read_window(block).await?;
            let plane = (block.height * block.width) as usize;
            let select: Vec<bool> = filled.iter().map(|&f| f == 1).collect();
            for (band, chosen) in data.chunks(plane).zip(select.chunks(plane)) {
                acc.add(band, Some(chosen), &region(block), &region(core));
            }
        }
    }
    Ok(acc.finish())
}

/// `w` as the metric's rows and columns.
fn region(w: Window) -> Region {
    Region {
        rows: w.y0 as usize..w.y1() as usize,
        cols: w.x0 as usize..w.x1() as usize,
    }
}
