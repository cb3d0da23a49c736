//! Where and how the work runs, apart from what it computes: the device, the convolution
//! kernels, and how many samples go to the device at once.

use crate::error::Error;
use crate::gpu::Gpu;
pub use crate::kernels::conv::ConvStrategy;

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

    /// The kernels that suit the adapter ([`ConvStrategy::for_device_type`]) and chunks of
    /// [`Execution::DEFAULT_BSIZE`] samples.
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            conv: ConvStrategy::for_device_type(gpu.adapter().device_type),
            bsize: Self::DEFAULT_BSIZE,
        }
    }

    /// [`Execution::new`], with the kernels chosen by `NEWTON_WGPU_CONV` (`windowed` or
    /// `tiled`) when it is set.
    pub fn from_env(gpu: &'g Gpu) -> Result<Self, Error> {
        let mut execution = Self::new(gpu);
        match std::env::var("NEWTON_WGPU_CONV") {
            Ok(value) if !value.is_empty() => {
                execution.conv = value.parse().map_err(|_| Error::Setting {
                    field: "NEWTON_WGPU_CONV",
                    expected: "windowed or tiled",
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
