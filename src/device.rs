//! Where a network experiment computes: `device = "cpu" | "candle-cpu" | "cuda" | "cuda:N"`
//! (config key, or `run --device`).
//!
//! - `cpu`: the hand-written kernels (`models/native.rs`), the fast CPU path.
//! - `candle-cpu`: candle's `Classifier` on the CPU — the reference the kernels are tested
//!   against, and the same code that runs on CUDA, so a machine without a GPU can run the
//!   CUDA path's arithmetic end to end.
//! - `cuda`, `cuda:N`: candle's `Classifier` on GPU N (0 by default); needs a binary built
//!   with the `cuda` feature (`scripts/build-cuda.sh`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The device values a config accepts, for error messages.
pub const CHOICES: &str = "\"cpu\", \"candle-cpu\", \"cuda\" or \"cuda:N\"";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    #[default]
    Cpu,
    CandleCpu,
    Cuda(usize),
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        *self == Device::Cpu
    }

    /// Whether this noiselab was built with the `cuda` feature.
    pub fn cuda_compiled() -> bool {
        cfg!(feature = "cuda")
    }

    /// What the computed numbers depend on: the kernels, candle on the CPU, or CUDA
    /// (any GPU of the same build gives the same arithmetic). Part of the key of work
    /// that runs share (θ_GD), so a GPU run never reuses a CPU run's θ_GD.
    pub fn arithmetic(&self) -> &'static str {
        match self {
            Device::Cpu => "kernels",
            Device::CandleCpu => "candle-cpu",
            Device::Cuda(_) => "cuda",
        }
    }

    /// The candle device to build tensors on; `None` for the kernels. A CUDA device that
    /// cannot be opened is an error that says why and what to do.
    pub fn candle(&self) -> Result<Option<candle_core::Device>> {
        match *self {
            Device::Cpu => Ok(None),
            Device::CandleCpu => Ok(Some(candle_core::Device::Cpu)),
            Device::Cuda(n) => {
                if !Self::cuda_compiled() {
                    return Err(Error::Device(format!(
                        "device = \"{self}\": this noiselab was built without CUDA. Build it \
                         with `bash scripts/build-cuda.sh` (cargo build --release --features \
                         cuda; no GPU is needed to build), or run with --device cpu"
                    )));
                }
                candle_core::Device::new_cuda(n).map(Some).map_err(|e| {
                    Error::Device(format!(
                        "device = \"{self}\": cannot open GPU {n}: {}. Check that `nvidia-smi` \
                         lists it, that the NVIDIA driver's libcuda.so.1 is on the loader's \
                         path, and that CUDA_VISIBLE_DEVICES does not hide it; or run with \
                         --device cpu",
                        one_line(&e.to_string())
                    ))
                })
            }
        }
    }
}

/// A CUDA device's name and memory, as the driver reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuMemory {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub free: u64,
    pub total: u64,
}

impl fmt::Display for GpuMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (compute capability {}.{}), {:.1} GB free of {:.1} GB",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.free as f64 / 1e9,
            self.total as f64 / 1e9
        )
    }
}

/// Name and free/total memory of `device` when it is a CUDA device (`None` otherwise,
/// and always in a binary built without CUDA).
pub fn gpu_memory(device: &candle_core::Device) -> Option<GpuMemory> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(d) = device {
        let stream = d.cuda_stream();
        let context = stream.context();
        let (free, total) = context.mem_get_info().ok()?;
        return Some(GpuMemory {
            name: context.name().unwrap_or_else(|_| "a CUDA GPU".into()),
            compute_capability: context.compute_capability().unwrap_or((0, 0)),
            free: free as u64,
            total: total as u64,
        });
    }
    let _ = device;
    None
}

/// The first line of candle's message: it may append a backtrace.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::CandleCpu => write!(f, "candle-cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "candle-cpu" => Ok(Device::CandleCpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("invalid value \"{s}\": expected {CHOICES}")),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, device, shown) in [
            ("cpu", Device::Cpu, "cpu"),
            ("candle-cpu", Device::CandleCpu, "candle-cpu"),
            ("cuda", Device::Cuda(0), "cuda:0"),
            ("cuda:3", Device::Cuda(3), "cuda:3"),
        ] {
            assert_eq!(text.parse::<Device>(), Ok(device));
            assert_eq!(device.to_string(), shown);
            assert_eq!(shown.parse::<Device>(), Ok(device));
        }
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(
                e.contains(&format!("\"{bad}\"")) && e.contains("cuda:N"),
                "{e}"
            );
        }
    }

    #[test]
    fn cuda_without_the_feature_names_the_fix() {
        if Device::cuda_compiled() {
            return;
        }
        let e = Device::Cuda(0).candle().unwrap_err().to_string();
        assert!(
            e.contains("built without CUDA") && e.contains("scripts/build-cuda.sh"),
            "{e}"
        );
        assert!(Device::Cpu.candle().unwrap().is_none());
        assert!(Device::CandleCpu.candle().unwrap().unwrap().is_cpu());
    }
}
