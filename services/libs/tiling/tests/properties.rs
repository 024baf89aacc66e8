#![allow(clippy::unwrap_used)]
//! Property tests of the grid and blending over random scene sizes, tiles and overlaps.

use proptest::prelude::*;
use tiling::{Blender, ChunkGrid, TileGrid, Window};

fn grid_params() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (1u64..200, 1u64..200, 2u64..80).prop_flat_map(|(h, w, t)| (Just(h), Just(w), Just(t), 0..t))
}

proptest! {
    #[test]
    fn every_pixel_has_positive_weight_and_normalised_weights_sum_to_one((h, w, t, o) in grid_params()) {
        let g = TileGrid::new(h, w, t, o).unwrap();
        let mut total = vec![0.0f64; (h * w) as usize];
        let mut per_tile = Vec::new();
        for tile in g.tiles() {
            let wts = g.blend_weights(&tile);
            prop_assert!(wts.iter().all(|&v| v > 0.0));
            for (i, &v) in wts.iter().enumerate() {
                let (y, x) = (tile.window.y0 + i as u64 / tile.window.width, tile.window.x0 + i as u64 % tile.window.width);
                total[(y * w + x) as usize] += v;
            }
            per_tile.push((tile, wts));
        }
        prop_assert!(total.iter().all(|&v| v > 0.0));
        let mut normalised = vec![0.0f64; (h * w) as usize];
        for (tile, wts) in &per_tile {
            for (i, &v) in wts.iter().enumerate() {
                let (y, x) = (tile.window.y0 + i as u64 / tile.window.width, tile.window.x0 + i as u64 % tile.window.width);
                normalised[(y * w + x) as usize] += v / total[(y * w + x) as usize];
            }
        }
        prop_assert!(normalised.iter().all(|&v| (v - 1.0).abs() < 1e-9));
    }

    #[test]
    fn tiles_touching_matches_brute_force((h, w, t, o) in grid_params(), y in 0u64..200, x in 0u64..200) {
        let g = TileGrid::new(h, w, t, o).unwrap();
        let win = Window::new(y % h, x % w, (h - y % h).min(17), (w - x % w).min(23));
        let brute: Vec<u64> = g.tiles().filter(|tile| tile.window.intersect(&win).is_some()).map(|tile| tile.index).collect();
        prop_assert_eq!(g.tiles_touching(&win), brute);
    }

    #[test]
    fn blending_identical_tiles_reproduces_the_scene((h, w, t, o) in grid_params(), seed in any::<u32>(), ch in 1u64..100) {
        let g = TileGrid::new(h, w, t, o).unwrap();
        let lead = 2usize;
        let value = |l: usize, y: u64, x: u64| {
            let k = (seed as u64).wrapping_mul(2654435761).wrapping_add(l as u64 * 7919 + y * 104729 + x * 1299709);
            f32::from_bits(0x3f80_0000 | (k as u32 & 0x007f_ffff)) * if k % 3 == 0 { -1234.5 } else { 0.001 }
        };
        let chunks = ChunkGrid::new(h, w, ch, ch);
        for c in 0..chunks.len() {
            let (r, cc) = chunks.position(c);
            let cw = chunks.window(r, cc);
            let mut blender = Blender::new(cw, lead);
            for i in g.tiles_touching(&cw) {
                let tile = g.tile(i).unwrap();
                let tw = tile.window;
                let vals: Vec<f32> = (0..lead).flat_map(|l| (tw.y0..tw.y1()).flat_map(move |y| (tw.x0..tw.x1()).map(move |x| value(l, y, x)))).collect();
                blender.add(&g, &tile, &vals).unwrap();
            }
            let out = blender.finish();
            let mut k = 0;
            for l in 0..lead {
                for y in cw.y0..cw.y1() {
                    for x in cw.x0..cw.x1() {
                        prop_assert_eq!(out[k].to_bits(), value(l, y, x).to_bits(), "pixel {} {} {}", l, y, x);
                        k += 1;
                    }
                }
            }
        }
    }
}

#[test]
fn out_of_order_contributions_are_refused() {
    let g = TileGrid::new(100, 100, 64, 16).unwrap();
    let window = Window::new(0, 0, 100, 100);
    let mut b = Blender::new(window, 1);
    let t1 = g.tile(1).unwrap();
    let t0 = g.tile(0).unwrap();
    b.add(&g, &t1, &vec![1.0; t1.window.area() as usize])
        .unwrap();
    assert!(b
        .add(&g, &t0, &vec![1.0; t0.window.area() as usize])
        .is_err());
}
