//! The device layer: adapter choice, typed buffers, a pipeline cache, command recording with
//! many dispatches per pass and one submit, and read-back through a staging buffer.
//!
//! Everything above this module speaks in [`GpuBuffer`]s and [`Kernel`]s; nothing above it
//! touches a bind group or a staging buffer. The shaders and kernels themselves are declared
//! by the layer above ([`crate::kernels`]) with the types and macros of [`Shader`] and
//! [`Kernel`].

mod buffer;
mod context;
mod error;
mod pipeline;
mod readback;
mod recorder;
mod shader;
mod timer;

pub use buffer::{Binding, BufferView, GpuBuffer};
pub use context::{AdapterSummary, Gpu, GpuOptions, GpuStats, Submission};
pub use error::GpuError;
pub use pipeline::WORKGROUP_SIZE;
pub use readback::{ReadRing, ReadTicket};
pub use recorder::{IndirectArgs, Program, Recorder};
pub use shader::{
    Access, Kernel, KernelInfo, ParamsLayout, Reduction, Shader, ShaderChecks, ShaderPart, UniformParams,
    PRELUDE_FILE, REDUCTION_FILES,
};
