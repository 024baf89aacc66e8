//! The missing pixels a job leaves missing: those its keep array marks (a scene's no-data
//! collar) and those farther than its maximum distance from every observed pixel of their plane
//! (GDAL FillNodata's `-md`). Decided per output chunk, from the input alone, so every chunk
//! decides the same whichever tiles cover it.

use tiling::Window;
use wire::v1::JobSpec;
use zarr_io::{Scene, ZarrIoError};

/// What a job leaves alone; `None` from [`LeaveAlone::open`] when it fills every gap.
pub(crate) struct LeaveAlone {
    keep: Option<Scene>,
    max_distance: Option<u64>,
}

impl LeaveAlone {
    /// The job's rule, opening its keep array.
    ///
    /// # Errors
    /// The keep array cannot be opened, or fits neither the data's shape nor its [y, x].
    pub(crate) async fn open(spec: &JobSpec, data: &Scene) -> Result<Option<Self>, ZarrIoError> {
        let keep = match spec.keep_array.as_str() {
            "" => None,
            name => Some(Scene::open(&spec.input_url, name, None).await?),
        };
        if let Some(k) = &keep {
            let yx = &data.shape()[data.shape().len() - 2..];
            if k.shape() != data.shape() && k.shape() != yx {
                return Err(ZarrIoError::MaskShape {
                    url: spec.input_url.clone(),
                    mask: spec.keep_array.clone(),
                    mask_shape: k.shape().to_vec(),
                    data_shape: data.shape().to_vec(),
                });
            }
        }
        let max_distance = (spec.max_distance > 0).then_some(spec.max_distance);
        Ok((keep.is_some() || max_distance.is_some()).then_some(Self { keep, max_distance }))
    }

    /// For the `[lead, window]` values of chunk `window`: whether each stays missing.
    ///
    /// # Errors
    /// Reading the keep array or the context around the chunk fails.
    pub(crate) async fn mask(
        &self,
        data: &Scene,
        window: Window,
    ) -> Result<Vec<bool>, ZarrIoError> {
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
            for (p, source) in values.chunks_exact(ch * cw).enumerate() {
                let observed: Vec<bool> = source.iter().map(|v| !v.is_nan()).collect();
                let limit = (d * d) as f64;
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
