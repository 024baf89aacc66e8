//! The missing pixels a job leaves missing: those its keep array marks (a scene's no-data
//! collar) and those farther than its maximum distance from every observed pixel of their plane
//! (GDAL FillNodata's `-md`). Decided per output chunk, from the input alone, so every chunk
//! decides the same whichever tiles cover it.

use tiling::Window;

use crate::{Scene, ZarrIoError};

/// What a job leaves alone; `None` from [`LeaveAlone::open`] when it fills every gap.
#[derive(Debug)]
pub struct LeaveAlone {
    keep: Option<Scene>,
    max_distance: Option<u64>,
}

impl LeaveAlone {
    /// The rule for the scene `data`: its group's array `keep_array`, non-zero where missing
    /// pixels stay missing, and a `max_distance` in pixels (0: none).
    ///
    /// # Errors
    /// The keep array cannot be opened, or fits neither the data's shape nor its [y, x].
    pub async fn open(
        data: &Scene,
        keep_array: &str,
        max_distance: u64,
    ) -> Result<Option<Self>, ZarrIoError> {
        let keep = match keep_array {
            "" => None,
            name => Some(Scene::open(data.url(), name, None).await?),
        };
        if let Some(k) = &keep {
            let yx = &data.shape()[data.shape().len() - 2..];
            if k.shape() != data.shape() && k.shape() != yx {
                return Err(ZarrIoError::MaskShape {
                    url: data.url().to_owned(),
                    mask: keep_array.to_owned(),
                    mask_shape: k.shape().to_vec(),
                    data_shape: data.shape().to_vec(),
                });
            }
        }
        let max_distance = (max_distance > 0).then_some(max_distance);
        Ok((keep.is_some() || max_distance.is_some()).then_some(Self { keep, max_distance }))
    }

    /// For the `[lead, window]` values of chunk `window`: whether each stays missing.
    ///
    /// # Errors
    /// Reading the keep array or the context around the chunk fails.
    pub async fn mask(&self, data: &Scene, window: Window) -> Result<Vec<bool>, ZarrIoError> {
        let lead = data.lead_len() as usize;
        let plane = window.area() as usize;
        let mut leave = vec![false; lead * plane];
        if let Some(keep) = &self.keep {
            let k = keep.read_window(window).await?.values;
            for (i, l) in leave.iter_mut().enumerate() {
                let v = k[i % k.len()];
                *l |= v != 0.0 && !v.is_nan();
            }
        }
        if let Some(d) = self.max_distance {
            let context = window.expand(d, data.height(), data.width());
            let values = data.read_window(context).await?.values;
            let (ch, cw) = (context.height as usize, context.width as usize);
            let inner = window.within(&context);
            let limit = (d * d) as f64;
            for (p, source) in values.chunks_exact(ch * cw).enumerate() {
                let observed: Vec<bool> = source.iter().map(|v| !v.is_nan()).collect();
                let far: Vec<bool> = match tiling::squared_distance(&observed, ch, cw) {
                    Some(sq) => sq.iter().map(|&s| s > limit).collect(),
                    None => vec![true; ch * cw],
                };
                let far = Window::new(0, 0, context.height, context.width).crop(&far, 1, &inner);
                for (l, f) in leave[p * plane..(p + 1) * plane].iter_mut().zip(far) {
                    *l |= f;
                }
            }
        }
        Ok(leave)
    }
}
