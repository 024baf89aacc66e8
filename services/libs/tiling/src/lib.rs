//! Pure tile-grid geometry for terrafill: windows, the overlapping tile grid, blend weights,
//! tile↔output-chunk maps, the four parity phases, the distance transform and per-window counts of
//! flagged pixels. No I/O, no async: every other crate asks
//! this one where a tile or chunk lies, so the coordinator, workers and stitcher never disagree
//! about geometry (DESIGN.md §4).

mod axis;
mod blend;
mod census;
mod chunks;
mod distance;
mod grid;
mod window;

pub use blend::{BlendError, Blender};
pub use census::Census;
pub use chunks::ChunkGrid;
pub use distance::squared_distance;
pub use grid::{GridError, Phase, Tile, TileGrid};
pub use window::{copy_overlap, Window};
