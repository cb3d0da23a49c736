use super::{check_len, matmul, u32_of};
use crate::gpu::{ConvKernels, GpuBuffer, GpuError, Kernel, Recorder, Shader};
use crate::nn::ConvGeometry;

pub(crate) static SHADER: Shader =
    Shader { name: "conv", constants: &[], parts: &[crate::shader_part!("conv")] };

crate::kernels! { KERNELS = [
    FORWARD: Params = SHADER::forward(Read, Read, Read, ReadWrite) [CHUNK, UNIT_STRIDE];
    JVP: Params = SHADER::jvp(Read, Read, Read, Read, ReadWrite) [CHUNK, UNIT_STRIDE];
    PACK_FILTERS: Params = SHADER::pack_filters(Read, ReadWrite);
    BACKWARD_INPUT: Params = SHADER::backward_input(Read, Read, ReadWrite);
    BACKWARD_PARAMS: Params = SHADER::backward_params(Read, Read, ReadWrite);
    BACKWARD_PARAMS_SLIDING: Params = SHADER::backward_params_sliding(Read, Read, ReadWrite) [KH, KW];
] }

/// The most taps of a filter plane that backward_params_sliding keeps in registers
/// (MAX_TAPS in conv.wgsl).
const MAX_SLIDING_TAPS: usize = 25;

/// Each invocation computes a BLOCK × BLOCK tile of results (B in conv.wgsl), or BLOCK
/// channels × COLS columns in forward and Jv.
const BLOCK: usize = 4;
const COLS: usize = 8;

/// The widest filter row read in one step (CHUNK in conv.wgsl); wider rows go by 4 taps.
const MAX_CHUNK: usize = 8;

crate::uniform_params! {
    /// One convolution as the kernels see it (the `Params` of conv.wgsl); the tiled kernels of
    /// [`matmul`] read the same description.
    pub(crate) struct Params {
        pub(super) batch: u32,
        pub(super) in_c: u32,
        pub(super) in_h: u32,
        pub(super) in_w: u32,
        pub(super) out_c: u32,
        pub(super) out_h: u32,
        pub(super) out_w: u32,
        pub(super) k_h: u32,
        pub(super) k_w: u32,
        pub(super) stride: u32,
        pub(super) pad_h: i32,
        pub(super) pad_w: i32,
        pub(super) w_off: u32,
        pub(super) b_off: u32,
        group_size: u32,
        groups: u32,
        k_wp: u32,
        pub(super) has_bias: u32,
        v_filters: u32,
        pub(super) flipped: u32,
    }
}

impl Params {
    fn new(g: &ConvGeometry, batch: usize) -> Self {
        let pad = i32::try_from(g.padding).expect("padding fits in i32");
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
            pad_h: pad,
            pad_w: pad,
            w_off: u32_of(g.weight_offset),
            b_off: u32_of(g.bias_offset),
            group_size: 0,
            groups: 0,
            k_wp: u32_of(padded_row(g.kernel_w)),
            has_bias: 1,
            v_filters: 0,
            flipped: 0,
        }
    }

    /// The backward pass to the input at stride 1, as a convolution of dy with the flipped,
    /// transposed filters: same kernel size, padding k − 1 − pad, no bias.
    fn flipped(g: &ConvGeometry, batch: usize) -> Self {
        let forward = Self::new(g, batch);
        let reach = |k: usize| i32::try_from(k).expect("kernel size fits in i32") - 1 - forward.pad_h;
        Self {
            in_c: forward.out_c,
            in_h: forward.out_h,
            in_w: forward.out_w,
            out_c: forward.in_c,
            out_h: forward.in_h,
            out_w: forward.in_w,
            pad_h: reach(g.kernel_h),
            pad_w: reach(g.kernel_w),
            has_bias: 0,
            flipped: 1,
            ..forward
        }
    }

    /// The override constants of forward and jvp for this geometry: CHUNK, UNIT_STRIDE.
    fn specialization(&self) -> [f64; 2] {
        [chunk(self.k_w as usize) as f64, f64::from(u8::from(self.stride == 1))]
    }

    /// Values of one set of packed filters.
    fn packed_len(&self) -> usize {
        (self.in_c * self.k_h * self.k_wp) as usize * (self.out_c as usize).div_ceil(BLOCK) * BLOCK
    }
}

/// Taps read per step of a filter row of width `k_w`.
fn chunk(k_w: usize) -> usize {
    if k_w <= MAX_CHUNK {
        k_w
    } else {
        BLOCK
    }
}

/// A filter row of width `k_w`, padded with zero taps to whole steps.
fn padded_row(k_w: usize) -> usize {
    k_w.next_multiple_of(chunk(k_w))
}

/// Values of scratch space for packed filters that every kernel of layer `g` needs (see
/// [`forward`]); a multiple of 4.
pub fn filter_scratch_len(g: &ConvGeometry) -> usize {
    let forward = Params::new(g, 1);
    let flipped = Params::flipped(g, 1);
    (2 * forward.packed_len()).max(flipped.packed_len())
}

fn check_theta(kernel: &Kernel<Params>, g: &ConvGeometry, theta: &GpuBuffer<f32>) -> Result<(), GpuError> {
    check_len(kernel, theta, g.bias_offset + g.output.channels)
}

/// Packs the filters of θ (or of a direction) at the layer's offsets into `filters`, from
/// `at` values on, as the forward and Jv kernels read them (flipped and transposed when
/// `params` describes the backward pass to the input).
fn pack(
    rec: &mut Recorder,
    params: &Params,
    theta: &GpuBuffer<f32>,
    filters: &GpuBuffer<f32>,
    at: usize,
) -> Result<(), GpuError> {
    check_len(&PACK_FILTERS, filters, at + params.packed_len())?;
    let params = Params { v_filters: u32_of(at / BLOCK), ..*params };
    rec.dispatch(&PACK_FILTERS, &params, &[theta, filters], params.packed_len() as u64)
}

fn tiled(rec: &Recorder) -> bool {
    rec.gpu().conv_kernels() == ConvKernels::Tiled
}

/// y = conv(x; W, b) for `batch` samples; W and b are read from θ at the layer's offsets.
/// `filters` is scratch space of at least [`filter_scratch_len`] values (the windowed kernels
/// pack the filters there; the tiled ones read θ directly).
pub fn forward(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    filters: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&FORWARD, x, batch * g.input.len())?;
    check_theta(&FORWARD, g, theta)?;
    check_len(&FORWARD, y, batch * g.output.len())?;
    let params = Params::new(g, batch);
    if tiled(rec) {
        return matmul::conv(rec, &params, false, x, theta, y);
    }
    pack(rec, &params, theta, filters, 0)?;
    let tiles = output_tiles(&params);
    rec.dispatch_specialized(&FORWARD, &params.specialization(), &params, &[x, theta, filters, y], tiles)
}

/// Forward mode through the layer: ry = W·rx + V_W·x + V_b, where (V_W, V_b) is the
/// direction `v` at the layer's offsets. `rx` is None at the network's input, where R(x) = 0
/// and the product is the forward pass with V in place of θ. `filters` as in [`forward`].
#[allow(clippy::too_many_arguments)]
pub fn jvp(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    rx: Option<&GpuBuffer<f32>>,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    filters: &GpuBuffer<f32>,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let Some(rx) = rx else { return forward(rec, g, batch, x, v, filters, ry) };
    check_len(&JVP, x, batch * g.input.len())?;
    check_len(&JVP, rx, batch * g.input.len())?;
    check_theta(&JVP, g, theta)?;
    check_theta(&JVP, g, v)?;
    check_len(&JVP, ry, batch * g.output.len())?;
    let params = Params::new(g, batch);
    if tiled(rec) {
        // Two products into ry: V_W·x + V_b, then W·rx added to it.
        matmul::conv(rec, &params, false, x, v, ry)?;
        return matmul::conv(rec, &Params { has_bias: 0, ..params }, true, rx, theta, ry);
    }
    let v_at = params.packed_len();
    pack(rec, &params, theta, filters, 0)?;
    pack(rec, &params, v, filters, v_at)?;
    let params = Params { v_filters: u32_of(v_at / BLOCK), ..params };
    let tiles = output_tiles(&params);
    rec.dispatch_specialized(&JVP, &params.specialization(), &params, &[x, rx, v, filters, ry], tiles)
}

/// Invocations of the forward and Jv kernels: one per 4 channels × COLS columns of an output
/// row.
fn output_tiles(p: &Params) -> u64 {
    let (oc_blocks, col_blocks) = ((p.out_c as usize).div_ceil(BLOCK), (p.out_w as usize).div_ceil(COLS));
    (p.batch as usize * oc_blocks * p.out_h as usize * col_blocks) as u64
}

/// dx = ∂⟨dy, conv(x)⟩/∂x: the gradient passed on to the layer below. `filters` as in
/// [`forward`].
pub fn backward_input(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    theta: &GpuBuffer<f32>,
    filters: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&BACKWARD_INPUT, dy, batch * g.output.len())?;
    check_theta(&BACKWARD_INPUT, g, theta)?;
    check_len(&BACKWARD_INPUT, dx, batch * g.input.len())?;
    if g.stride == 1 {
        let params = Params::flipped(g, batch);
        if tiled(rec) {
            return matmul::conv(rec, &params, false, dy, theta, dx);
        }
        pack(rec, &params, theta, filters, 0)?;
        let tiles = output_tiles(&params);
        return rec.dispatch_specialized(
            &FORWARD,
            &params.specialization(),
            &params,
            &[dy, theta, filters, dx],
            tiles,
        );
    }
    let invocations =
        batch * g.input.channels.div_ceil(BLOCK) * g.input.height * g.input.width.div_ceil(BLOCK);
    rec.dispatch(&BACKWARD_INPUT, &Params::new(g, batch), &[dy, theta, dx], invocations as u64)
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
    check_len(&BACKWARD_PARAMS, x, batch * g.input.len())?;
    check_len(&BACKWARD_PARAMS, dy, batch * g.output.len())?;
    check_len(&BACKWARD_PARAMS, partial, groups * g.params())?;
    check_theta(&BACKWARD_PARAMS, g, grad)?;
    let params = Params { group_size: u32_of(group_size), groups: u32_of(groups), ..Params::new(g, batch) };
    let oc_blocks = g.output.channels.div_ceil(BLOCK);
    if g.stride == 1 && g.kernel_h * g.kernel_w <= MAX_SLIDING_TAPS {
        let invocations = groups * (oc_blocks * g.input.channels + g.output.channels);
        let specialization = [g.kernel_h as f64, g.kernel_w as f64];
        rec.dispatch_specialized(
            &BACKWARD_PARAMS_SLIDING,
            &specialization,
            &params,
            &[x, dy, partial],
            invocations as u64,
        )?;
    } else {
        let invocations = groups * (oc_blocks * g.fan_in().div_ceil(BLOCK) + g.output.channels);
        rec.dispatch(&BACKWARD_PARAMS, &params, &[x, dy, partial], invocations as u64)?;
    }
    super::blas1::accumulate_groups(rec, partial, groups, g.params(), grad, g.weight_offset)
}
