//! Training scenes read through zarr-io, window by window ([`model::SceneSource`]): a training
//! process never holds a scene whole, only the decoded chunks its [`ChunkCache`] keeps (a byte
//! limit) and the scan's bit index of windows.
//!
//! A scene is named by a *scene spec*: its URL, optionally followed by a fragment of `&`-joined
//! settings: `bands=I,J,…` trains on those bands (0-based, in that order), so that scenes that
//! store the same bands in another order, or one more, train one model
//! (`landsat_series.zarr#bands=2,1,0`); `weight=W` draws the scene's windows W times as often
//! as another scene's (default 1: uniform over the corpus's windows), as in
//! `landsat_series.zarr#bands=2,3,0&weight=0.3`.

use std::ops::Range;
use std::sync::Arc;

use zarr_io::{ChunkCache, Scene, Window, ZarrIoError};

/// Why a training corpus could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A scene spec that does not parse or asks for bands the scene lacks.
    #[error("scene '{spec}': {reason}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ZarrIoError),
    /// The scenes cannot train one model (bands differ, say).
    #[error(transparent)]
    Model(#[from] model::ModelError),
}

/// A scene URL, the bands to train on and its sampling weight.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSpec {
    /// Where the scene is.
    pub url: String,
    /// The bands to take, in order (`None`: all).
    pub bands: Option<Vec<usize>>,
    /// Sampling weight of each of its windows (finite, > 0; default 1).
    pub weight: f64,
}

impl SceneSpec {
    /// Parses `URL`, `URL#bands=I,J,…`, `URL#weight=W` or `URL#bands=I,J,…&weight=W`. A `#`
    /// followed by anything else is part of the URL.
    ///
    /// # Errors
    /// [`CorpusError::Spec`] for an empty URL, an empty or malformed band list, a band named
    /// twice, a weight that is not a positive number, or a setting named twice or unknown.
    pub fn parse(spec: &str) -> Result<Self, CorpusError> {
        let bad = |reason: &str| CorpusError::Spec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (url, fragment) = match spec.rsplit_once('#') {
            Some((url, f)) if f.starts_with("bands=") || f.starts_with("weight=") => (url, f),
            _ => (spec, ""),
        };
        let (mut bands, mut weight) = (None, None);
        for setting in fragment.split('&').filter(|s| !s.is_empty()) {
            match setting.split_once('=') {
                Some(("bands", list)) if bands.is_none() => bands = Some(parse_bands(list, bad)?),
                Some(("weight", w)) if weight.is_none() => {
                    weight = Some(
                        w.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|w| w.is_finite() && *w > 0.0)
                            .ok_or_else(|| {
                                bad("weight= takes a positive number, as in weight=0.5")
                            })?,
                    );
                }
                Some(("bands" | "weight", _)) => return Err(bad("a setting is given twice")),
                _ => {
                    return Err(bad(
                        "unknown setting after '#' (the settings are bands=I,J,… and weight=W, \
                         joined by &)",
                    ))
                }
            }
        }
        if url.is_empty() {
            return Err(bad("no URL"));
        }
        Ok(Self {
            url: url.to_string(),
            bands,
            weight: weight.unwrap_or(1.0),
        })
    }
}

/// The band list of `bands=`: 0-based indices, each once.
fn parse_bands(list: &str, bad: impl Fn(&str) -> CorpusError) -> Result<Vec<usize>, CorpusError> {
    let bands = list
        .split(',')
        .map(|b| b.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("bands= takes 0-based band indices, as in #bands=2,1,0"))?;
    let mut seen = bands.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != bands.len() {
        return Err(bad("a band is named twice in bands="));
    }
    Ok(bands)
}

/// An opened scene and how the model sees it.
struct Opened {
    scene: Scene,
    spec: String,
    /// Dates (1 without a time axis) and bands stored.
    stored: (usize, usize),
    has_time: bool,
    /// Stored band of each model band.
    bands: Vec<usize>,
    weight: f64,
}

/// Scenes in Zarr read by rectangle on the calling (blocking) thread.
struct ZarrSource {
    scenes: Vec<Opened>,
    runtime: tokio::runtime::Handle,
}

/// Opens the scenes of `specs` (their `array`, with `mask_array` where given) as a training
/// corpus whose reads go through `cache`, keyed under `namespace` and each scene's URL. Call from
/// a runtime; train on a blocking thread ([`tokio::task::spawn_blocking`]): reads block on the
/// runtime they were opened in.
///
/// # Errors
/// [`CorpusError`] naming the spec or scene at fault.
pub async fn open_corpus(
    specs: &[String],
    array: &str,
    mask_array: Option<&str>,
    cache: Arc<ChunkCache>,
    namespace: &str,
) -> Result<model::Corpus, CorpusError> {
    let mut scenes = Vec::with_capacity(specs.len());
    for raw in specs {
        let spec = SceneSpec::parse(raw)?;
        let scene = Scene::open(&spec.url, array, mask_array)
            .await?
            .share_chunks(cache.clone(), &format!("{namespace}\n{}", spec.url));
        let shape: Vec<usize> = scene.shape().iter().map(|&d| d as usize).collect();
        let (stored, has_time) = match shape[..] {
            [_, _] => ((1, 1), false),
            [b, _, _] => ((1, b), false),
            [t, b, _, _] => ((t, b), true),
            _ => {
                return Err(CorpusError::Spec {
                    spec: raw.clone(),
                    reason: format!(
                        "array '{array}' has shape {shape:?}: training takes [y, x], \
                         [band, y, x] or [time, band, y, x]"
                    ),
                })
            }
        };
        let bands = spec.bands.unwrap_or_else(|| (0..stored.1).collect());
        if let Some(&b) = bands.iter().find(|&&b| b >= stored.1) {
            return Err(CorpusError::Spec {
                spec: raw.clone(),
                reason: format!("band {b} asked for, the scene has {} (0-based)", stored.1),
            });
        }
        scenes.push(Opened {
            scene,
            spec: raw.clone(),
            stored,
            has_time,
            bands,
            weight: spec.weight,
        });
    }
    let source = ZarrSource {
        scenes,
        runtime: tokio::runtime::Handle::current(),
    };
    Ok(model::Corpus::new(Box::new(source))?)
}

impl model::SceneSource for ZarrSource {
    fn len(&self) -> usize {
        self.scenes.len()
    }

    fn shape(&self, part: usize) -> Vec<usize> {
        let o = &self.scenes[part];
        let (h, w) = (o.scene.height() as usize, o.scene.width() as usize);
        if o.has_time {
            vec![o.stored.0, o.bands.len(), h, w]
        } else {
            vec![o.bands.len(), h, w]
        }
    }

    fn name(&self, part: usize) -> String {
        self.scenes[part].spec.clone()
    }

    fn weight(&self, part: usize) -> f64 {
        self.scenes[part].weight
    }

    fn read(
        &self,
        part: usize,
        dates: Range<usize>,
        (y0, x0, h, w): (usize, usize, usize, usize),
    ) -> Result<Vec<f32>, model::ModelError> {
        let o = &self.scenes[part];
        let window = Window::new(y0 as u64, x0 as u64, h as u64, w as u64);
        // Only the dates asked for leave the cache (a 744-date series reads a few planes).
        let planes = dates.start * o.stored.1..dates.end * o.stored.1;
        let first = planes.start;
        let values = self
            .runtime
            .block_on(o.scene.read_planes(window, planes))
            .map_err(|e| model::ModelError::Read {
                scene: o.spec.clone(),
                reason: e.to_string(),
            })?;
        let plane = h * w;
        let mut out = Vec::with_capacity(dates.len() * o.bands.len() * plane);
        for date in dates {
            for &band in &o.bands {
                let at = (date * o.stored.1 + band) * plane - first * plane;
                out.extend_from_slice(&values[at..at + plane]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_specs_parse_urls_and_band_lists() -> Result<(), CorpusError> {
        assert_eq!(
            SceneSpec::parse("s3://b/x.zarr#bands=2,1,0")?,
            SceneSpec {
                url: "s3://b/x.zarr".into(),
                bands: Some(vec![2, 1, 0]),
                weight: 1.0,
            }
        );
        assert_eq!(
            SceneSpec::parse("x.zarr#weight=0.25&bands=1")?,
            SceneSpec {
                url: "x.zarr".into(),
                bands: Some(vec![1]),
                weight: 0.25,
            }
        );
        let plain = SceneSpec::parse("/d/x.zarr")?;
        assert_eq!((plain.bands, plain.weight), (None, 1.0));
        // A '#' before anything but a setting belongs to the URL.
        assert_eq!(SceneSpec::parse("/d/#1.zarr")?.url, "/d/#1.zarr");
        for bad in [
            "x.zarr#bands=",
            "x.zarr#bands=1,a",
            "x.zarr#bands=1,1",
            "#bands=0",
            "x.zarr#weight=0",
            "x.zarr#weight=-1",
            "x.zarr#weight=NaN",
            "x.zarr#weight=1&weight=2",
            "x.zarr#bands=0&colour=red",
        ] {
            let err = SceneSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        Ok(())
    }
}
