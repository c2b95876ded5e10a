//! Numeric precision and memory layout for running networks.

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The floating-point type networks run in. Model files always hold f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::F16 => Kind::Half,
        }
    }

    /// f16 convolutions have no CPU kernels worth using; bf16 runs on both.
    pub fn check_device(self, device: Device) -> Result<()> {
        if self == Precision::F16 && device == Device::Cpu {
            return Err(Error::F16NeedsCuda);
        }
        Ok(())
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            _ => Err(Error::UnknownPrecision(s.to_string())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

/// Whether this CPU does bf16 arithmetic natively (x86 AVX512-BF16 or AMX, Arm's BF16), read
/// from `/proc/cpuinfo`; `None` where that cannot be read. The one such test: `atelier info`
/// and the bf16 speed warning both ask here. Without it oneDNN emulates bf16
/// convolutions, several times slower than f32.
pub fn cpu_has_native_bf16() -> Option<bool> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info
        .lines()
        .find(|line| line.starts_with("flags") || line.starts_with("Features"))?;
    Some(
        flags
            .split_whitespace()
            .any(|flag| matches!(flag, "avx512_bf16" | "amx_bf16" | "bf16")),
    )
}

/// A warning for bf16 on a CPU that would emulate it, else `None`.
pub fn bf16_speed_warning(precision: Precision, device: Device) -> Option<&'static str> {
    (precision == Precision::Bf16 && device == Device::Cpu && cpu_has_native_bf16() == Some(false))
        .then_some(
            "this cpu has no native bf16 (avx512_bf16, amx or arm bf16): bf16 runs several times \
             slower than f32 here",
        )
}

/// The kind to accumulate a small reduction of `kind` values in: f32 for the half kinds and
/// f32 itself (a 100-term dot product in bf16 loses digits), f64 for f64 (which the tests use to
/// compare two graphs below f32 rounding).
pub fn accumulation_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// Same values, NHWC strides. tch has no memory-format API, but ATen keeps and honours the
/// strides that permute-contiguous-permute produces, and picks its channels-last kernels.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda_device(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => cuda_device(index),
            _ => Err(Error::UnknownDevice(s.to_string())),
        },
    }
}

fn cuda_device(index: usize) -> Result<Device> {
    let count = if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    };
    if index >= count {
        return Err(Error::DeviceUnavailable { index, count });
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_in_any_spelling_and_print_one() {
        for (text, precision) in [
            ("f32", Precision::F32),
            ("FP32", Precision::F32),
            ("bfloat16", Precision::Bf16),
            ("half", Precision::F16),
        ] {
            let parsed: Precision = text.parse().unwrap();
            assert_eq!(parsed, precision);
            assert_eq!(parsed.to_string().parse::<Precision>().unwrap(), precision);
        }
        let error = "f8".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(error, "unknown precision `f8` (use f32, bf16 or f16)");
    }

    #[test]
    fn devices_parse_and_name_what_is_missing() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            let error = parse_device(bad).unwrap_err().to_string();
            assert!(error.contains("use auto, cpu, cuda or cuda:N"), "{error}");
        }
        let count = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        let error = parse_device(&format!("cuda:{count}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!("cuda:{count} is not available ({count} CUDA devices)")
        );
        assert!(matches!(
            Precision::F16.check_device(Device::Cpu),
            Err(Error::F16NeedsCuda)
        ));
        assert!(Precision::Bf16.check_device(Device::Cpu).is_ok());
    }
}
