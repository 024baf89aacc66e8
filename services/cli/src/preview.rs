//! Preview images of a filled scene: the input (gaps as a grey checkerboard), the fill with the
//! outline of every filled region, and the ensemble spread, side by side with a label over each.
//!
//! Pure pixel work on values already read; `commands::preview` reads the output and writes the PNG.

/// An 8-bit RGB image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width × height × 3` bytes.
    pub pixels: Vec<u8>,
}

impl Rgb {
    fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self {
            width,
            height,
            pixels: fill.repeat(width * height),
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = 3 * (y * self.width + x);
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// What a preview is drawn from: up to three planes (RGB, or one grey plane) of `height × width`.
#[derive(Debug)]
pub struct Planes<'a> {
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// The filled values, one slice per displayed plane (NaN where still missing).
    pub data: Vec<&'a [f32]>,
    /// Whether each pixel was filled (any displayed plane).
    pub filled: Vec<bool>,
    /// The ensemble spread averaged over the displayed planes, when the output has one.
    pub spread: Option<Vec<f32>>,
}

/// Outline colour of filled regions.
const OUTLINE: [u8; 3] = [255, 220, 0];
/// Background between and above panels.
const PAPER: [u8; 3] = [255, 255, 255];
/// Label colour.
const INK: [u8; 3] = [20, 20, 20];
/// Pixels between panels, and the height of the label strip.
const GUTTER: usize = 6;
const LABEL_STRIP: usize = 7 * LABEL_SCALE + 2 * GUTTER;
const LABEL_SCALE: usize = 2;

/// The side-by-side preview: "INPUT", "FILL" (filled regions outlined) and, when there is a
/// spread, "SPREAD" (black = 0 to yellow = its 98th percentile).
pub fn render(p: &Planes) -> Rgb {
    let stretch: Vec<(f32, f32)> = p.data.iter().map(|d| percentiles(d)).collect();
    let colour = |i: usize| -> Option<[u8; 3]> {
        let v: Vec<u8> = p
            .data
            .iter()
            .zip(&stretch)
            .map(|(d, &(lo, hi))| scale(d[i], lo, hi))
            .collect::<Option<_>>()?;
        Some(if v.len() >= 3 {
            [v[0], v[1], v[2]]
        } else {
            [v[0]; 3]
        })
    };
    let (h, w) = (p.height, p.width);
    let mut panels = vec![
        (
            "INPUT",
            panel(h, w, |x, y| {
                let i = y * w + x;
                if p.filled[i] {
                    None
                } else {
                    colour(i)
                }
            }),
        ),
        (
            "FILL",
            panel(h, w, |x, y| {
                let i = y * w + x;
                if p.filled[i] && on_edge(&p.filled, w, h, x, y) {
                    Some(OUTLINE)
                } else {
                    colour(i)
                }
            }),
        ),
    ];
    if let Some(spread) = &p.spread {
        let (_, top) = percentiles(spread);
        panels.push((
            "SPREAD",
            panel(h, w, |x, y| {
                let v = spread[y * w + x];
                v.is_finite().then(|| ramp(v / top.max(f32::MIN_POSITIVE)))
            }),
        ));
    }
    compose(&panels)
}

/// A panel of `h × w`, each pixel from `f` (None: the "no data" checkerboard).
fn panel(h: usize, w: usize, f: impl Fn(usize, usize) -> Option<[u8; 3]>) -> Rgb {
    let mut img = Rgb::new(w, h, PAPER);
    for y in 0..h {
        for x in 0..w {
            let light = (x / 8 + y / 8) % 2 == 0;
            let c = f(x, y).unwrap_or(if light { [190; 3] } else { [150; 3] });
            img.set(x, y, c);
        }
    }
    img
}

/// `img` with every pixel repeated `k` × `k` times (nearest neighbour), so a small scene's
/// preview is not a thumbnail.
pub fn upscale(img: &Rgb, k: usize) -> Rgb {
    let k = k.max(1);
    let mut out = Rgb::new(img.width * k, img.height * k, PAPER);
    for y in 0..out.height {
        for x in 0..out.width {
            out.set(x, y, img.get(x / k, y / k));
        }
    }
    out
}

/// Whether filled pixel (x, y) touches an observed pixel (4-neighbourhood) or the image border.
fn on_edge(filled: &[bool], w: usize, h: usize, x: usize, y: usize) -> bool {
    x == 0
        || y == 0
        || x + 1 == w
        || y + 1 == h
        || !filled[y * w + x - 1]
        || !filled[y * w + x + 1]
        || !filled[(y - 1) * w + x]
        || !filled[(y + 1) * w + x]
}

/// Panels left to right with their labels above, on white.
fn compose(panels: &[(&str, Rgb)]) -> Rgb {
    let h = panels.iter().map(|(_, p)| p.height).max().unwrap_or(0);
    let w: usize = panels.iter().map(|(_, p)| p.width + GUTTER).sum::<usize>() + GUTTER;
    let mut out = Rgb::new(w, h + LABEL_STRIP + GUTTER, PAPER);
    let mut left = GUTTER;
    for (label, p) in panels {
        draw_text(&mut out, left, GUTTER, label);
        for y in 0..p.height {
            for x in 0..p.width {
                out.set(left + x, LABEL_STRIP + y, p.get(x, y));
            }
        }
        left += p.width + GUTTER;
    }
    out
}

/// The 2nd and 98th percentiles of the finite values (0, 1 when there are none).
fn percentiles(values: &[f32]) -> (f32, f32) {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.02), at(0.98))
}

/// `v` stretched from [lo, hi] to 0–255 (None for NaN).
fn scale(v: f32, lo: f32, hi: f32) -> Option<u8> {
    if !v.is_finite() {
        return None;
    }
    let t = ((v - lo) / (hi - lo).max(f32::MIN_POSITIVE)).clamp(0.0, 1.0);
    Some((t * 255.0).round() as u8)
}

/// Black → purple → orange → yellow for t in [0, 1] (clamped).
fn ramp(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 4] = [
        [0.0, 0.0, 0.0],
        [120.0, 30.0, 130.0],
        [240.0, 110.0, 40.0],
        [255.0, 240.0, 80.0],
    ];
    let t = t.clamp(0.0, 1.0) * 3.0;
    let i = (t.floor() as usize).min(2);
    let f = t - i as f32;
    let mix = |k: usize| (STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// 5×7 glyphs of the letters the labels use, one row per byte (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'D' => [30, 17, 17, 17, 17, 17, 30],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'N' => [17, 25, 21, 19, 17, 17, 17],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        _ => [0; 7],
    }
}

fn draw_text(img: &mut Rgb, left: usize, top: usize, text: &str) {
    for (k, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (16 >> col) != 0 {
                    for (dy, dx) in
                        (0..LABEL_SCALE).flat_map(|a| (0..LABEL_SCALE).map(move |b| (a, b)))
                    {
                        let x = left + (k * 6 + col) * LABEL_SCALE + dx;
                        img.set(x, top + row * LABEL_SCALE + dy, INK);
                    }
                }
            }
        }
    }
}

/// PNG bytes of `img`.
///
/// # Errors
/// Encoder failures (none expected for in-memory output).
pub fn png(img: &Rgb) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let width = u32::try_from(img.width)?;
    let height = u32::try_from(img.height)?;
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&img.pixels)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_by_three() -> (Vec<f32>, Vec<bool>) {
        // 3 wide, 2 high: a ramp with the middle column filled.
        let data = vec![0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN];
        let filled = vec![false, true, false, false, true, false];
        (data, filled)
    }

    #[test]
    fn panels_sit_side_by_side_under_their_labels() {
        let (data, filled) = two_by_three();
        let p = Planes {
            height: 2,
            width: 3,
            data: vec![&data],
            filled: filled.clone(),
            spread: Some(vec![0.0, 1.0, 0.0, 0.0, 2.0, 0.0]),
        };
        let img = render(&p);
        assert_eq!(img.width, 3 * (3 + GUTTER) + GUTTER);
        assert_eq!(img.height, 2 + LABEL_STRIP + GUTTER);
        let at = |panel: usize, x: usize, y: usize| {
            img.get(GUTTER + panel * (3 + GUTTER) + x, LABEL_STRIP + y)
        };
        // Input: the filled pixel is hidden (checkerboard grey), observed ones keep their value.
        assert_eq!(at(0, 1, 0), [190; 3]);
        assert_eq!(at(0, 0, 0), [0; 3]);
        // Fill: the filled pixels are outlined; the NaN pixel stays a checkerboard.
        assert_eq!(at(1, 1, 0), OUTLINE);
        assert_eq!(at(1, 2, 1), [190; 3]);
        // Spread: 0 is black, the largest is the top of the ramp.
        assert_eq!(at(2, 0, 0), [0, 0, 0]);
        assert_eq!(at(2, 1, 1), ramp(1.0));
        // The labels put ink in the strip above each panel.
        assert!(img.pixels[..3 * img.width * LABEL_STRIP].contains(&INK[0]));
    }

    #[test]
    fn three_planes_are_red_green_blue() {
        let (r, g, b) = (vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 0.0]);
        let p = Planes {
            height: 1,
            width: 2,
            data: vec![&r, &g, &b],
            filled: vec![false, false],
            spread: None,
        };
        let img = render(&p);
        let px = |x: usize| img.get(GUTTER + x, LABEL_STRIP);
        assert_eq!(px(0), [0, 255, 0]);
        assert_eq!(px(1), [255, 0, 0]);
    }

    #[test]
    fn upscaling_repeats_each_pixel() {
        let mut img = Rgb::new(2, 1, [0; 3]);
        img.set(1, 0, [9; 3]);
        let big = upscale(&img, 3);
        assert_eq!((big.width, big.height), (6, 3));
        assert_eq!(big.get(2, 2), [0; 3]);
        assert_eq!(big.get(3, 0), [9; 3]);
    }

    #[test]
    fn png_round_trips_through_the_decoder() -> anyhow::Result<()> {
        let img = Rgb::new(4, 3, [10, 20, 30]);
        let bytes = png(&img)?;
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf)?;
        assert_eq!((info.width, info.height), (4, 3));
        assert_eq!(&buf[..3], &[10, 20, 30]);
        Ok(())
    }
}
