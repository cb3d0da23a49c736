//! The device layer: adapter choice, typed buffers, a pipeline cache, command recording with
//! many dispatches per pass and one submit, and read-back through a staging buffer.
//!
//! Everything above this module speaks in [`GpuBuffer`]s and [`Kernel`]s; nothing above it
//! touches a bind group or a staging buffer.

mod buffer;
mod context;
mod error;
mod pipeline;
mod recorder;
mod timer;

pub use buffer::GpuBuffer;
pub use context::{AdapterSummary, ConvKernels, Gpu, GpuOptions, GpuStats};
pub use error::GpuError;
pub use pipeline::{Kernel, Shader, Specialization, SHADERS, WORKGROUP_SIZE};
pub(crate) use pipeline::{ACTIVATION, BLAS1, CG, CONV, LOSS, MATMUL, POOL};
pub use recorder::Recorder;
