//! Pure tile-grid geometry for terrafill: windows, the overlapping tile grid, blend weights,
//! tile↔output-chunk maps, the four parity phases and the distance transform. No I/O, no async: every other crate asks
//! this one where a tile or chunk lies, so the coordinator, workers and stitcher never disagree
//! about geometry (DESIGN.md §4).

mod axis;
mod blend;
mod chunks;
mod distance;
mod grid;
mod window;

pub use blend::{BlendError, Blender};
pub use chunks::ChunkGrid;
pub use distance::squared_distance;
pub use grid::{GridError, Phase, Tile, TileGrid};
pub use window::Window;
