//! Reading a scene: whole windows (every leading plane), padded windows, and the leading planes
//! of a window out of the shared chunk cache, with missing pixels as NaN.

use std::ops::Range;

use tiling::{ChunkGrid, Window};
use zarrs::array::{ArrayError, ArraySubset};

use super::{to_usize, Scene, Shared, TileData};
use crate::chunk_cache::Cell;
use crate::convert::{check_window, read_error, read_f32, window_subset};
use crate::error::ZarrIoError;
use crate::pad::reflect_pad;

impl Scene {
    /// Read all leading dimensions × window `w` as `f32`, missing pixels as NaN.
    ///
    /// Missing means: NaN; equal to the `_FillValue` / `missing_value` / `nodata` attribute (the
    /// array's, else the group's); equal to the Zarr fill value when that is nonzero (a zero fill
    /// value is zarr's default and would turn every legitimate zero into a gap; chunks absent from
    /// the store read as the fill value); or a nonzero mask value. Float32 values are returned
    /// bit-exactly. Only the chunks the window touches are fetched.
    ///
    /// # Errors
    /// [`ZarrIoError::WindowOutOfBounds`] when `w` is not inside the scene, [`ZarrIoError::Read`]
    /// when fetching or decoding fails.
    pub async fn read_window(&self, w: Window) -> Result<TileData, ZarrIoError> {
        self.check_window(w)?;
        let rank = self.shape().len();
        let mut shape: Vec<usize> = self.shape()[..rank - 2]
            .iter()
            .map(|&d| to_usize(d))
            .collect();
        shape.extend([to_usize(w.height), to_usize(w.width)]);
        if w.height == 0 || w.width == 0 {
            return Ok(TileData {
                shape,
                values: Vec::new(),
            });
        }
        let subset = self.subset(w, rank);
        let read_err = |array: &str| {
            let (url, array) = (self.url.clone(), array.to_owned());
            move |e| read_error(&url, &array, w, e)
        };
        let data = async {
            match &self.shared {
                Some(shared) => {
                    self.read_cells(shared, w, 0..to_usize(self.lead_len()))
                        .await
                }
                None => read_f32(&self.data, &subset, Some(&self.rule)).await,
            }
            .map_err(read_err(&self.array_name))
        };
        let mask = async {
            match &self.mask {
                Some(m) => {
                    let rank = m.array.shape().len();
                    let sub = self.subset(w, rank);
                    read_f32(&m.array, &sub, None)
                        .await
                        .map(Some)
                        .map_err(read_err(&m.name))
                }
                None => Ok(None),
            }
        };
        let (mut values, mask) = futures::try_join!(data, mask)?;
        if let (Some(mask), Some(m)) = (mask, &self.mask) {
            if let Some(i) = mask.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(ZarrIoError::BadMask {
                    url: self.url.clone(),
                    mask: m.name.clone(),
                    at: self.describe_position(w, m.array.shape().len(), i),
                    value: mask[i],
                });
            }
            // A broadcast mask holds one plane; `cycle` repeats it over the leading dimensions.
            for (v, m) in values.iter_mut().zip(mask.iter().cycle()) {
                if *m != 0.0 {
                    *v = f32::NAN;
                }
            }
        }
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(ZarrIoError::NonFinite {
                url: self.url.clone(),
                array: self.array_name.clone(),
                at: self.describe_position(w, rank, i),
                value: values[i],
            });
        }
        Ok(TileData { shape, values })
    }

    /// The leading planes `planes` (flattened leading index, e.g. date · bands + band) of window
    /// `w`: the values [`Scene::read_window`] gives for them, bit for bit, without copying the
    /// other planes out of the shared cells (a training window of one date of a 744-date series
    /// reads one plane, not 744). Without shared cells, or with a mask array, it reads the
    /// window and keeps the planes.
    ///
    /// # Errors
    /// As [`Scene::read_window`], and [`ZarrIoError::WindowOutOfBounds`] for planes past the
    /// leading dimensions.
    pub async fn read_planes(
        &self,
        w: Window,
        planes: Range<usize>,
    ) -> Result<Vec<f32>, ZarrIoError> {
        let lead = to_usize(self.lead_len());
        if planes.start > planes.end || planes.end > lead {
            return Err(ZarrIoError::WindowOutOfBounds {
                url: self.url.clone(),
                array: self.array_name.clone(),
                window: w,
                shape: self.shape().to_vec(),
            });
        }
        let area = to_usize(w.area());
        let (Some(shared), None) = (&self.shared, &self.mask) else {
            let all = self.read_window(w).await?.values;
            return Ok(all[planes.start * area..planes.end * area].to_vec());
        };
        self.check_window(w)?;
        let values = self
            .read_cells(shared, w, planes.clone())
            .await
            .map_err(|source| ZarrIoError::Read {
                url: self.url.clone(),
                array: self.array_name.clone(),
                window: w,
                source: Box::new(source),
            })?;
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(ZarrIoError::NonFinite {
                url: self.url.clone(),
                array: self.array_name.clone(),
                at: self.describe_position(w, self.shape().len(), planes.start * area + i),
                value: values[i],
            });
        }
        Ok(values)
    }

    /// The data values of leading planes `planes` of window `w` assembled from shared cells (all
    /// leading dimensions × one chunk of `[y, x]`), each read and converted whole on a miss: the
    /// same values, bit for bit, as one read of the window.
    async fn read_cells(
        &self,
        shared: &Shared,
        w: Window,
        planes: Range<usize>,
    ) -> Result<Vec<f32>, ArrayError> {
        let grid = ChunkGrid::new(
            self.height(),
            self.width(),
            self.chunk_yx.0,
            self.chunk_yx.1,
        );
        let rank = self.shape().len();
        let cells = futures::future::try_join_all(grid.chunks_touching(&w).into_iter().map(|c| {
            let (cy, cx) = grid.position(c);
            let window = grid.window(cy, cx);
            let key = (&shared.namespace, &shared.array, cy, cx);
            let subset = self.subset(window, rank);
            async move {
                let read = || read_f32(&self.data, &subset, Some(&self.rule));
                let cell: Cell = shared.cache.get_or_read(key, read).await?;
                Ok::<_, ArrayError>((window, cell))
            }
        }))
        .await?;
        let mut values = vec![f32::NAN; planes.len() * to_usize(w.area())];
        for (window, cell) in &cells {
            let plane = to_usize(window.area());
            let cell = &cell[planes.start * plane..planes.end * plane];
            tiling::copy_overlap(cell, window, &mut values, &w, planes.len());
        }
        Ok(values)
    }

    /// `dim=index, …` of element `flat` of window `w` read from an array of rank `rank` with the
    /// data's trailing dimensions, for error messages.
    fn describe_position(&self, w: Window, rank: usize, flat: usize) -> String {
        let shape = self.shape();
        let names = self.dimension_names();
        let lead = shape.len() - rank..shape.len() - 2;
        let mut rest = flat as u64;
        let x = w.x0 + rest % w.width.max(1);
        rest /= w.width.max(1);
        let y = w.y0 + rest % w.height.max(1);
        rest /= w.height.max(1);
        let mut index = vec![y, x];
        for &d in shape[lead.clone()].iter().rev() {
            index.insert(0, rest % d.max(1));
            rest /= d.max(1);
        }
        names[lead.start..]
            .iter()
            .zip(index)
            .map(|(name, i)| format!("{name}={i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Read window `w` and pad it by mirror reflection (numpy `reflect`) at the bottom and right
    /// to `out_h`×`out_w`; the window's pixels stay at the top-left. For scenes smaller than a tile.
    ///
    /// # Errors
    /// [`ZarrIoError::InvalidPadding`] when `w` is empty or larger than the output, plus the errors
    /// of [`Scene::read_window`].
    pub async fn read_window_padded(
        &self,
        w: Window,
        out_h: u64,
        out_w: u64,
    ) -> Result<TileData, ZarrIoError> {
        if w.height == 0 || w.width == 0 || out_h < w.height || out_w < w.width {
            return Err(ZarrIoError::InvalidPadding {
                url: self.url.clone(),
                window: w,
                out_h,
                out_w,
            });
        }
        let tile = self.read_window(w).await?;
        let lead = to_usize(self.lead_len());
        let (h, wd, oh, ow) = (
            to_usize(w.height),
            to_usize(w.width),
            to_usize(out_h),
            to_usize(out_w),
        );
        let values = reflect_pad(&tile.values, lead, h, wd, oh, ow);
        let mut shape = tile.shape;
        let n = shape.len();
        shape[n - 2] = oh;
        shape[n - 1] = ow;
        Ok(TileData { shape, values })
    }

    fn check_window(&self, w: Window) -> Result<(), ZarrIoError> {
        check_window(&self.url, &self.array_name, self.shape(), w)
    }

    /// The subset of a rank-`rank` array with the same trailing dimensions as the data: the
    /// leading dimensions whole, then the window.
    fn subset(&self, w: Window, rank: usize) -> ArraySubset {
        let shape = self.shape();
        window_subset(&shape[shape.len() - rank..], w)
    }
}
