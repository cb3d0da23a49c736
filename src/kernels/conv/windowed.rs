//! The windowed convolution kernels (shaders/conv_windowed.wgsl): results in registers, no
//! workgroup memory, written to load as few values as possible, for software GPUs. The weight
//! gradient and the backward pass to the input at stride > 1 run here on every adapter.

use super::super::{check_len, u32_of};
use super::params::{self, Params};
use crate::gpu::{Binding, Gpu, GpuBuffer, GpuError, Recorder, Shader};
use crate::nn::ConvGeometry;

/// Each invocation computes a BLOCK × BLOCK tile of results (B in the shader), or BLOCK
/// channels × COLS columns in forward and forward mode.
const BLOCK: usize = 4;
const COLS: usize = 8;

/// The widest filter row read in one step (CHUNK); wider rows go by BLOCK taps.
const MAX_CHUNK: usize = 8;

/// The register window of forward and forward mode: COLS − 1 + CHUNK values at stride 1,
/// COLS × CHUNK at other strides.
const WINDOW: usize = COLS * MAX_CHUNK;

/// The most taps of a filter plane that the sliding weight gradient keeps in registers.
const MAX_SLIDING_TAPS: usize = 25;

pub(crate) static SHADER: Shader = Shader {
    name: "conv_windowed",
    trusted: true,
    workgroup_sum: false,
    constants: &[
        ("B", BLOCK as u32),
        ("COLS", COLS as u32),
        ("WINDOW", WINDOW as u32),
        ("MAX_TAPS", MAX_SLIDING_TAPS as u32),
    ],
    parts: &[params::PART, crate::shader_part!("conv_windowed")],
};

crate::kernels! { KERNELS = [
    PACK_FILTERS: Params = SHADER::pack_filters(Read, ReadWrite);
    /// The forward pass or, with JVP, forward mode: x, rx, the bias's vector, the packed
    /// filters, y.
    FORWARD: Params = SHADER::forward(Read, Read, Read, Read, ReadWrite) [CHUNK, UNIT_STRIDE, JVP, WIDE];
    BACKWARD_INPUT: Params = SHADER::backward_input(Read, Read, ReadWrite);
    BACKWARD_PARAMS: Params = SHADER::backward_params(Read, Read, ReadWrite);
    BACKWARD_PARAMS_SLIDING: Params = SHADER::backward_params_sliding(Read, Read, ReadWrite) [KH, KW];
] }

/// Taps read per step of a filter row of width `k_w`.
fn chunk(k_w: usize) -> usize {
    if k_w <= MAX_CHUNK {
        k_w
    } else {
        BLOCK
    }
}

/// `params` with the packed filters' row width set.
fn packed(params: &Params) -> Params {
    let k_w = params.k_w as usize;
    Params { k_wp: u32_of(k_w.next_multiple_of(chunk(k_w))), ..*params }
}

/// Values of one set of packed filters.
fn packed_len(p: &Params) -> usize {
    (p.in_c * p.k_h * p.k_wp) as usize * (p.out_c as usize).div_ceil(BLOCK) * BLOCK
}

/// The packed filters of one layer: θ's for the forward pass, with room after them (from
/// `direction_at`, aligned for a binding of its own) for a direction's, packed at each forward
/// mode product; and at stride 1 θ's flipped ones, for the backward pass to the input. θ's are
/// packed once per θ ([`pack_theta`]), not at every pass.
pub(super) struct Packed {
    forward: GpuBuffer<f32>,
    direction_at: usize,
    flipped: Option<GpuBuffer<f32>>,
}

/// Bytes a layer's packed filters take at most (whatever the adapter's binding alignment, up to
/// 256 bytes).
pub(super) fn packed_bytes_bound(g: &ConvGeometry) -> u64 {
    let forward = packed_len(&packed(&Params::new(g, 1)));
    let flipped = packed_len(&packed(&Params::flipped(g, 1)));
    4 * (2 * forward + 64 + flipped) as u64
}

impl Packed {
    /// The packed filters of layer `g`, with θ's flipped ones too when `flipped` (for the
    /// windowed backward pass to the input at stride 1).
    pub(super) fn new(gpu: &Gpu, g: &ConvGeometry, flipped: bool) -> Result<Self, GpuError> {
        let forward = packed(&Params::new(g, 1));
        // A direction's filters start at a binding offset the adapter accepts, in vec4s.
        let align = (gpu.storage_alignment() as usize / 4).max(BLOCK);
        let direction_at = packed_len(&forward).next_multiple_of(align);
        let flipped = flipped
            .then(|| gpu.zeros(packed_len(&packed(&Params::flipped(g, 1))), "packed flipped filters"))
            .transpose()?;
        Ok(Self {
            forward: gpu.zeros(direction_at + packed_len(&forward), "packed filters")?,
            direction_at,
            flipped,
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        self.forward.bytes() + self.flipped.as_ref().map_or(0, |f| f.bytes())
    }
}

/// Packs the filters of θ (or of a direction) at the layer's offsets into `filters`, from
/// `at` values on, as forward reads them (flipped and transposed when `params` describes the
/// backward pass to the input).
fn pack(
    rec: &mut Recorder,
    params: &Params,
    theta: &GpuBuffer<f32>,
    filters: &GpuBuffer<f32>,
    at: usize,
) -> Result<(), GpuError> {
    check_len(&PACK_FILTERS, filters, at + packed_len(params))?;
    let params = Params { v_filters: u32_of(at / BLOCK), ..*params };
    rec.dispatch(&PACK_FILTERS, &params, &[theta, filters], packed_len(&params) as u64)
}

/// Packs θ's filters of layer `g`: for the forward pass and, at stride 1, flipped.
pub(super) fn pack_theta(
    rec: &mut Recorder,
    g: &ConvGeometry,
    filters: &Packed,
    theta: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    pack(rec, &packed(&Params::new(g, 1)), theta, &filters.forward, 0)?;
    match &filters.flipped {
        Some(flipped) => pack(rec, &packed(&Params::flipped(g, 1)), theta, flipped, 0),
        None => Ok(()),
    }
}

/// Invocations of forward: one per BLOCK channels (2 BLOCK when `wide`) × COLS columns of an
/// output row.
fn output_tiles(p: &Params, wide: bool) -> u64 {
    let channels = if wide { 2 * BLOCK } else { BLOCK };
    let (oc_blocks, col_blocks) = ((p.out_c as usize).div_ceil(channels), (p.out_w as usize).div_ceil(COLS));
    (p.batch as usize * oc_blocks * p.out_h as usize * col_blocks) as u64
}

/// The override values of forward: CHUNK, UNIT_STRIDE, JVP, WIDE.
fn forward_overrides(p: &Params, jvp: bool, wide: bool) -> [f64; 4] {
    let flag = |b: bool| f64::from(u8::from(b));
    [chunk(p.k_w as usize) as f64, flag(p.stride == 1), flag(jvp), flag(wide)]
}

/// y = conv(x) with θ's packed filters and θ's bias.
pub(super) fn forward(
    rec: &mut Recorder,
    wide: bool,
    params: &Params,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    filters: &Packed,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let params = packed(params);
    let overrides = forward_overrides(&params, false, wide);
    let buffers: [&dyn Binding; 5] = [x, x, theta, &filters.forward, y];
    rec.dispatch_specialized(&FORWARD, &overrides, &params, &buffers, output_tiles(&params, wide))
}

/// y = conv(x) with the direction v's filters and bias (forward mode at the network's input,
/// where R(x) = 0): v is packed after θ's filters and bound from there.
pub(super) fn forward_with_direction(
    rec: &mut Recorder,
    wide: bool,
    params: &Params,
    x: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    filters: &Packed,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let params = packed(params);
    pack(rec, &params, v, &filters.forward, filters.direction_at)?;
    let overrides = forward_overrides(&params, false, wide);
    let direction = filters.forward.from_index(filters.direction_at);
    let buffers: [&dyn Binding; 5] = [x, x, v, &direction, y];
    rec.dispatch_specialized(&FORWARD, &overrides, &params, &buffers, output_tiles(&params, wide))
}

/// ry = W·rx + V_W·x + V_b in one pass, with θ's packed filters and v's packed after them.
#[allow(clippy::too_many_arguments)]
pub(super) fn jvp(
    rec: &mut Recorder,
    wide: bool,
    params: &Params,
    x: &GpuBuffer<f32>,
    rx: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    filters: &Packed,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let params = packed(params);
    pack(rec, &params, v, &filters.forward, filters.direction_at)?;
    let params = Params { v_filters: u32_of(filters.direction_at / BLOCK), ..params };
    let overrides = forward_overrides(&params, true, wide);
    rec.dispatch_specialized(
        &FORWARD,
        &overrides,
        &params,
        &[x, rx, v, &filters.forward, ry],
        output_tiles(&params, wide),
    )
}

/// dx = ∂⟨dy, conv(x)⟩/∂x at stride 1: the forward kernel on θ's flipped, transposed filters.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_input_unit_stride(
    rec: &mut Recorder,
    wide: bool,
    g: &ConvGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    filters: &Packed,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let flipped = filters.flipped.as_ref().expect("stride-1 layers pack flipped filters");
    let params = packed(&Params::flipped(g, batch));
    let overrides = forward_overrides(&params, false, wide);
    rec.dispatch_specialized(
        &FORWARD,
        &overrides,
        &params,
        &[dy, dy, theta, flipped, dx],
        output_tiles(&params, wide),
    )
}

/// dx = ∂⟨dy, conv(x)⟩/∂x at any stride, directly (no packing).
pub(super) fn backward_input_strided(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let invocations =
        batch * g.input.channels.div_ceil(BLOCK) * g.input.height * g.input.width.div_ceil(BLOCK);
    rec.dispatch(&BACKWARD_INPUT, &Params::new(g, batch), &[dy, theta, dx], invocations as u64)
}

/// The per-group partial sums of ∂⟨dy, conv(x)⟩/∂(W, b): `groups` groups of `group_size`
/// samples into `partial`, [groups, params].
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grad_partials(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    (groups, group_size): (usize, usize),
    x: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    partial: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let params = Params { group_size: u32_of(group_size), groups: u32_of(groups), ..Params::new(g, batch) };
    let oc_blocks = g.output.channels.div_ceil(BLOCK);
    if g.stride == 1 && g.kernel_h * g.kernel_w <= MAX_SLIDING_TAPS {
        let invocations = groups * (oc_blocks * g.input.channels + g.biases());
        let overrides = [g.kernel_h as f64, g.kernel_w as f64];
        rec.dispatch_specialized(
            &BACKWARD_PARAMS_SLIDING,
            &overrides,
            &params,
            &[x, dy, partial],
            invocations as u64,
        )
    } else {
        let invocations = groups * (oc_blocks * g.fan_in().div_ceil(BLOCK) + g.biases());
        rec.dispatch(&BACKWARD_PARAMS, &params, &[x, dy, partial], invocations as u64)
    }
}
