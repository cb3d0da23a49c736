//! The workgroup-memory tiled matrix product of shaders/matmul.wgsl: dense C = A·B, and the
//! convolutions of [`ConvKernels::Tiled`](crate::gpu::ConvKernels) as implicit matrix
//! products (filters × unfolded input, the unfolding done by index arithmetic as tiles load).

use bytemuck::{Pod, Zeroable};

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Kernel, Recorder, MATMUL, WORKGROUP_SIZE};
use crate::nn::ConvGeometry;

const TILED: Kernel = Kernel::new(&MATMUL, "matmul");

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

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
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
    unused: [u32; 2],
}

fn record(
    rec: &mut Recorder,
    params: &Params,
    conv: bool,
    buffers: [&GpuBuffer<f32>; 3],
) -> Result<(), GpuError> {
    let rows = rows_per_invocation(params.m as usize);
    let tiles = (params.m as usize).div_ceil(8 * rows) * (params.n as usize).div_ceil(TILE);
    let specialization = [("CONV", f64::from(u8::from(conv))), ("ROWS", rows as f64)];
    let [a, b, c] = buffers;
    rec.dispatch_specialized(TILED, &specialization, params, &[a, b, c], (tiles * TILE) as u64)
}

/// c = a · b for row-major a [m, k], b [k, n] and c [m, n].
pub fn matmul(
    rec: &mut Recorder,
    (m, n, k): (usize, usize, usize),
    a: &GpuBuffer<f32>,
    b: &GpuBuffer<f32>,
    c: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(TILED, a, m * k)?;
    check_len(TILED, b, k * n)?;
    check_len(TILED, c, m * n)?;
    let params = Params { m: u32_of(m), n: u32_of(n), k: u32_of(k), ..Params::default() };
    record(rec, &params, false, [a, b, c])
}

/// How a tiled convolution uses the layer's filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filters {
    /// y = W ⋆ x + b (the forward pass; Jv's terms).
    Forward { bias: bool },
    /// The backward pass to the input at stride 1: dy convolved with the flipped, transposed
    /// filters, no bias.
    Flipped,
}

/// y (+)= conv(x) with the filters of layer `g` in `theta`, for `batch` samples. With
/// `accumulate`, adds to what y holds. The caller has checked the buffers' lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    filters: Filters,
    accumulate: bool,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let pad = i32::try_from(g.padding).expect("padding fits in i32");
    let (input, output, (pad_h, pad_w), has_bias, flipped) = match filters {
        Filters::Forward { bias } => (g.input, g.output, (pad, pad), bias, false),
        Filters::Flipped => {
            assert_eq!(g.stride, 1, "the flipped convolution is the backward pass at stride 1");
            // Padding k − 1 − pad on each side brings every output that a tap reaches back.
            let reach = |k: usize| i32::try_from(k).expect("kernel size fits in i32") - 1 - pad;
            (g.output, g.input, (reach(g.kernel_h), reach(g.kernel_w)), false, true)
        }
    };
    let params = Params {
        m: u32_of(output.channels),
        n: u32_of(batch * output.height * output.width),
        k: u32_of(input.channels * g.kernel_h * g.kernel_w),
        accumulate: u32::from(accumulate),
        a_off: u32_of(g.weight_offset),
        bias_off: u32_of(if has_bias { g.bias_offset } else { 0 }),
        has_bias: u32::from(has_bias),
        flipped: u32::from(flipped),
        in_c: u32_of(input.channels),
        in_h: u32_of(input.height),
        in_w: u32_of(input.width),
        out_h: u32_of(output.height),
        out_w: u32_of(output.width),
        k_h: u32_of(g.kernel_h),
        k_w: u32_of(g.kernel_w),
        stride: u32_of(g.stride),
        pad_h,
        pad_w,
        unused: [0; 2],
    };
    record(rec, &params, true, [theta, x, y])
}
