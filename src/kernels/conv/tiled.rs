//! The tiled convolution kernels (shaders/conv_tiled.wgsl): the convolution as an implicit
//! matrix product in the workgroup-memory tiles of [`super::super::gemm`], for real GPUs.

use super::super::gemm;
use super::params::{self, Params};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};

pub(crate) static SHADER: Shader = Shader {
    name: "conv_tiled",
    trusted: true,
    constants: gemm::CONSTANTS,
    parts: &[params::PART, crate::shader_part!("gemm_tile"), crate::shader_part!("conv_tiled")],
};

crate::kernels! { KERNELS = [
    /// θ (filters and bias), x, y.
    CONV: Params = SHADER::conv(Read, Read, ReadWrite) [ROWS];
] }

/// y = the convolution `params` describes of x with the filters and bias in θ (the forward
/// pass, or the backward pass to the input at stride 1 with flipped filters), added to what y
/// holds with `params.accumulate`.
pub(super) fn forward(
    rec: &mut Recorder,
    params: &Params,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let m = params.out_c as usize;
    let n = params.batch as usize * params.out_h as usize * params.out_w as usize;
    let rows = gemm::rows_per_invocation(m);
    rec.dispatch_specialized(&CONV, &[rows as f64], params, &[theta, x, y], gemm::invocations(m, n, rows))
}

/// ry = V_W·x + V_b, then W·rx added to it: two products.
pub(super) fn jvp(
    rec: &mut Recorder,
    params: &Params,
    x: &GpuBuffer<f32>,
    rx: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    forward(rec, params, x, v, ry)?;
    forward(rec, &Params { has_bias: 0, accumulate: 1, ..*params }, rx, theta, ry)
}
