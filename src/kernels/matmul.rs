//! The workgroup-memory tiled matrix product of shaders/matmul.wgsl: dense C = A·B, and the
//! convolutions of [`ConvKernels::Tiled`](crate::gpu::ConvKernels) as implicit matrix
//! products (filters × unfolded input, the unfolding done by index arithmetic as tiles load).

use super::conv::Params as ConvParams;
use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader, WORKGROUP_SIZE};

pub(crate) static SHADER: Shader =
    Shader { name: "matmul", constants: &[], parts: &[crate::shader_part!("matmul")] };

crate::kernels! { KERNELS = [
    TILED: Params = SHADER::matmul(Read, Read, ReadWrite) [CONV, ROWS];
] }

/// The columns of the tile of C one workgroup computes (TILE in matmul.wgsl); its rows are
/// 8 × ROWS.
const TILE: usize = 64;

/// Results per invocation along the rows (ROWS in matmul.wgsl): the fewest 8-row bands that
/// cover m, up to 8, so that a layer with 8 channels does not compute 56 rows of padding.
fn rows_per_invocation(m: usize) -> usize {
    m.div_ceil(8).next_power_of_two().min(8)
}

// matmul.wgsl maps its 64 invocations onto an 8 × 8 grid.
const _: () = assert!(WORKGROUP_SIZE == 64);

crate::uniform_params! {
struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
    a_off: u32,
    bias_off: u32,
    has_bias: u32,
    flipped: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride: u32,
    pad_h: i32,
    pad_w: i32,
    _unused: [u32; 2],
}
}

fn record(
    rec: &mut Recorder,
    params: &Params,
    conv: bool,
    buffers: [&GpuBuffer<f32>; 3],
) -> Result<(), GpuError> {
    let rows = rows_per_invocation(params.m as usize);
    let tiles = (params.m as usize).div_ceil(8 * rows) * (params.n as usize).div_ceil(TILE);
    let specialization = [f64::from(u8::from(conv)), rows as f64];
    let [a, b, c] = buffers;
    rec.dispatch_specialized(&TILED, &specialization, params, &[a, b, c], (tiles * TILE) as u64)
}

/// c = a · b for row-major a [m, k], b [k, n] and c [m, n].
pub fn matmul(
    rec: &mut Recorder,
    (m, n, k): (usize, usize, usize),
    a: &GpuBuffer<f32>,
    b: &GpuBuffer<f32>,
    c: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&TILED, a, m * k)?;
    check_len(&TILED, b, k * n)?;
    check_len(&TILED, c, m * n)?;
    let params = Params { m: u32_of(m), n: u32_of(n), k: u32_of(k), ..Params::default() };
    record(rec, &params, false, [a, b, c])
}

/// y (+)= the convolution that `conv` describes (the forward pass, or with `conv.flipped` the
/// backward pass to the input at stride 1), with the filters and bias in `theta` at its
/// offsets. With `accumulate`, adds to what y holds. The caller has checked the buffers'
/// lengths.
pub(super) fn conv(
    rec: &mut Recorder,
    conv: &ConvParams,
    accumulate: bool,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let params = Params {
        m: conv.out_c,
        n: u32_of(conv.batch as usize * conv.out_h as usize * conv.out_w as usize),
        k: conv.in_c * conv.k_h * conv.k_w,
        accumulate: u32::from(accumulate),
        a_off: conv.w_off,
        bias_off: if conv.has_bias != 0 { conv.b_off } else { 0 },
        has_bias: conv.has_bias,
        flipped: conv.flipped,
        in_c: conv.in_c,
        in_h: conv.in_h,
        in_w: conv.in_w,
        out_h: conv.out_h,
        out_w: conv.out_w,
        k_h: conv.k_h,
        k_w: conv.k_w,
        stride: conv.stride,
        pad_h: conv.pad_h,
        pad_w: conv.pad_w,
        _unused: [0; 2],
    };
    record(rec, &params, true, [theta, x, y])
}
