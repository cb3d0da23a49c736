//! The dense matrix product C = A·B by any of the product kernels of `super::gemm`
//! (shaders/matmul.wgsl): the tuner times them against each other with it, and the benchmarks
//! rate them.

use super::gemm::GemmKernel;
use super::{check_len, gemm, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};

pub(crate) static SHADER: Shader = Shader {
    name: "matmul",
    trusted: true,
    workgroup_sum: false,
    constants: gemm::CONSTANTS,
    parts: &[
        crate::shader_part!("gemm_tile"),
        crate::shader_part!("gemm_direct"),
        crate::shader_part!("gemm_tile4"),
        crate::shader_part!("gemm_vec4"),
        crate::shader_part!("matmul"),
    ],
};

crate::uniform_params! {
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        _pad: u32,
    }
}

crate::kernels! { KERNELS = [
    /// A, B, C (the scalar tiles read no vec4 values).
    MATMUL: Params = SHADER::matmul(Read, Read, ReadWrite) [ROWS];
    /// A, B, C, then A and B again as vec4 values.
    MATMUL_DIRECT: Params = SHADER::direct(Read, Read, ReadWrite, Read, Read) [BLOCK_ROWS, VEC_A, VEC_B];
    MATMUL_TILE4: Params = SHADER::tile4(Read, Read, ReadWrite, Read, Read) [VEC_A, VEC_B];
] }

/// c = a · b for row-major a [m, k], b [k, n] and c [m, n], by `kernel`.
pub fn matmul(
    rec: &mut Recorder,
    kernel: GemmKernel,
    (m, n, k): (usize, usize, usize),
    a: &GpuBuffer<f32>,
    b: &GpuBuffer<f32>,
    c: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&MATMUL, a, m * k)?;
    check_len(&MATMUL, b, k * n)?;
    check_len(&MATMUL, c, m * n)?;
    let params = Params { m: u32_of(m), n: u32_of(n), k: u32_of(k), _pad: 0 };
    let buffers: [&dyn crate::gpu::Binding; 5] = [a, b, c, a, b];
    let (vec_a, vec_b) = (f64::from(u8::from(k % 4 == 0)), f64::from(u8::from(n % 4 == 0)));
    let invocations = kernel.invocations(m, n);
    match kernel {
        GemmKernel::Tiled => {
            let rows = gemm::tiled_rows(m) as f64;
            rec.dispatch_specialized(&MATMUL, &[rows], &params, &buffers[..3], invocations)
        }
        GemmKernel::Direct { rows } => {
            let overrides = [f64::from(rows), vec_a, vec_b];
            rec.dispatch_specialized(&MATMUL_DIRECT, &overrides, &params, &buffers, invocations)
        }
        GemmKernel::Tile4 => {
            rec.dispatch_specialized(&MATMUL_TILE4, &[vec_a, vec_b], &params, &buffers, invocations)
        }
    }
}
