//! The scenes a model trains on, read window by window: training never holds a scene whole.
//!
//! A [`SceneSource`] reads rectangles of any of its scenes (the worker's reads Zarr through
//! zarr-io and its chunk cache; [`Corpus::in_memory`] wraps arrays already in memory). A
//! [`Corpus`] checks that the scenes can train one model and keeps the scan of their windows
//! ([`crate::scan`]) so that the rounds of a run scan each scene once.
//!
//! Scenes must share their band count. Ranks may differ: when every scene has a time axis the
//! model conditions on other dates; when any scene is `[band, y, x]`, the model is a single-image
//! one and every date of a time series is one more image to learn from.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::layout::Layout;
use crate::scan::Scan;
use crate::{ModelError, SceneArray};

/// Scenes read by rectangle. Reads of one corpus may run on several threads at once.
pub trait SceneSource: Send + Sync {
    /// Number of scenes.
    fn len(&self) -> usize;

    /// Whether there is no scene.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of scene `part`: `[band, y, x]` or `[time, band, y, x]`.
    fn shape(&self, part: usize) -> Vec<usize>;

    /// How errors name scene `part` (its URL).
    fn name(&self, part: usize) -> String;

    /// Sampling weight of a window of scene `part` relative to another scene's (default 1:
    /// windows are drawn uniformly over the corpus, so a scene is drawn in proportion to its
    /// windows). Finite and positive.
    fn weight(&self, _part: usize) -> f64 {
        1.0
    }

    /// Values in data units (NaN = missing) of dates `dates` (0..1 for `[band, y, x]`), every
    /// band, over `rect` = (y0, x0, h, w), rows `y0..y0 + h` and columns `x0..x0 + w`: `dates.len() · bands · h · w` values,
    /// row-major.
    ///
    /// # Errors
    /// [`ModelError::Read`] naming the scene when its store fails.
    fn read(
        &self,
        part: usize,
        dates: Range<usize>,
        rect: (usize, usize, usize, usize),
    ) -> Result<Vec<f32>, ModelError>;
}

/// Arrays already in memory.
struct InMemory(Vec<SceneArray>);

impl SceneSource for InMemory {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn shape(&self, part: usize) -> Vec<usize> {
        self.0[part].shape.clone()
    }

    fn name(&self, part: usize) -> String {
        format!("scene {}", part + 1)
    }

    fn read(
        &self,
        part: usize,
        dates: Range<usize>,
        (y0, x0, h, w): (usize, usize, usize, usize),
    ) -> Result<Vec<f32>, ModelError> {
        let scene = &self.0[part];
        // Checked in `Corpus::in_memory`.
        let l = Layout::from_shape(&scene.shape, scene.values.len())?;
        let mut out = Vec::with_capacity(dates.len() * l.bands * h * w);
        for date in dates {
            for band in 0..l.bands {
                let plane = &scene.values[l.plane_offset(date, band)..][..l.plane()];
                for y in y0..y0 + h {
                    out.extend_from_slice(&plane[y * l.width + x0..][..w]);
                }
            }
        }
        Ok(out)
    }
}

/// Scenes that train one model, with their layouts and the memo of their scan.
pub struct Corpus {
    source: Box<dyn SceneSource>,
    layouts: Vec<Layout>,
    /// Whether every scene has a time axis (the model then conditions on other dates).
    has_time: bool,
    /// The last scan, for its tile and minimum observed fraction.
    scan: Mutex<Option<Arc<Scan>>>,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corpus")
            .field("layouts", &self.layouts)
            .field("has_time", &self.has_time)
            .finish_non_exhaustive()
    }
}

impl Corpus {
    /// The scenes of `source`, which must share their band count.
    ///
    /// # Errors
    /// [`ModelError::Config`] without a scene, [`ModelError::Shape`] naming a scene of another
    /// rank than 3 or 4, or whose band count differs from the first's.
    pub fn new(source: Box<dyn SceneSource>) -> Result<Self, ModelError> {
        if source.is_empty() {
            return Err(ModelError::Config {
                field: "scenes",
                reason: "no scene to train on".into(),
            });
        }
        let mut layouts = Vec::with_capacity(source.len());
        for part in 0..source.len() {
            let shape = source.shape(part);
            let l = Layout::from_shape(&shape, shape.iter().product()).map_err(|e| match e {
                ModelError::Shape { expected, got, .. } => ModelError::Shape {
                    what: format!("dimensions of {}", source.name(part)),
                    expected,
                    got,
                },
                other => other,
            })?;
            if let Some(first) = layouts.first().map(|f: &Layout| f.bands) {
                if l.bands != first {
                    return Err(ModelError::Shape {
                        what: format!(
                            "bands of {} vs {} (one model trains on scenes with the same bands)",
                            source.name(part),
                            source.name(0)
                        ),
                        expected: vec![first],
                        got: vec![l.bands],
                    });
                }
            }
            let weight = source.weight(part);
            if !(weight.is_finite() && weight > 0.0) {
                return Err(ModelError::Config {
                    field: "weight",
                    reason: format!(
                        "{}: sampling weight {weight} (finite and > 0)",
                        source.name(part)
                    ),
                });
            }
            layouts.push(l);
        }
        let has_time = layouts.iter().all(|l| l.has_time);
        Ok(Self {
            source,
            layouts,
            has_time,
            scan: Mutex::new(None),
        })
    }

    /// Arrays already in memory.
    ///
    /// # Errors
    /// As [`Corpus::new`], and [`ModelError::Shape`] when an array's values do not fit its shape.
    pub fn in_memory(scenes: Vec<SceneArray>) -> Result<Self, ModelError> {
        for s in &scenes {
            Layout::from_shape(&s.shape, s.values.len())?;
        }
        Self::new(Box::new(InMemory(scenes)))
    }

    /// The scenes' layouts.
    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }

    /// Bands per date (every scene's).
    pub fn bands(&self) -> usize {
        self.layouts[0].bands
    }

    /// Whether the model conditions on other dates (every scene has a time axis).
    pub fn has_time(&self) -> bool {
        self.has_time
    }

    /// The model's leading dimensions: `[times, bands]` (times of the shortest series) or
    /// `[bands]`.
    pub(crate) fn lead_shape(&self) -> Vec<usize> {
        if self.has_time {
            let times = self.layouts.iter().map(|l| l.times).min().unwrap_or(1);
            vec![times, self.bands()]
        } else {
            vec![self.bands()]
        }
    }

    /// Height and width of the smallest scene (by its shorter side).
    pub fn smallest(&self) -> (usize, usize) {
        self.layouts
            .iter()
            .map(|l| (l.height, l.width))
            .min_by_key(|&(h, w)| h.min(w))
            .unwrap_or_default()
    }

    /// Training windows of each scene for `tile`-px tiles at least `min_observed` observed, and
    /// the share of training samples drawn from it (weight × windows, normalised). Scans on
    /// first use, as training does.
    ///
    /// # Errors
    /// As [`Scan::new`].
    pub fn draw_shares(
        &self,
        tile: usize,
        min_observed: f32,
    ) -> Result<Vec<(u64, f64)>, ModelError> {
        let windows = self
            .scan(tile, min_observed)?
            .windows_per_scene(self.layouts.len());
        let mass: Vec<f64> = windows
            .iter()
            .enumerate()
            .map(|(p, &n)| self.source.weight(p) * n as f64)
            .collect();
        let total: f64 = mass.iter().sum();
        Ok(windows
            .into_iter()
            .zip(mass.iter().map(|m| m / total))
            .collect())
    }

    pub(crate) fn source(&self) -> &dyn SceneSource {
        self.source.as_ref()
    }

    /// The scan of the scenes for `tile`-px windows at least `min_observed` observed, made on
    /// first use and kept for the next call with the same settings.
    ///
    /// # Errors
    /// As [`Scan::new`].
    pub(crate) fn scan(&self, tile: usize, min_observed: f32) -> Result<Arc<Scan>, ModelError> {
        let mut memo = self.scan.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = memo.as_ref().filter(|s| s.matches(tile, min_observed)) {
            return Ok(s.clone());
        }
        let scan = Arc::new(Scan::new(self, tile, min_observed)?);
        *memo = Some(scan.clone());
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_reads_rectangles_of_the_dates_asked_for() -> anyhow::Result<()> {
        // 2 dates × 1 band × 3×4, values = index.
        let values: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let c = Corpus::in_memory(vec![SceneArray {
            shape: vec![2, 1, 3, 4],
            values,
        }])?;
        assert_eq!(
            c.source().read(0, 1..2, (1, 2, 2, 2))?,
            vec![18.0, 19.0, 22.0, 23.0]
        );
        assert_eq!(c.lead_shape(), vec![2, 1]);
        Ok(())
    }

    #[test]
    fn ranks_may_mix_but_bands_may_not() -> anyhow::Result<()> {
        let series = SceneArray {
            shape: vec![2, 3, 4, 4],
            values: vec![0.0; 96],
        };
        let image = SceneArray {
            shape: vec![3, 4, 4],
            values: vec![0.0; 48],
        };
        let mixed = Corpus::in_memory(vec![series.clone(), image])?;
        assert!(
            !mixed.has_time(),
            "a single image makes a single-image model"
        );
        assert_eq!(mixed.lead_shape(), vec![3]);
        let two = SceneArray {
            shape: vec![2, 4, 4],
            values: vec![0.0; 32],
        };
        let err = Corpus::in_memory(vec![series, two])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bands of scene 2 vs scene 1"), "{err}");
        assert!(Corpus::in_memory(Vec::new()).is_err());
        Ok(())
    }

    /// Records the largest read (values).
    struct Counting {
        inner: InMemory,
        largest: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SceneSource for Counting {
        fn len(&self) -> usize {
            self.inner.len()
        }
        fn shape(&self, part: usize) -> Vec<usize> {
            self.inner.shape(part)
        }
        fn name(&self, part: usize) -> String {
            self.inner.name(part)
        }
        fn read(
            &self,
            part: usize,
            dates: Range<usize>,
            rect: (usize, usize, usize, usize),
        ) -> Result<Vec<f32>, ModelError> {
            let v = self.inner.read(part, dates, rect)?;
            self.largest
                .fetch_max(v.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(v)
        }
    }

    #[test]
    fn training_reads_windows_and_blocks_never_the_whole_scene() -> anyhow::Result<()> {
        // 2 bands × 600 × 1400: the scan reads blocks of 512² plus a tile and a margin, samples one
        // context window each.
        let (h, w) = (600, 1400);
        let values: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i % w) as f32 * 0.05).sin() + (i / w % h) as f32 * 0.01)
            .collect();
        let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let source = Counting {
            inner: InMemory(vec![SceneArray {
                shape: vec![2, h, w],
                values,
            }]),
            largest: largest.clone(),
        };
        let corpus = Corpus::new(Box::new(source))?;
        let mut cfg = crate::Preset::Small.train_config();
        (cfg.tile, cfg.steps, cfg.batch, cfg.calibration_windows) = (16, 2, 2, 1);
        crate::train(&corpus, &cfg, None, &crate::Device::Cpu, &mut |_| {})?;
        let read = largest.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read > 0);
        assert!(
            read <= 2 * (512 + 2 * 16) * (512 + 2 * 16),
            "{read} values in one read"
        );
        assert!(
            read * 2 < 2 * h * w,
            "a read of {read} values is most of the scene"
        );
        Ok(())
    }
}
