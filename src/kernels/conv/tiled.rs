//! The convolution as an implicit matrix product (shaders/conv_tiled.wgsl) by any of the
//! product kernels of [`super::super::gemm`]: scalar or vec4 workgroup-memory tiles, or
//! register blocks.

use super::super::gemm::{self, GemmKernel};
use super::params::{self, Params};
use crate::gpu::{Binding, GpuBuffer, GpuError, Recorder, Shader};

pub(crate) static SHADER: Shader = Shader {
    name: "conv_tiled",
    trusted: true,
    workgroup_sum: false,
    constants: gemm::CONSTANTS,
    parts: &[
        params::PART,
        crate::shader_part!("gemm_tile"),
        crate::shader_part!("gemm_direct"),
        crate::shader_part!("gemm_tile4"),
        crate::shader_part!("gemm_vec4"),
        crate::shader_part!("conv_tiled"),
    ],
};

crate::kernels! { KERNELS = [
    /// θ (filters and bias), x, y.
    CONV: Params = SHADER::conv(Read, Read, ReadWrite) [ROWS];
    CONV_DIRECT: Params = SHADER::direct(Read, Read, ReadWrite) [BLOCK_ROWS];
    CONV_TILE4: Params = SHADER::tile4(Read, Read, ReadWrite);
] }

/// y = the convolution `params` describes of x with the filters and bias in θ (the forward
/// pass, or the backward pass to the input at stride 1 with flipped filters), added to what y
/// holds with `params.accumulate`, by `kernel`.
pub(super) fn forward(
    rec: &mut Recorder,
    kernel: GemmKernel,
    params: &Params,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let m = params.out_c as usize;
    let n = params.batch as usize * params.out_h as usize * params.out_w as usize;
    let buffers: [&dyn Binding; 3] = [theta, x, y];
    let invocations = kernel.invocations(m, n);
    match kernel {
        GemmKernel::Tiled => {
            let rows = gemm::tiled_rows(m) as f64;
            rec.dispatch_specialized(&CONV, &[rows], params, &buffers, invocations)
        }
        GemmKernel::Direct { rows } => {
            rec.dispatch_specialized(&CONV_DIRECT, &[f64::from(rows)], params, &buffers, invocations)
        }
        GemmKernel::Tile4 => rec.dispatch(&CONV_TILE4, params, &buffers, invocations),
    }
}

/// ry = V_W·x + V_b, then W·rx added to it: two products.
#[allow(clippy::too_many_arguments)]
pub(super) fn jvp(
    rec: &mut Recorder,
    kernel: GemmKernel,
    params: &Params,
    x: &GpuBuffer<f32>,
    rx: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    forward(rec, kernel, params, x, v, ry)?;
    forward(rec, kernel, &Params { has_bias: 0, accumulate: 1, ..*params }, rx, theta, ry)
}
