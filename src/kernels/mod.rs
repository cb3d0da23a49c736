//! Host wrappers of the WGSL kernels: each checks the sizes of its buffers, then records one
//! dispatch. They run nothing by themselves; a [`Recorder`](crate::gpu::Recorder) submits.

pub mod activation;
pub mod blas1;
pub mod cg;
pub mod conv;
pub mod loss;
pub mod matmul;
pub mod pool;

use bytemuck::Pod;

use crate::gpu::{GpuBuffer, GpuError, Kernel};

/// Fails unless `buffer` holds at least `needed` values.
fn check_len<T: Pod>(kernel: Kernel, buffer: &GpuBuffer<T>, needed: usize) -> Result<(), GpuError> {
    if buffer.len() < needed {
        return Err(GpuError::ShortBuffer {
            kernel: kernel.name(),
            buffer: buffer.label().to_owned(),
            needed,
            found: buffer.len(),
        });
    }
    Ok(())
}

/// Converts a size that the network planner has already bounded to i32::MAX.
fn u32_of(value: usize) -> u32 {
    u32::try_from(value).expect("sizes are bounded when the network is planned")
}
