//! Where and how the work runs, apart from what it computes: the device, the convolution
//! kernels, and how many samples go to the device at once.

use crate::error::Error;
use crate::gpu::Gpu;
use crate::gpu::GpuError;
pub use crate::kernels::conv::{ConvKernel, ConvPlan};
use crate::nn::ConvGeometry;
use crate::tune::Tuner;

/// How the convolution kernels are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvStrategy {
    /// Every pass of every layer by one kernel.
    Fixed(ConvKernel),
    /// Each pass of each layer by the kernel the execution's tuner picks (without a tuner,
    /// [`ConvKernel::fallback`]).
    Tuned,
}

impl std::str::FromStr for ConvStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tuned" => Ok(Self::Tuned),
            kernel => kernel.parse().map(Self::Fixed),
        }
    }
}

impl std::fmt::Display for ConvStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(kernel) => kernel.fmt(f),
            Self::Tuned => f.write_str("tuned"),
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
    /// Who picks them when `conv` is [`ConvStrategy::Tuned`].
    pub tuner: Option<&'g Tuner>,
    /// Most samples per chunk on the device: memory, not statistics (simpleNN's bsize).
    pub bsize: usize,
}

impl<'g> Execution<'g> {
    /// simpleNN's bsize.
    pub const DEFAULT_BSIZE: usize = 1024;

    /// Every pass by [`ConvKernel::fallback`] (no tuning) and chunks of
    /// [`Execution::DEFAULT_BSIZE`] samples.
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            conv: ConvStrategy::Fixed(ConvKernel::fallback()),
            tuner: None,
            bsize: Self::DEFAULT_BSIZE,
        }
    }

    /// The kernels `tuner` picks for this adapter, layer by layer and pass by pass.
    pub fn with_tuner(self, tuner: &'g Tuner) -> Self {
        Self { conv: ConvStrategy::Tuned, tuner: Some(tuner), ..self }
    }

    /// The kernel of every pass of layer `g` on batches of `batch` samples.
    pub fn conv_plan(&self, g: &ConvGeometry, batch: usize) -> Result<ConvPlan, GpuError> {
        match (self.conv, self.tuner) {
            (ConvStrategy::Fixed(kernel), _) => Ok(ConvPlan::all(kernel)),
            (ConvStrategy::Tuned, Some(tuner)) => tuner.conv_plan(self.gpu, g, batch),
            (ConvStrategy::Tuned, None) => Ok(ConvPlan::all(ConvKernel::fallback())),
        }
    }

    /// [`Execution::new`], with every pass by the kernel `NEWTON_WGPU_CONV` names (a
    /// [`ConvKernel`]'s name: `windowed`, `tiled`, `tile4`, `direct8x4`, ...) when it is set.
    pub fn from_env(gpu: &'g Gpu) -> Result<Self, Error> {
        let mut execution = Self::new(gpu);
        match std::env::var("NEWTON_WGPU_CONV") {
            Ok(value) if !value.is_empty() => {
                execution.conv = value.parse().map_err(|_| Error::Setting {
                    field: "NEWTON_WGPU_CONV",
                    expected: "a convolution kernel: windowed, tiled, tile4 or direct{1,2,4,8}x4".into(),
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

    /// Every pass by `kernel`, or by the tuner's picks.
    pub fn with_conv(self, conv: ConvStrategy) -> Self {
        Self { conv, ..self }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.bsize == 0 {
            return Err(Error::Setting { field: "bsize", expected: "at least 1".into(), found: "0".into() });
        }
        Ok(())
    }
}
