//! `preview`: a PNG of a fill output (see [`crate::preview`]). The output is read one band of
//! chunk rows at a time and decimated to at most [`MAX_SIDE`] pixels a side, so a continental
//! mosaic previews in the memory of its picture.

use std::path::Path;

use anyhow::{ensure, Context};
use tiling::Window;
use zarr_io::Scene;

use crate::args::PreviewArgs;
use crate::preview::{png, render, upscale, Planes};

/// The longest side of a panel; larger outputs are decimated (every n-th pixel).
const MAX_SIDE: u64 = 1024;
/// Panels smaller than this are enlarged by a whole factor (up to 4), pixels kept square.
const MIN_SIDE: usize = 512;

pub async fn preview(args: &PreviewArgs) -> anyhow::Result<()> {
    write_preview(&args.output, args.planes.as_deref(), &args.png).await?;
    println!("wrote {}", args.png.display());
    Ok(())
}

/// Draws the fill output at `url` into a PNG at `path`.
///
/// # Errors
/// An output without `data`/`filled`, planes out of range, unwritable `path`.
pub async fn write_preview(url: &str, planes: Option<&[u64]>, path: &Path) -> anyhow::Result<()> {
    let data = Scene::open(url, zarr_io::DATA_ARRAY, None).await?;
    let filled = Scene::open(url, zarr_io::FILLED_ARRAY, None)
        .await
        .with_context(|| format!("{url} has no `filled` array: is it a terrafill fill output?"))?;
    let spread = Scene::open(url, zarr_io::SPREAD_ARRAY, None).await.ok();
    let lead = data.lead_len();
    let planes: Vec<u64> = match planes {
        Some(p) => p.to_vec(),
        None if lead >= 3 => vec![0, 1, 2],
        None => vec![0],
    };
    ensure!(
        planes.len() == 1 || planes.len() == 3,
        "--planes takes one plane (grey) or three (red, green, blue), not {}",
        planes.len()
    );
    if let Some(&p) = planes.iter().find(|&&p| p >= lead) {
        anyhow::bail!(
            "--planes: {url} has {lead} planes (0 to {}), not {p}",
            lead - 1
        );
    }
    let (h, w) = (data.height(), data.width());
    let step = h.max(w).div_ceil(MAX_SIDE).max(1);
    let decimated = Decimated::read(&data, &planes, step).await?;
    let filled_any = Decimated::read(&filled, &planes, step).await?.any_nonzero();
    let spread = match &spread {
        Some(s) => Some(Decimated::read(s, &planes, step).await?.mean()),
        None => None,
    };
    let enlarge = (MIN_SIDE / decimated.height.max(decimated.width).max(1)).clamp(1, 4);
    let image = render(&Planes {
        height: decimated.height,
        width: decimated.width,
        data: decimated.planes.iter().map(Vec::as_slice).collect(),
        filled: filled_any,
        spread,
    });
    std::fs::write(path, png(&upscale(&image, enlarge))?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Selected planes of a scene, every `step`-th row and column.
struct Decimated {
    height: usize,
    width: usize,
    planes: Vec<Vec<f32>>,
}

impl Decimated {
    async fn read(scene: &Scene, planes: &[u64], step: u64) -> anyhow::Result<Self> {
        let (h, w) = (scene.height(), scene.width());
        let band = scene.chunk_shape_yx().0.max(1);
        let mut out = vec![Vec::new(); planes.len()];
        let mut y0 = 0;
        while y0 < h {
            let rows = band.min(h - y0);
            let values = scene.read_window(Window::new(y0, 0, rows, w)).await?.values;
            let stride = (rows * w) as usize;
            for (dst, &p) in out.iter_mut().zip(planes) {
                let plane = &values[p as usize * stride..][..stride];
                for y in (y0..y0 + rows).filter(|y| y % step == 0) {
                    let row = &plane[((y - y0) * w) as usize..][..w as usize];
                    dst.extend(row.iter().step_by(step as usize));
                }
            }
            y0 += rows;
        }
        Ok(Self {
            height: h.div_ceil(step) as usize,
            width: w.div_ceil(step) as usize,
            planes: out,
        })
    }

    /// Per pixel: whether any plane is non-zero (and not NaN).
    fn any_nonzero(&self) -> Vec<bool> {
        (0..self.height * self.width)
            .map(|i| self.planes.iter().any(|p| p[i] != 0.0 && !p[i].is_nan()))
            .collect()
    }

    /// Per pixel: the mean over the planes.
    fn mean(&self) -> Vec<f32> {
        let n = self.planes.len() as f32;
        (0..self.height * self.width)
            .map(|i| self.planes.iter().map(|p| p[i]).sum::<f32>() / n)
            .collect()
    }
}
