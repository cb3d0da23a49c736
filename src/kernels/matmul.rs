//! The dense matrix product C = A·B in the workgroup-memory tiles of [`super::gemm`]
//! (shaders/matmul.wgsl): the benchmarks rate the tiles with it.

use super::{check_len, gemm, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};

pub(crate) static SHADER: Shader = Shader {
    name: "matmul",
    trusted: true,
    constants: gemm::CONSTANTS,
    parts: &[crate::shader_part!("gemm_tile"), crate::shader_part!("matmul")],
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
    MATMUL: Params = SHADER::matmul(Read, Read, ReadWrite) [ROWS];
] }

/// c = a · b for row-major a [m, k], b [k, n] and c [m, n].
pub fn matmul(
    rec: &mut Recorder,
    (m, n, k): (usize, usize, usize),
    a: &GpuBuffer<f32>,
    b: &GpuBuffer<f32>,
    c: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&MATMUL, a, m * k)?;
    check_len(&MATMUL, b, k * n)?;
    check_len(&MATMUL, c, m * n)?;
    let params = Params { m: u32_of(m), n: u32_of(n), k: u32_of(k), _pad: 0 };
    let rows = gemm::rows_per_invocation(m);
    rec.dispatch_specialized(&MATMUL, &[rows as f64], &params, &[a, b, c], gemm::invocations(m, n, rows))
}
