//! Inverse-distance fill of missing pixels, in the spirit of GDAL's FillNodata: each missing pixel
//! looks outward along the 16 directions of [`RAYS`] (every 21.8°–23.2°) for the nearest
//! observed pixel and averages what it finds with weights 1/d^1.5 ([`POWER`]). Sources are
//! observed pixels only, never earlier fills, so the result does not depend on scan order.
//!
//! The search costs O(1) per pixel and direction, however large the gap. A ray is a digital line
//! that repeats with a period: along direction s = (dy, dx) it visits the pixels
//! p + k·s + oᵢ for k = 0, 1, … and the offsets oᵢ of one period ([`Ray::offsets`], ending at s
//! itself). So the first observed pixel seen from p is among its first period, or it is the one
//! seen from p + s; one pass over the plane in the right order finds it for every pixel at once
//! (see [`trace`]). A search radius makes the fill of a pixel depend only on the pixels within
//! that distance, so a tile read with a margin of the radius is filled exactly as the whole scene
//! would be, whatever the tiling.

use tiling::Window;

/// Directions searched from each missing pixel, as whole steps (dy, dx): the axes, the diagonals
/// and the 2:5 slopes between them (21.8° from an axis; every 22.5° would need irrational steps).
/// A step is the shortest whole period of its line, so the axes and diagonals check one pixel
/// per period and the 2:5 slopes five.
pub const RAYS: [(i64, i64); 16] = [
    (0, 1),
    (2, 5),
    (1, 1),
    (5, 2),
    (1, 0),
    (5, -2),
    (1, -1),
    (2, -5),
    (0, -1),
    (-2, -5),
    (-1, -1),
    (-5, -2),
    (-1, 0),
    (-5, 2),
    (-1, 1),
    (-2, 5),
];

/// The power of the inverse-distance weights. GDAL uses 2. On the nine gap-benchmark inputs
/// (blobs, stripes and a hole in Landsat 7, a Landsat series and ERA5 2 m temperature) 1.5 has
/// lower NRMSE than 2 on all nine and beats FillNodata on all nine (2 loses on the ERA5 hole);
/// 1.25 and 1 lower NRMSE by another 0.1–3 % on most but blur more (lower SSIM on Landsat 7);
/// 3 is worse everywhere.
pub const POWER: f64 = 1.5;

/// The search radius of a tile's first pass, in pixels: above GDAL FillNodata's default
/// `max_search_distance` of 100.
pub const FIRST_RADIUS: u64 = 128;

/// The radii of the passes that fill a tile of an `h × w` scene: [`FIRST_RADIUS`], then ×4 each
/// pass until one reaches every pixel of the scene. Each pass fills only what the earlier ones
/// left, so a pixel's value depends on the scene, never on the tile it was computed in.
pub fn search_radii(h: u64, w: u64) -> Vec<u64> {
    let reach = (h as f64).hypot(w as f64).ceil() as u64;
    let mut radii = vec![FIRST_RADIUS];
    while radii[radii.len() - 1] < reach {
        radii.push(radii[radii.len() - 1].saturating_mul(4));
    }
    radii
}

/// Fills the NaN pixels of one `h × w` plane in place, searching the whole plane; returns how
/// many stayed NaN (no observed pixel on any ray inside the plane).
pub fn fill_plane(plane: &mut [f32], h: usize, w: usize) -> usize {
    let region = Window::new(0, 0, h as u64, w as u64);
    let filled = fill_region(plane, (h, w), &region, None);
    let unfilled = filled.iter().filter(|v| v.is_nan()).count();
    plane.copy_from_slice(&filled);
    unfilled
}

/// The pixels of `region` (inside the `h × w` plane) with their gaps filled from the first
/// observed pixel along each ray, where it lies within `radius` pixels (Euclidean; `None`: the
/// whole plane). A gap pixel with nothing in reach stays NaN.
///
/// With a radius r, the result for a pixel depends only on the plane within r of it: filling a
/// region of a plane that extends at least r beyond it (or to the scene's edge) gives the same
/// bytes as filling the whole scene.
pub fn fill_region(
    plane: &[f32],
    (h, w): (usize, usize),
    region: &Window,
    radius: Option<f64>,
) -> Vec<f32> {
    let whole = Window::new(0, 0, h as u64, w as u64);
    let mut out = whole.crop(plane, 1, region);
    if !out.iter().any(|v| v.is_nan()) {
        return out;
    }
    let reach2 = radius.map_or(f64::INFINITY, |r| r * r);
    // A ray's pixels move monotonically along its step, so the ones an accepted source is
    // reached through lie within `reach` of the region on the step's side.
    let reach = radius.map_or(h.max(w), |r| r.ceil() as usize);
    let (rw, ry0, rx0) = (
        region.width as usize,
        region.y0 as usize,
        region.x0 as usize,
    );
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.reset(plane.len(), out.len());
        let Scratch { found, sum, weight } = scratch;
        for step in RAYS {
            let ray = Ray::new(step);
            let span = |d: i64, lo: usize, len: usize, size: usize| match d.signum() {
                1 => lo..(lo + len + reach).min(size),
                -1 => lo.saturating_sub(reach)..lo + len,
                _ => lo..lo + len,
            };
            let rows = span(step.0, ry0, region.height as usize, h);
            let cols = span(step.1, rx0, rw, w);
            trace(plane, w, (rows, cols), &ray, found);
            for (row, values) in out.chunks(rw).enumerate() {
                let first = (ry0 + row) * w + rx0;
                for (col, v) in values.iter().enumerate() {
                    let p = first + col;
                    let (oy, ox) = found.offset[p];
                    if !v.is_nan() || (oy, ox) == NONE {
                        continue;
                    }
                    let d2 = f64::from(oy).powi(2) + f64::from(ox).powi(2);
                    if d2 <= reach2 {
                        let (i, wt) = (row * rw + col, inverse_distance(d2));
                        sum[i] += f64::from(found.value[p]) * wt;
                        weight[i] += wt;
                    }
                }
            }
        }
        for ((v, s), wt) in out.iter_mut().zip(sum.iter()).zip(weight.iter()) {
            if v.is_nan() && *wt > 0.0 {
                *v = (s / wt) as f32;
            }
        }
    });
    out
}

/// The weight of a source at squared distance `d2`: 1/d^[`POWER`], from square roots only
/// (correctly rounded everywhere, unlike `powf`, so fills are the same bytes on every machine).
fn inverse_distance(d2: f64) -> f64 {
    const _: () = assert!(POWER == 1.5, "inverse_distance computes d^-1.5");
    let d = d2.sqrt();
    1.0 / (d * d.sqrt())
}

/// One search direction: a whole step and the pixels one period of its digital line visits.
struct Ray {
    step: (i64, i64),
    /// (round(t·dy/n), round(t·dx/n)) for t = 1..=n, n = max(|dy|, |dx|); the last is the step.
    offsets: Vec<(i64, i64)>,
}

impl Ray {
    fn new((dy, dx): (i64, i64)) -> Self {
        let n = dy.abs().max(dx.abs());
        let at = |d: i64, t: i64| (d as f64 * t as f64 / n as f64).round() as i64;
        Self {
            step: (dy, dx),
            offsets: (1..=n).map(|t| (at(dy, t), at(dx, t))).collect(),
        }
    }
}

/// Marks "nothing found" in [`Found::offset`].
const NONE: (i32, i32) = (0, 0);

/// Per missing pixel of a plane, the first observed pixel along one ray: its `offset` from the
/// pixel ([`NONE`] when there is none inside the traced box) and its `value`. Observed pixels'
/// entries are not used.
#[derive(Default)]
struct Found {
    offset: Vec<(i32, i32)>,
    value: Vec<f32>,
}

impl Found {
    /// What a pixel one `step` before pixel `q` sees when nothing in its own first period is
    /// observed: `q`'s source, one step further away.
    fn seen_from(&self, q: usize, step: (i32, i32)) -> ((i32, i32), f32) {
        match self.offset[q] {
            NONE => (NONE, 0.0),
            (qy, qx) => ((qy + step.0, qx + step.1), self.value[q]),
        }
    }
}

/// Buffers [`fill_region`] reuses between calls on a thread, so that filling tile after tile
/// does not fault in fresh pages each time.
#[derive(Default)]
struct Scratch {
    found: Found,
    sum: Vec<f64>,
    weight: Vec<f64>,
}

impl Scratch {
    /// Sizes the buffers for a plane of `pixels` and a region of `region` pixels, sums zeroed.
    fn reset(&mut self, pixels: usize, region: usize) {
        self.found.offset.resize(pixels, NONE);
        self.found.value.resize(pixels, 0.0);
        for acc in [&mut self.sum, &mut self.weight] {
            acc.clear();
            acc.resize(region, 0.0);
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Finds, for every missing pixel p of the box `rows × cols` of a plane `w` wide, the first
/// observed pixel along `ray` inside the box. Pixels are visited so that p + step comes before
/// p: then p sees the first observed pixel of its own first period, or else what p + step sees.
fn trace(
    plane: &[f32],
    w: usize,
    (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
    ray: &Ray,
    found: &mut Found,
) {
    let (dy, dx) = ray.step;
    let inside = |y: i64, x: i64| {
        (rows.start as i64..rows.end as i64).contains(&y)
            && (cols.start as i64..cols.end as i64).contains(&x)
    };
    // Offsets as index steps in the plane, for pixels whose whole first period (and step) lies
    // inside the box: there no coordinate needs checking.
    let linear: Vec<(isize, (i32, i32))> = ray
        .offsets
        .iter()
        .map(|&(oy, ox)| ((oy * w as i64 + ox) as isize, (oy as i32, ox as i32)))
        .collect();
    let step = (dy * w as i64 + dx) as isize;
    let step32 = (dy as i32, dx as i32);
    let (y_in, x_in) = (interior(rows.clone(), dy), interior(cols.clone(), dx));
    let order: Box<dyn Iterator<Item = usize>> = if dy > 0 {
        Box::new(rows.clone().rev())
    } else {
        Box::new(rows.clone())
    };
    for y in order {
        let row_in = y_in.contains(&y);
        for i in 0..cols.len() {
            // Within a row only a horizontal step orders the pixels: against its direction.
            let x = if dx > 0 {
                cols.end - 1 - i
            } else {
                cols.start + i
            };
            let p = y * w + x;
            if !plane[p].is_nan() {
                continue;
            }
            let (offset, value) = if row_in && x_in.contains(&x) {
                let mut hit = None;
                for &(o, o32) in &linear {
                    let v = plane[p.wrapping_add_signed(o)];
                    if !v.is_nan() {
                        hit = Some((o32, v));
                        break;
                    }
                }
                hit.unwrap_or_else(|| found.seen_from(p.wrapping_add_signed(step), step32))
            } else {
                edge_pixel(plane, w, (y as i64, x as i64), ray, &inside, found)
            };
            found.offset[p] = offset;
            found.value[p] = value;
        }
    }
}

/// The coordinates along one axis of a box from which a step of `d` (and every offset before it,
/// which lie between 0 and `d`) stays inside the box.
fn interior(span: std::ops::Range<usize>, d: i64) -> std::ops::Range<usize> {
    let reach = d.unsigned_abs() as usize;
    match d.signum() {
        1 => span.start..span.end.saturating_sub(reach).max(span.start),
        -1 => (span.start + reach).min(span.end)..span.end,
        _ => span,
    }
}

/// [`trace`]'s step for a pixel near the box's edge, checking every coordinate.
fn edge_pixel(
    plane: &[f32],
    w: usize,
    (py, px): (i64, i64),
    ray: &Ray,
    inside: &impl Fn(i64, i64) -> bool,
    found: &Found,
) -> ((i32, i32), f32) {
    let (dy, dx) = ray.step;
    for &(oy, ox) in &ray.offsets {
        let (qy, qx) = (py + oy, px + ox);
        if !inside(qy, qx) {
            return (NONE, 0.0);
        }
        let v = plane[qy as usize * w + qx as usize];
        if !v.is_nan() {
            return ((oy as i32, ox as i32), v);
        }
    }
    if !inside(py + dy, px + dx) {
        return (NONE, 0.0);
    }
    found.seen_from(
        (py + dy) as usize * w + (px + dx) as usize,
        (dy as i32, dx as i32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane of a smooth field with gaps: rectangles and scattered pixels, from a fixed seed.
    fn gappy_plane(h: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut plane: Vec<f32> = (0..h * w)
            .map(|i| ((i / w) as f32 * 0.3).sin() * 10.0 + (i % w) as f32 * 0.2)
            .collect();
        for _ in 0..6 {
            let (y0, x0) = (next() % h, next() % w);
            let (gh, gw) = (1 + next() % (h / 2), 1 + next() % (w / 2));
            for y in y0..(y0 + gh).min(h) {
                for x in x0..(x0 + gw).min(w) {
                    plane[y * w + x] = f32::NAN;
                }
            }
        }
        for _ in 0..h * w / 10 {
            plane[next() % (h * w)] = f32::NAN;
        }
        plane
    }

    /// The same search done the slow way: walk each ray's digital line pixel by pixel.
    fn brute_force(plane: &[f32], (h, w): (usize, usize), radius: Option<f64>) -> Vec<f32> {
        let rays: Vec<Ray> = RAYS.iter().map(|&s| Ray::new(s)).collect();
        (0..h * w)
            .map(|p| {
                if !plane[p].is_nan() {
                    return plane[p];
                }
                let (y, x) = ((p / w) as i64, (p % w) as i64);
                let (mut sum, mut weight) = (0.0f64, 0.0f64);
                for ray in &rays {
                    let line = (0i64..).flat_map(|k| {
                        ray.offsets
                            .iter()
                            .map(move |&(oy, ox)| (k * ray.step.0 + oy, k * ray.step.1 + ox))
                    });
                    for (oy, ox) in line {
                        let (qy, qx) = (y + oy, x + ox);
                        if qy < 0 || qx < 0 || qy >= h as i64 || qx >= w as i64 {
                            break;
                        }
                        let v = plane[qy as usize * w + qx as usize];
                        if !v.is_nan() {
                            let d2 = (oy * oy + ox * ox) as f64;
                            if radius.is_none_or(|r| d2 <= r * r) {
                                sum += f64::from(v) * inverse_distance(d2);
                                weight += inverse_distance(d2);
                            }
                            break;
                        }
                    }
                }
                if weight > 0.0 {
                    (sum / weight) as f32
                } else {
                    f32::NAN
                }
            })
            .collect()
    }

    #[test]
    fn rays_are_digital_lines_that_end_each_period_on_their_step() {
        assert_eq!(
            Ray::new((2, 5)).offsets,
            vec![(0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
        );
        assert_eq!(Ray::new((-5, 5)).offsets.last(), Some(&(-5, 5)));
        assert_eq!(Ray::new((0, -5)).offsets[0], (0, -1));
    }

    #[test]
    fn fills_a_hole_in_a_plane_exactly_and_keeps_observed_pixels() {
        let (h, w) = (20, 30);
        let truth: Vec<f32> = vec![3.25; h * w];
        let mut plane = truth.clone();
        for y in 5..12 {
            for x in 8..20 {
                plane[y * w + x] = f32::NAN;
            }
        }
        assert_eq!(fill_plane(&mut plane, h, w), 0);
        assert!(plane.iter().zip(&truth).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn interpolates_between_sides() {
        // A ramp with its middle column missing: the fill lies between the neighbours.
        let (h, w) = (9, 9);
        let mut plane: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        for y in 0..h {
            plane[y * w + 4] = f32::NAN;
        }
        fill_plane(&mut plane, h, w);
        for y in 0..h {
            let v = plane[y * w + 4];
            assert!(
                (3.0..=5.0).contains(&v) && (v - 4.0).abs() < 0.5,
                "row {y}: {v}"
            );
        }
    }

    #[test]
    fn the_last_radius_reaches_the_whole_scene() {
        assert_eq!(search_radii(100, 50), vec![FIRST_RADIUS]);
        assert_eq!(search_radii(3000, 4000), vec![128, 512, 2048, 8192]);
    }

    #[test]
    fn a_plane_without_observations_stays_missing() {
        let mut plane = vec![f32::NAN; 16];
        assert_eq!(fill_plane(&mut plane, 4, 4), 16);
    }

    #[test]
    fn the_one_pass_search_finds_what_walking_each_ray_finds() {
        for seed in 0..8 {
            let (h, w) = (23 + seed as usize, 37);
            let plane = gappy_plane(h, w, seed);
            let whole = Window::new(0, 0, h as u64, w as u64);
            for radius in [None, Some(0.5), Some(3.0), Some(7.5)] {
                let fast = fill_region(&plane, (h, w), &whole, radius);
                let slow = brute_force(&plane, (h, w), radius);
                for (p, (a, b)) in fast.iter().zip(&slow).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits(),
                        "seed {seed} radius {radius:?} pixel {p}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_region_read_with_a_margin_of_the_radius_fills_as_the_whole_plane() {
        let (h, w) = (64, 80);
        let plane = gappy_plane(h, w, 42);
        let whole = Window::new(0, 0, h as u64, w as u64);
        let radius = 9u64;
        let everything = fill_region(&plane, (h, w), &whole, Some(radius as f64));
        for region in [
            Window::new(10, 12, 16, 16),
            Window::new(0, 0, 20, 33),
            Window::new(50, 70, 14, 10),
        ] {
            let context = region.expand(radius, h as u64, w as u64);
            let sub = whole.crop(&plane, 1, &context);
            let inner = region.within(&context);
            let local = fill_region(
                &sub,
                (context.height as usize, context.width as usize),
                &inner,
                Some(radius as f64),
            );
            let expected = whole.crop(&everything, 1, &region);
            let same = local
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "region {region:?} differs from the whole-plane fill");
        }
    }
}
