//! Zarr fixtures written as raw metadata JSON and uncompressed chunk bytes through
//! `zarr_io::put_bytes`, so the same fixtures work on every backend.

use bytes::Bytes;
use serde_json::{json, Value};

/// Element types the fixtures can encode (little-endian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dtype {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
}

impl Dtype {
    pub const ALL_NUMERIC: [Dtype; 11] = [
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::F16,
        Dtype::F32,
        Dtype::F64,
    ];

    /// Zarr v3 data type name.
    pub fn v3_name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Zarr v2 (numpy) type string.
    pub fn v2_name(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
    }

    /// Little-endian bytes of `v` in this type (`as` casts).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            Dtype::U8 => out.extend((v as u8).to_le_bytes()),
            Dtype::U16 => out.extend((v as u16).to_le_bytes()),
            Dtype::U32 => out.extend((v as u32).to_le_bytes()),
            Dtype::U64 => out.extend((v as u64).to_le_bytes()),
            Dtype::I8 => out.extend((v as i8).to_le_bytes()),
            Dtype::I16 => out.extend((v as i16).to_le_bytes()),
            Dtype::I32 => out.extend((v as i32).to_le_bytes()),
            Dtype::I64 => out.extend((v as i64).to_le_bytes()),
            Dtype::F16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            Dtype::F32 => out.extend((v as f32).to_le_bytes()),
            Dtype::F64 => out.extend(v.to_le_bytes()),
        }
    }
}

/// A Zarr array fixture: metadata plus the full array's values (row-major, as f64).
#[derive(Debug, Clone)]
pub struct ArrayFixture {
    pub name: String,
    pub shape: Vec<u64>,
    pub chunks: Vec<u64>,
    pub dtype: Dtype,
    /// Zarr fill value as a number (JSON).
    pub fill: f64,
    pub attributes: Value,
    pub dimension_names: Option<Vec<String>>,
    /// Chunk grid indices whose chunk is not written (reads as the fill value).
    pub skip_chunks: Vec<Vec<u64>>,
}

impl ArrayFixture {
    pub fn new(name: &str, shape: &[u64], chunks: &[u64], dtype: Dtype) -> Self {
        ArrayFixture {
            name: name.to_owned(),
            shape: shape.to_vec(),
            chunks: chunks.to_vec(),
            dtype,
            fill: 0.0,
            attributes: json!({}),
            dimension_names: None,
            skip_chunks: Vec::new(),
        }
    }

    fn fill_json(&self) -> Value {
        if self.dtype.is_float() {
            json!(self.fill)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            let v = self.fill as i64;
            json!(v)
        }
    }

    /// Chunk byte payloads keyed by chunk grid indices (edge chunks padded with the fill value).
    fn chunk_payloads(&self, values: &[f64]) -> Vec<(Vec<u64>, Vec<u8>)> {
        let rank = self.shape.len();
        let grid: Vec<u64> = self
            .shape
            .iter()
            .zip(&self.chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect();
        let n_chunks: u64 = grid.iter().product();
        let chunk_len: u64 = self.chunks.iter().product();
        let mut out = Vec::new();
        for linear in 0..n_chunks {
            let cidx = unravel(linear, &grid);
            if self.skip_chunks.contains(&cidx) {
                continue;
            }
            let mut bytes = Vec::new();
            for e in 0..chunk_len {
                let local = unravel(e, &self.chunks);
                let global: Vec<u64> = (0..rank)
                    .map(|d| cidx[d] * self.chunks[d] + local[d])
                    .collect();
                let inside = global.iter().zip(&self.shape).all(|(g, s)| g < s);
                let v = if inside {
                    values[ravel(&global, &self.shape)]
                } else {
                    self.fill
                };
                self.dtype.encode(v, &mut bytes);
            }
            out.push((cidx, bytes));
        }
        out
    }
}

fn unravel(mut i: u64, shape: &[u64]) -> Vec<u64> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn ravel(idx: &[u64], shape: &[u64]) -> usize {
    let mut i = 0u64;
    for (x, s) in idx.iter().zip(shape) {
        i = i * s + x;
    }
    usize::try_from(i).unwrap_or(usize::MAX)
}

async fn put_json(url: String, v: &Value) -> anyhow::Result<()> {
    zarr_io::put_bytes(&url, Bytes::from(serde_json::to_vec_pretty(v)?)).await?;
    Ok(())
}

/// Write a Zarr v3 group with `attributes` at `base`.
pub async fn write_v3_group(base: &str, attributes: Value) -> anyhow::Result<()> {
    put_json(
        format!("{base}/zarr.json"),
        &json!({"zarr_format": 3, "node_type": "group", "attributes": attributes}),
    )
    .await
}

/// Write a Zarr v3 array (uncompressed `bytes` codec) with `values` below `base`.
pub async fn write_v3_array(base: &str, a: &ArrayFixture, values: &[f64]) -> anyhow::Result<()> {
    let mut meta = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": a.shape,
        "data_type": a.dtype.v3_name(),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": a.chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": a.fill_json(),
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": a.attributes,
    });
    if let (Some(names), Some(obj)) = (&a.dimension_names, meta.as_object_mut()) {
        obj.insert("dimension_names".into(), json!(names));
    }
    put_json(format!("{base}/{}/zarr.json", a.name), &meta).await?;
    for (cidx, bytes) in a.chunk_payloads(values) {
        let key: Vec<String> = cidx.iter().map(u64::to_string).collect();
        zarr_io::put_bytes(
            &format!("{base}/{}/c/{}", a.name, key.join("/")),
            Bytes::from(bytes),
        )
        .await?;
    }
    Ok(())
}

/// Write a Zarr v2 group (`.zgroup`, `.zattrs`) at `base`.
pub async fn write_v2_group(base: &str, attributes: Value) -> anyhow::Result<()> {
    put_json(format!("{base}/.zgroup"), &json!({"zarr_format": 2})).await?;
    put_json(format!("{base}/.zattrs"), &attributes).await
}

/// Write a Zarr v2 array (`"compressor": null`, C order, `.` separator) with `values`; its
/// dimension names go to xarray's `_ARRAY_DIMENSIONS` attribute.
pub async fn write_v2_array(base: &str, a: &ArrayFixture, values: &[f64]) -> anyhow::Result<()> {
    put_json(
        format!("{base}/{}/.zarray", a.name),
        &json!({
            "zarr_format": 2,
            "shape": a.shape,
            "chunks": a.chunks,
            "dtype": a.dtype.v2_name(),
            "compressor": null,
            "fill_value": a.fill_json(),
            "filters": null,
            "order": "C",
        }),
    )
    .await?;
    let mut attrs = a.attributes.clone();
    if let (Some(names), Some(obj)) = (&a.dimension_names, attrs.as_object_mut()) {
        obj.insert("_ARRAY_DIMENSIONS".into(), json!(names));
    }
    put_json(format!("{base}/{}/.zattrs", a.name), &attrs).await?;
    for (cidx, bytes) in a.chunk_payloads(values) {
        let key: Vec<String> = cidx.iter().map(u64::to_string).collect();
        zarr_io::put_bytes(
            &format!("{base}/{}/{}", a.name, key.join(".")),
            Bytes::from(bytes),
        )
        .await?;
    }
    Ok(())
}

/// `n` values `0, 1, 2, ...` as f64.
pub fn ramp(n: u64) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}
