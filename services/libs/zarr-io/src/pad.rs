//! Mirror padding of tiles (numpy's `reflect` mode), for scenes smaller than a tile.

/// Index into a row of length `n` for position `j`, reflecting without repeating the edge value
/// (numpy `np.pad(..., mode="reflect")`), repeatedly for `j` far beyond `n`.
///
/// The reflected sequence is periodic with period `2(n-1)`: `0, 1, .., n-1, n-2, .., 1, 0, 1, ..`.
/// A length-1 row repeats its only value.
pub(crate) fn reflect_index(j: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = j % period;
    if m < n {
        m
    } else {
        period - m
    }
}

/// Pad each of `lead` planes of `h`×`w` values (row-major) to `out_h`×`out_w` by reflection at
/// the bottom and right; the input stays at the top-left corner.
///
/// Callers guarantee `values.len() == lead * h * w`, `h, w >= 1`, `out_h >= h`, `out_w >= w`.
pub fn reflect_pad(
    values: &[f32],
    lead: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let cols: Vec<usize> = (0..out_w).map(|x| reflect_index(x, w)).collect();
    let mut out = Vec::with_capacity(lead * out_h * out_w);
    for plane in values.chunks_exact(h * w).take(lead) {
        for y in 0..out_h {
            let row = &plane[reflect_index(y, h) * w..][..w];
            out.extend(cols.iter().map(|&x| row[x]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_reflect() {
        // np.pad([1, 2, 3], (0, 7), mode="reflect") == [1, 2, 3, 2, 1, 2, 3, 2, 1, 2]
        let idx: Vec<usize> = (0..10).map(|j| reflect_index(j, 3)).collect();
        assert_eq!(idx, vec![0, 1, 2, 1, 0, 1, 2, 1, 0, 1]);
        // np.pad([1, 2], (0, 4), mode="reflect") == [1, 2, 1, 2, 1, 2]
        let idx: Vec<usize> = (0..6).map(|j| reflect_index(j, 2)).collect();
        assert_eq!(idx, vec![0, 1, 0, 1, 0, 1]);
        assert_eq!(reflect_index(5, 1), 0);
    }

    #[test]
    fn pads_planes_independently() {
        // Two planes of 2x3.
        let v: Vec<f32> = (0..12u8).map(f32::from).collect();
        let out = reflect_pad(&v, 2, 2, 3, 3, 5);
        assert_eq!(out.len(), 2 * 3 * 5);
        // Plane 0, row 0: [0 1 2 1 0]; row 2 reflects row 0.
        assert_eq!(&out[0..5], &[0.0, 1.0, 2.0, 1.0, 0.0]);
        assert_eq!(&out[5..10], &[3.0, 4.0, 5.0, 4.0, 3.0]);
        assert_eq!(&out[10..15], &[0.0, 1.0, 2.0, 1.0, 0.0]);
        // Plane 1 starts at 6.
        assert_eq!(&out[15..20], &[6.0, 7.0, 8.0, 7.0, 6.0]);
    }

    #[test]
    fn identity_when_no_padding_needed() {
        let v: Vec<f32> = (0..6u8).map(f32::from).collect();
        assert_eq!(reflect_pad(&v, 1, 2, 3, 2, 3), v);
    }
}
