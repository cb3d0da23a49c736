//! Host wrappers of the WGSL kernels: each checks the sizes of its buffers, then records one
//! dispatch. They run nothing by themselves; a [`Recorder`](crate::gpu::Recorder) submits.
//!
//! Each module declares its shader (the files it is made of and the constants Rust gives it),
//! its `Params` uniforms and its kernels; [`SHADERS`] and [`registry`] list them all, and
//! `tests/shader_contract.rs` checks every declaration against the WGSL.

pub mod activation;
pub mod avgpool;
pub mod blas1;
pub mod cg;
pub mod conv;
mod gemm;
pub mod graph;
pub mod loss;
pub mod matmul;
pub mod pool;

pub use gemm::GemmKernel;

use bytemuck::Pod;

use crate::gpu::{GpuBuffer, GpuError, Kernel, KernelInfo, Shader};

/// Every shader of the crate.
pub static SHADERS: [&Shader; 10] = [
    &activation::SHADER,
    &avgpool::SHADER,
    &blas1::SHADER,
    &cg::SHADER,
    &conv::WINDOWED_SHADER,
    &conv::TILED_SHADER,
    &graph::SHADER,
    &loss::SHADER,
    &matmul::SHADER,
    &pool::SHADER,
];

/// A CRC-32 of every shader's source (both workgroup sums), in hexadecimal: two builds with
/// different kernels differ here. The tuner's cache and the ranks' start-up agreement key on it.
pub fn sources_fingerprint() -> String {
    let mut crc = crc32fast::Hasher::new();
    for shader in SHADERS {
        for reduction in crate::gpu::Reduction::ALL {
            crc.update(shader.source(reduction).as_bytes());
        }
    }
    format!("{:08x}", crc.finalize())
}

/// Every kernel of the crate.
pub fn registry() -> impl Iterator<Item = &'static KernelInfo> {
    [
        activation::KERNELS,
        avgpool::KERNELS,
        blas1::KERNELS,
        cg::KERNELS,
        conv::WINDOWED_KERNELS,
        conv::TILED_KERNELS,
        graph::KERNELS,
        loss::KERNELS,
        matmul::KERNELS,
        pool::KERNELS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// Fails unless `buffer` holds at least `needed` values.
fn check_len<P, T: Pod>(kernel: &Kernel<P>, buffer: &GpuBuffer<T>, needed: usize) -> Result<(), GpuError> {
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
