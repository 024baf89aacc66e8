//! GeoTIFF decoding for `terrafill import`: the pixels as float32 `[band, y, x]` with no-data as
//! NaN, and the georeferencing (EPSG code, geotransform) from the GeoTIFF tags.

use std::io::{Read, Seek};

use anyhow::{bail, Context};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

/// GeoTIFF tags (OGC GeoTIFF 1.1) and GDAL's no-data tag.
const MODEL_PIXEL_SCALE: u16 = 33550;
const MODEL_TIEPOINT: u16 = 33922;
const MODEL_TRANSFORMATION: u16 = 34264;
const GEO_KEY_DIRECTORY: u16 = 34735;
const GDAL_NODATA: u16 = 42113;
/// GeoKeys naming the coordinate reference system by EPSG code.
const PROJECTED_CRS_KEY: u16 = 3072;
const GEOGRAPHIC_CRS_KEY: u16 = 2048;
/// A GeoKey value meaning "user-defined", which has no EPSG code.
const USER_DEFINED: u16 = 32767;

/// A decoded GeoTIFF.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// Bands, height, width.
    pub shape: [usize; 3],
    /// `[band, y, x]` values, NaN where the file has its no-data value.
    pub values: Vec<f32>,
    /// GDAL geotransform `[x0, dx, rx, y0, ry, dy]` of the pixel corners, when georeferenced.
    pub geotransform: Option<[f64; 6]>,
    /// `EPSG:n`, when the file names an EPSG code.
    pub crs: Option<String>,
    /// The file's no-data value, when it has one.
    pub nodata: Option<f64>,
}

impl Raster {
    /// Pixel-centre coordinates along x and y (what rioxarray gives), for a north-up raster.
    pub fn coordinates(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let [x0, dx, rx, y0, ry, dy] = self.geotransform?;
        if rx != 0.0 || ry != 0.0 {
            return None; // rotated: no 1-D coordinates
        }
        let [_, h, w] = self.shape;
        let xs = (0..w).map(|i| x0 + (i as f64 + 0.5) * dx).collect();
        let ys = (0..h).map(|j| y0 + (j as f64 + 0.5) * dy).collect();
        Some((xs, ys))
    }
}

/// Decodes the first image of a GeoTIFF (any integer or float sample type, pixel-interleaved).
///
/// # Errors
/// Not a TIFF, an unsupported layout (such as band-interleaved or palette images), or a value
/// count that does not fit the image's shape.
pub fn decode<R: Read + Seek>(reader: R) -> anyhow::Result<Raster> {
    let mut tif = Decoder::new(reader).context("not a TIFF file")?;
    let (w, h) = tif.dimensions()?;
    let (w, h) = (w as usize, h as usize);
    let pixels = tif
        .read_image()
        .context("decoding the image (band-interleaved and palette TIFFs are not supported)")?;
    let interleaved = to_f32(pixels);
    if w * h == 0 || interleaved.len() % (w * h) != 0 {
        bail!("{} samples do not fit a {w}×{h} image", interleaved.len());
    }
    let bands = interleaved.len() / (w * h);
    let nodata = tif
        .get_tag_ascii_string(Tag::Unknown(GDAL_NODATA))
        .ok()
        .and_then(|s| s.trim_matches(char::from(0)).trim().parse::<f64>().ok());
    let mut values = vec![0f32; interleaved.len()];
    for (p, px) in interleaved.chunks_exact(bands).enumerate() {
        for (b, &v) in px.iter().enumerate() {
            let missing = nodata.is_some_and(|n| f64::from(v) == n || (n.is_nan() && v.is_nan()));
            values[b * w * h + p] = if missing { f32::NAN } else { v };
        }
    }
    let geotransform = geotransform(&mut tif);
    let crs = tif
        .get_tag_u16_vec(Tag::Unknown(GEO_KEY_DIRECTORY))
        .ok()
        .and_then(|keys| epsg(&keys))
        .map(|code| format!("EPSG:{code}"));
    Ok(Raster {
        shape: [bands, h, w],
        values,
        geotransform,
        crs,
        nodata,
    })
}

/// Samples as float32 (integers up to 2²⁴ exactly, as every EO sensor's DN are).
fn to_f32(pixels: DecodingResult) -> Vec<f32> {
    match pixels {
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::F16(v) => v.into_iter().map(|x| x.to_f32()).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
    }
}

/// The GDAL geotransform from ModelTransformation, or from a tie point and the pixel scale.
fn geotransform<R: Read + Seek>(tif: &mut Decoder<R>) -> Option<[f64; 6]> {
    if let Ok(m) = tif.get_tag_f64_vec(Tag::Unknown(MODEL_TRANSFORMATION)) {
        if m.len() >= 8 {
            return Some([m[3], m[0], m[1], m[7], m[4], m[5]]);
        }
    }
    let tie = tif.get_tag_f64_vec(Tag::Unknown(MODEL_TIEPOINT)).ok()?;
    let scale = tif.get_tag_f64_vec(Tag::Unknown(MODEL_PIXEL_SCALE)).ok()?;
    if tie.len() < 6 || scale.len() < 2 {
        return None;
    }
    let (i, j, x, y) = (tie[0], tie[1], tie[3], tie[4]);
    let (sx, sy) = (scale[0], scale[1]);
    Some([x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy])
}

/// The EPSG code in a GeoKey directory (projected, else geographic), when stored inline.
fn epsg(keys: &[u16]) -> Option<u16> {
    let count = usize::from(*keys.get(3)?);
    let entries: Vec<&[u16]> = keys.get(4..4 + 4 * count)?.chunks_exact(4).collect();
    let inline = |id: u16| {
        entries
            .iter()
            .find(|e| e[0] == id && e[1] == 0)
            .map(|e| e[3])
            .filter(|&v| v != 0 && v != USER_DEFINED)
    };
    inline(PROJECTED_CRS_KEY).or_else(|| inline(GEOGRAPHIC_CRS_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projected_code_wins_over_the_geographic_one() {
        // Version 1.1.0, 3 keys: raster type, geographic 4326, projected 32618.
        let keys = [
            1, 1, 0, 3, 1025, 0, 1, 1, 2048, 0, 1, 4326, 3072, 0, 1, 32618,
        ];
        assert_eq!(epsg(&keys), Some(32618));
        let geographic_only = [1, 1, 0, 1, 2048, 0, 1, 4326];
        assert_eq!(epsg(&geographic_only), Some(4326));
        let user_defined = [1, 1, 0, 1, 3072, 0, 1, USER_DEFINED];
        assert_eq!(epsg(&user_defined), None);
        assert_eq!(epsg(&[1, 1, 0, 5]), None, "a truncated directory");
    }

    #[test]
    fn pixel_centres_follow_the_geotransform() {
        let r = Raster {
            shape: [1, 2, 3],
            values: vec![0.0; 6],
            geotransform: Some([100.0, 30.0, 0.0, 500.0, 0.0, -30.0]),
            crs: None,
            nodata: None,
        };
        let (xs, ys) = r.coordinates().expect("north-up");
        assert_eq!(xs, vec![115.0, 145.0, 175.0]);
        assert_eq!(ys, vec![485.0, 455.0]);
    }
}
