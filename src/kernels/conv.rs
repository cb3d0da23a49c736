use bytemuck::{Pod, Zeroable};

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Kernel, Recorder, CONV};
use crate::nn::ConvGeometry;

const FORWARD: Kernel = Kernel::new(&CONV, "forward");
const JVP: Kernel = Kernel::new(&CONV, "jvp");
const BACKWARD_INPUT: Kernel = Kernel::new(&CONV, "backward_input");
const BACKWARD_PARAMS: Kernel = Kernel::new(&CONV, "backward_params");

/// Each invocation computes a BLOCK × BLOCK tile of results (B in conv.wgsl).
const BLOCK: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride: u32,
    pad: u32,
    w_off: u32,
    b_off: u32,
    group_size: u32,
    groups: u32,
    _pad: u32,
}

impl Params {
    fn new(g: &ConvGeometry, batch: usize) -> Self {
        Self {
            batch: u32_of(batch),
            in_c: u32_of(g.input.channels),
            in_h: u32_of(g.input.height),
            in_w: u32_of(g.input.width),
            out_c: u32_of(g.output.channels),
            out_h: u32_of(g.output.height),
            out_w: u32_of(g.output.width),
            k_h: u32_of(g.kernel_h),
            k_w: u32_of(g.kernel_w),
            stride: u32_of(g.stride),
            pad: u32_of(g.padding),
            w_off: u32_of(g.weight_offset),
            b_off: u32_of(g.bias_offset),
            group_size: 0,
            groups: 0,
            _pad: 0,
        }
    }
}

fn check_theta(kernel: Kernel, g: &ConvGeometry, theta: &GpuBuffer<f32>) -> Result<(), GpuError> {
    check_len(kernel, theta, g.bias_offset + g.output.channels)
}

/// y = conv(x; W, b) for `batch` samples; W and b are read from θ at the layer's offsets.
pub fn forward(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(FORWARD, x, batch * g.input.len())?;
    check_theta(FORWARD, g, theta)?;
    check_len(FORWARD, y, batch * g.output.len())?;
    rec.dispatch(FORWARD, &Params::new(g, batch), &[x, theta, y], output_tiles(g, batch))
}

/// Forward mode through the layer: ry = W·rx + V_W·x + V_b, where (V_W, V_b) is the
/// direction `v` at the layer's offsets. `rx` is None at the network's input, where R(x) = 0
/// and the product is the forward pass with V in place of θ.
#[allow(clippy::too_many_arguments)]
pub fn jvp(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    rx: Option<&GpuBuffer<f32>>,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let Some(rx) = rx else { return forward(rec, g, batch, x, v, ry) };
    check_len(JVP, x, batch * g.input.len())?;
    check_len(JVP, rx, batch * g.input.len())?;
    check_theta(JVP, g, theta)?;
    check_theta(JVP, g, v)?;
    check_len(JVP, ry, batch * g.output.len())?;
    rec.dispatch(JVP, &Params::new(g, batch), &[x, rx, theta, v, ry], output_tiles(g, batch))
}

/// Invocations of the forward and Jv kernels: one per 4 channels × 4 columns of an output row.
fn output_tiles(g: &ConvGeometry, batch: usize) -> u64 {
    (batch * g.output.channels.div_ceil(BLOCK) * g.output.height * g.output.width.div_ceil(BLOCK)) as u64
}

/// dx = ∂⟨dy, conv(x)⟩/∂x: the gradient passed on to the layer below.
pub fn backward_input(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(BACKWARD_INPUT, dy, batch * g.output.len())?;
    check_theta(BACKWARD_INPUT, g, theta)?;
    check_len(BACKWARD_INPUT, dx, batch * g.input.len())?;
    let invocations =
        batch * g.input.channels.div_ceil(BLOCK) * g.input.height * g.input.width.div_ceil(BLOCK);
    rec.dispatch(BACKWARD_INPUT, &Params::new(g, batch), &[dy, theta, dx], invocations as u64)
}

/// How the parameter gradient of a batch is split into groups of samples: enough groups to
/// keep a GPU busy, never more partial sums than `max_partial` values.
pub fn param_groups(g: &ConvGeometry, batch: usize, max_partial: usize) -> (usize, usize) {
    const SAMPLES_PER_GROUP: usize = 16;
    let by_memory = (max_partial / g.params()).max(1);
    let groups = batch.div_ceil(SAMPLES_PER_GROUP).min(by_memory).max(1);
    let group_size = batch.div_ceil(groups);
    (batch.div_ceil(group_size).max(1), group_size)
}

/// Adds ∂⟨dy, conv(x)⟩/∂(W, b), summed over the batch, into `grad` at the layer's offsets.
/// `partial` is scratch space of at least `groups × params` values (see [`param_groups`]).
pub fn backward_params(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    partial: &GpuBuffer<f32>,
    grad: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let (groups, group_size) = param_groups(g, batch, partial.len());
    check_len(BACKWARD_PARAMS, x, batch * g.input.len())?;
    check_len(BACKWARD_PARAMS, dy, batch * g.output.len())?;
    check_len(BACKWARD_PARAMS, partial, groups * g.params())?;
    check_theta(BACKWARD_PARAMS, g, grad)?;
    let params = Params { group_size: u32_of(group_size), groups: u32_of(groups), ..Params::new(g, batch) };
    let weight_blocks = g.output.channels.div_ceil(BLOCK) * g.fan_in().div_ceil(BLOCK);
    let invocations = groups * (weight_blocks + g.output.channels);
    rec.dispatch(BACKWARD_PARAMS, &params, &[x, dy, partial], invocations as u64)?;
    super::blas1::accumulate_groups(rec, partial, groups, g.params(), grad, g.weight_offset)
}
