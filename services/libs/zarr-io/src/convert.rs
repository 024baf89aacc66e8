//! Reading array windows of any numeric data type as `f32`, with missing values turned into NaN.

use half::{bf16, f16};
use zarrs::array::data_type::{
    BFloat16DataType, BoolDataType, Float16DataType, Float32DataType, Float64DataType,
    Int16DataType, Int32DataType, Int64DataType, Int8DataType, UInt16DataType, UInt32DataType,
    UInt64DataType, UInt8DataType,
};
use zarrs::array::{Array, ArrayError, ArraySubset, DataType, ElementOwned};

use tiling::Window;

use crate::error::ZarrIoError;
use crate::zarr_store::ZarrStore;

/// Which raw values count as missing, besides NaN.
#[derive(Debug, Clone, Default)]
pub(crate) struct MissingRule {
    /// Sentinel values from `_FillValue` / `missing_value` / `nodata` attributes.
    pub sentinels: Vec<f64>,
    /// Whether the array's Zarr fill value counts as missing (only when it is nonzero).
    pub zarr_fill: bool,
}

/// A numeric element type that can be read and converted to `f32`.
trait Sample: ElementOwned + Copy + PartialEq + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    /// `v` in this type, if exactly representable (floats: the nearest value of this type).
    fn from_f64(v: f64) -> Option<Self>;
    fn from_ne_slice(b: &[u8]) -> Option<Self>;
    fn is_nan(self) -> bool;
    fn is_zero(self) -> bool;
}

macro_rules! int_sample {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn to_f32(self) -> f32 { self as f32 }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            fn from_f64(v: f64) -> Option<Self> {
                // Exact only: integral and inside the type's range.
                let in_range = v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64;
                (v.fract() == 0.0 && in_range).then(|| v as $t)
            }
            fn from_ne_slice(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_ne_bytes(b.try_into().ok()?))
            }
            fn is_nan(self) -> bool { false }
            fn is_zero(self) -> bool { self == 0 }
        }
    )*};
}
int_sample!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Sample for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[allow(clippy::cast_possible_truncation)]
    fn from_f64(v: f64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_ne_slice(b: &[u8]) -> Option<Self> {
        Some(f32::from_ne_bytes(b.try_into().ok()?))
    }
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

impl Sample for f64 {
    #[allow(clippy::cast_possible_truncation)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
    fn from_ne_slice(b: &[u8]) -> Option<Self> {
        Some(f64::from_ne_bytes(b.try_into().ok()?))
    }
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

macro_rules! half_sample {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn to_f32(self) -> f32 { <$t>::to_f32(self) }
            fn from_f64(v: f64) -> Option<Self> { Some(<$t>::from_f64(v)) }
            fn from_ne_slice(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_ne_bytes(b.try_into().ok()?))
            }
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
            fn is_zero(self) -> bool { <$t>::to_f32(self) == 0.0 }
        }
    )*};
}
half_sample!(f16, bf16);

impl Sample for bool {
    fn to_f32(self) -> f32 {
        f32::from(u8::from(self))
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_ne_slice(b: &[u8]) -> Option<Self> {
        b.first().map(|&v| v != 0)
    }
    fn is_nan(self) -> bool {
        false
    }
    fn is_zero(self) -> bool {
        !self
    }
}

/// Whether this crate can convert `dt` to `f32`.
pub(crate) fn is_supported(dt: &DataType) -> bool {
    dt.is::<Float32DataType>()
        || dt.is::<Float64DataType>()
        || dt.is::<Float16DataType>()
        || dt.is::<BFloat16DataType>()
        || dt.is::<UInt8DataType>()
        || dt.is::<UInt16DataType>()
        || dt.is::<UInt32DataType>()
        || dt.is::<UInt64DataType>()
        || dt.is::<Int8DataType>()
        || dt.is::<Int16DataType>()
        || dt.is::<Int32DataType>()
        || dt.is::<Int64DataType>()
        || dt.is::<BoolDataType>()
}

/// Every leading plane × window `w` of an array of `shape` (rank 2 or more, `[lead…, y, x]`).
pub(crate) fn window_subset(shape: &[u64], w: Window) -> ArraySubset {
    let mut ranges: Vec<std::ops::Range<u64>> =
        shape[..shape.len() - 2].iter().map(|&d| 0..d).collect();
    ranges.extend([w.y0..w.y1(), w.x0..w.x1()]);
    ArraySubset::new_with_ranges(&ranges)
}

/// [`ZarrIoError::WindowOutOfBounds`] unless window `w` lies inside the last two dimensions of
/// `shape` (the array `array` of the group at `url`).
pub(crate) fn check_window(
    url: &str,
    array: &str,
    shape: &[u64],
    w: Window,
) -> Result<(), ZarrIoError> {
    let (h, width) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let fits =
        |start: u64, len: u64, size: u64| start.checked_add(len).is_some_and(|end| end <= size);
    if fits(w.y0, w.height, h) && fits(w.x0, w.width, width) {
        return Ok(());
    }
    Err(ZarrIoError::WindowOutOfBounds {
        url: url.to_owned(),
        array: array.to_owned(),
        window: w,
        shape: shape.to_vec(),
    })
}

/// [`ZarrIoError::Read`] of window `w` of `array` in the group at `url`.
pub(crate) fn read_error(url: &str, array: &str, w: Window, source: ArrayError) -> ZarrIoError {
    ZarrIoError::Read {
        url: url.to_owned(),
        array: array.to_owned(),
        window: w,
        source: Box::new(source),
    }
}

/// Read `subset` of `array` as row-major `f32`, replacing missing values by NaN per `rule`.
///
/// With `rule == None` values are converted as they are (used for mask arrays).
pub(crate) async fn read_f32(
    array: &Array<ZarrStore>,
    subset: &ArraySubset,
    rule: Option<&MissingRule>,
) -> Result<Vec<f32>, ArrayError> {
    let dt = array.data_type();
    macro_rules! dispatch {
        ($($dtype:ty => $t:ty),*) => {
            $(if dt.is::<$dtype>() { return read_typed::<$t>(array, subset, rule).await; })*
        };
    }
    dispatch!(
        Float32DataType => f32, Float64DataType => f64, Float16DataType => f16,
        BFloat16DataType => bf16, UInt8DataType => u8, UInt16DataType => u16,
        UInt32DataType => u32, UInt64DataType => u64, Int8DataType => i8, Int16DataType => i16,
        Int32DataType => i32, Int64DataType => i64, BoolDataType => bool
    );
    Err(ArrayError::ElementError(
        zarrs::array::ElementError::IncompatibleElementType,
    ))
}

async fn read_typed<T: Sample>(
    array: &Array<ZarrStore>,
    subset: &ArraySubset,
    rule: Option<&MissingRule>,
) -> Result<Vec<f32>, ArrayError> {
    let raw = array.async_retrieve_array_subset::<Vec<T>>(subset).await?;
    let sentinels = rule.map(|r| sentinels::<T>(array, r)).unwrap_or_default();
    Ok(convert(&raw, &sentinels))
}

/// The raw values of type `T` that `rule` declares missing (NaN is always missing).
fn sentinels<T: Sample>(array: &Array<ZarrStore>, rule: &MissingRule) -> Vec<T> {
    let mut out: Vec<T> = rule
        .sentinels
        .iter()
        .filter_map(|&s| T::from_f64(s))
        .collect();
    if rule.zarr_fill {
        // A zero fill value is zarr's default, not a statement about missing data: counting it
        // would turn every legitimate zero into a gap.
        if let Some(fill) = T::from_ne_slice(array.fill_value().as_ne_bytes()) {
            if !fill.is_zero() && !fill.is_nan() {
                out.push(fill);
            }
        }
    }
    out
}

/// Convert raw values to `f32`, turning missing ones into NaN.
fn convert<T: Sample>(raw: &[T], sentinels: &[T]) -> Vec<f32> {
    raw.iter()
        .map(|&v| {
            if v.is_nan() || sentinels.contains(&v) {
                f32::NAN
            } else {
                v.to_f32()
            }
        })
        .collect()
}
