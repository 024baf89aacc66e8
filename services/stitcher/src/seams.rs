//! The seam metric of a finished mosaic, for its provenance: read back block by block (bounded
//! memory at any scene size) over the pixels the job filled.

use scoring::{Region, SeamAccumulator, SeamLayout, Seams};
use tiling::{ChunkGrid, TileGrid, Window};
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
    let blocks = ChunkGrid::new(h, w, BLOCK, BLOCK);
    for b in 0..blocks.len() {
        let (row, col) = blocks.position(b);
        let core = blocks.window(row, col);
        let block = core.expand(halo, h, w);
        let (data, filled) = mosaic.read_window(block).await?;
        let select: Vec<bool> = filled.iter().map(|&f| f == 1).collect();
        let plane = (block.height * block.width) as usize;
        let (block, core) = (region(block), region(core));
        for (band, chosen) in data.chunks(plane).zip(select.chunks(plane)) {
            acc.add(band, Some(chosen), &block, &core);
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
