//! Device selection from a user string: `auto`, `cpu` or `cuda:N`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::ModelError;

/// Which device to compute on, as written by a user (`--device auto|cpu|cuda:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA device 0 when the crate is built with the `cuda` feature and a GPU is present, else CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceSpec {
    /// Open the device.
    ///
    /// # Errors
    /// [`ModelError::Device`] when a CUDA device is requested but unavailable (no `cuda` feature,
    /// no such ordinal).
    pub fn device(&self) -> Result<Device, ModelError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Device::cuda_if_available(0).map_err(|source| ModelError::Device {
                spec: self.to_string(),
                source,
            }),
            Self::Cuda(n) => Device::new_cuda(*n).map_err(|source| ModelError::Device {
                spec: self.to_string(),
                source,
            }),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ModelError::DeviceSpec { spec: s.to_owned() };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(Self::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!("auto".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Auto));
        assert_eq!("CPU".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!(
            "cuda:1".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Cuda(1))
        );
        assert_eq!("cuda".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_and_auto_open_without_a_gpu() {
        assert!(DeviceSpec::Cpu.device().is_ok_and(|d| d.is_cpu()));
        assert!(DeviceSpec::Auto.device().is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).device().err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("cannot open device cuda:0"));
    }
}
