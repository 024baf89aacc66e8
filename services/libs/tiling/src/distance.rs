//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): the distance from every
//! pixel to the nearest pixel of a set, in two separable passes of the 1-D lower envelope of
//! parabolas, O(pixels).

/// Stands in for "no site on this line": large enough never to win, small enough that the
/// envelope's arithmetic stays finite.
const FAR: f64 = 1e20;

/// Squared Euclidean distance (in pixels²) from each pixel of an `h × w` grid (row-major) to the
/// nearest pixel where `sites` is true; `None` when there is no site at all.
///
/// # Panics
/// When `sites.len() != h * w`.
pub fn squared_distance(sites: &[bool], h: usize, w: usize) -> Option<Vec<f64>> {
    assert_eq!(sites.len(), h * w, "sites must be h × w");
    if !sites.iter().any(|&s| s) {
        return None;
    }
    let mut d: Vec<f64> = sites.iter().map(|&s| if s { 0.0 } else { FAR }).collect();
    let mut line = vec![0.0; h.max(w)];
    let mut out = vec![0.0; h.max(w)];
    let mut envelope = Envelope::with_capacity(h.max(w));
    for x in 0..w {
        for y in 0..h {
            line[y] = d[y * w + x];
        }
        envelope.transform(&line[..h], &mut out[..h]);
        for y in 0..h {
            d[y * w + x] = out[y];
        }
    }
    for row in d.chunks_exact_mut(w.max(1)) {
        line[..w].copy_from_slice(row);
        envelope.transform(&line[..w], row);
    }
    Some(d)
}

/// Scratch of the 1-D transform: the parabolas of the lower envelope and their boundaries.
struct Envelope {
    vertex: Vec<usize>,
    bound: Vec<f64>,
}

impl Envelope {
    fn with_capacity(n: usize) -> Self {
        Self {
            vertex: vec![0; n],
            bound: vec![0.0; n + 1],
        }
    }

    /// `d[q] = min_p (q − p)² + f[p]`.
    fn transform(&mut self, f: &[f64], d: &mut [f64]) {
        let n = f.len();
        if n == 0 {
            return;
        }
        let (v, z) = (&mut self.vertex, &mut self.bound);
        let mut k = 0;
        v[0] = 0;
        z[0] = f64::NEG_INFINITY;
        z[1] = f64::INFINITY;
        for q in 1..n {
            loop {
                let p = v[k];
                let (qf, pf) = (q as f64, p as f64);
                let s = ((f[q] + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf));
                if s <= z[k] {
                    k -= 1; // z[0] is −∞, so k never falls below 0
                    continue;
                }
                k += 1;
                v[k] = q;
                z[k] = s;
                z[k + 1] = f64::INFINITY;
                break;
            }
        }
        k = 0;
        for (q, out) in d.iter_mut().enumerate() {
            while z[k + 1] < q as f64 {
                k += 1;
            }
            let dq = q as f64 - v[k] as f64;
            *out = dq * dq + f[v[k]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the minimum over all sites.
    fn brute(sites: &[bool], h: usize, w: usize) -> Vec<f64> {
        (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f64, (i % w) as f64);
                (0..h * w)
                    .filter(|&j| sites[j])
                    .map(|j| {
                        let (sy, sx) = ((j / w) as f64, (j % w) as f64);
                        (y - sy).powi(2) + (x - sx).powi(2)
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_on_scattered_sites() {
        for (h, w, seed) in [(1, 1, 1u64), (1, 9, 2), (7, 1, 3), (13, 17, 4), (20, 11, 5)] {
            // A small LCG: sparse sites, sometimes a single one.
            let mut s = seed;
            let sites: Vec<bool> = (0..h * w)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (s >> 33) % 9 == 0
                })
                .collect();
            let mut sites = sites;
            sites[(seed as usize * 5) % (h * w)] = true;
            let fast = squared_distance(&sites, h, w).expect("has sites");
            assert_eq!(fast, brute(&sites, h, w), "{h}x{w}");
        }
    }

    #[test]
    fn no_site_has_no_distance() {
        assert_eq!(squared_distance(&[false; 6], 2, 3), None);
    }
}
