//! Where and how the work runs, apart from what it computes: the device, the convolution
//! kernels, and how many samples go to the device at once.

use crate::error::Error;
use crate::gpu::Gpu;
use crate::gpu::GpuError;
pub use crate::kernels::conv::{ConvKernel, ConvPlan};
use crate::nn::ConvGeometry;

/// How the convolution kernels are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvStrategy {
    /// Every pass of every layer by one kernel.
    Fixed(ConvKernel),
}

impl ConvStrategy {
    /// The kernel of every pass of layer `g` on batches of `batch` samples.
    pub fn plan(&self, _gpu: &Gpu, _g: &ConvGeometry, _batch: usize) -> Result<ConvPlan, GpuError> {
        match self {
            Self::Fixed(kernel) => Ok(ConvPlan::all(*kernel)),
        }
    }
}

impl std::str::FromStr for ConvStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self::Fixed)
    }
}

impl std::fmt::Display for ConvStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(kernel) => kernel.fmt(f),
        }
    }
}

/// The device and the settings of how it is used. Results do not depend on them beyond
/// rounding: the kernels differ in the order of their sums, and so do chunks of another size.
#[derive(Clone, Copy)]
pub struct Execution<'g> {
    pub gpu: &'g Gpu,
    /// Which convolution kernels run.
    pub conv: ConvStrategy,
    /// Most samples per chunk on the device: memory, not statistics (simpleNN's bsize).
    pub bsize: usize,
}

impl<'g> Execution<'g> {
    /// simpleNN's bsize.
    pub const DEFAULT_BSIZE: usize = 1024;

    /// The kernels that suit the adapter's type ([`ConvKernel::for_device_type`]) and chunks of
    /// [`Execution::DEFAULT_BSIZE`] samples.
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            conv: ConvStrategy::Fixed(ConvKernel::for_device_type(gpu.adapter().device_type)),
            bsize: Self::DEFAULT_BSIZE,
        }
    }

    /// [`Execution::new`], with the kernel chosen by `NEWTON_WGPU_CONV` (a [`ConvKernel`]'s
    /// name: `windowed`, `tiled`, `tile4`, `direct8x4`, ...) when it is set.
    pub fn from_env(gpu: &'g Gpu) -> Result<Self, Error> {
        let mut execution = Self::new(gpu);
        match std::env::var("NEWTON_WGPU_CONV") {
            Ok(value) if !value.is_empty() => {
                execution.conv = value.parse().map_err(|_| Error::Setting {
                    field: "NEWTON_WGPU_CONV",
                    expected: "a convolution kernel: windowed, tiled, tile4 or direct{1,2,4,8}x4",
                    found: format!("{value:?}"),
                })?;
            }
            _ => {}
        }
        Ok(execution)
    }

    pub fn with_bsize(self, bsize: usize) -> Self {
        Self { bsize, ..self }
    }

    pub fn with_conv(self, conv: ConvStrategy) -> Self {
        Self { conv, ..self }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.bsize == 0 {
            return Err(Error::Setting { field: "bsize", expected: "at least 1", found: "0".into() });
        }
        Ok(())
    }
}
