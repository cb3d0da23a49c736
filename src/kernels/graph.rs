//! What residual networks add to a chain of layers (shaders/graph.wgsl): learnt scalar biases
//! and scales, the parameter-free subsampling shortcut, and the frozen per-channel affine map
//! of imported models. The sum of a block's branches is
//! blas1's [`add`](super::blas1::add); the scalars' gradients are sums over every value
//! ([`scalar_grad`]).

use super::{blas1, check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};
use crate::nn::{Shape, SubsampleGeometry};

pub(crate) static SHADER: Shader = Shader {
    name: "graph",
    trusted: true,
    workgroup_sum: false,
    constants: &[],
    parts: &[crate::shader_part!("graph")],
};

crate::uniform_params! {
    struct Params {
        len: u32,
        offset: u32,
        batch: u32,
        in_c: u32,
        in_h: u32,
        in_w: u32,
        out_c: u32,
        out_h: u32,
        out_w: u32,
        stride: u32,
        _pad: [u32; 2],
    }
}

crate::kernels! { KERNELS = [
    SHIFT: Params = SHADER::shift(Read, Read, ReadWrite);
    MULTIPLY: Params = SHADER::multiply(Read, Read, ReadWrite);
    BROADCAST: Params = SHADER::broadcast(Read, ReadWrite);
    SCALE_JVP: Params = SHADER::scale_jvp(Read, Read, Read, Read, ReadWrite);
    SUBSAMPLE_FORWARD: Params = SHADER::subsample_forward(Read, ReadWrite);
    SUBSAMPLE_BACKWARD: Params = SHADER::subsample_backward(Read, ReadWrite);
    AFFINE: Params = SHADER::affine(Read, Read, ReadWrite);
    AFFINE_LINEAR: Params = SHADER::affine_linear(Read, Read, ReadWrite);
] }

impl Params {
    fn scalar(len: usize, offset: usize) -> Self {
        Self { len: u32_of(len), offset: u32_of(offset), ..Self::default() }
    }

    fn subsample(g: &SubsampleGeometry, batch: usize) -> Self {
        Self {
            batch: u32_of(batch),
            in_c: u32_of(g.input.channels),
            in_h: u32_of(g.input.height),
            in_w: u32_of(g.input.width),
            out_c: u32_of(g.output.channels),
            out_h: u32_of(g.output.height),
            out_w: u32_of(g.output.width),
            stride: u32_of(g.stride),
            ..Self::default()
        }
    }
}

/// y = x + c\[offset\] on `len` values: a scalar bias (c = θ), or its forward mode (c = v).
pub fn shift(
    rec: &mut Recorder,
    c: &GpuBuffer<f32>,
    offset: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&SHIFT, c, offset + 1)?;
    check_len(&SHIFT, x, len)?;
    check_len(&SHIFT, y, len)?;
    rec.dispatch(&SHIFT, &Params::scalar(len, offset), &[c, x, y], len as u64)
}

/// y = c\[offset\] on `len` values: forward mode of a scalar bias where the direction is zero.
pub fn broadcast(
    rec: &mut Recorder,
    c: &GpuBuffer<f32>,
    offset: usize,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&BROADCAST, c, offset + 1)?;
    check_len(&BROADCAST, y, len)?;
    rec.dispatch(&BROADCAST, &Params::scalar(len, offset), &[c, y], len as u64)
}

/// y = c\[offset\] · x on `len` values: a scalar scale, its backward pass (dx = s·dy), or
/// forward mode where the direction below is zero (c = v).
pub fn multiply(
    rec: &mut Recorder,
    c: &GpuBuffer<f32>,
    offset: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&MULTIPLY, c, offset + 1)?;
    check_len(&MULTIPLY, x, len)?;
    check_len(&MULTIPLY, y, len)?;
    rec.dispatch(&MULTIPLY, &Params::scalar(len, offset), &[c, x, y], len as u64)
}

/// ry = θ\[offset\] · rx + v\[offset\] · x on `len` values: forward mode of a scalar scale.
#[allow(clippy::too_many_arguments)]
pub fn scale_jvp(
    rec: &mut Recorder,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    offset: usize,
    rx: &GpuBuffer<f32>,
    x: &GpuBuffer<f32>,
    ry: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&SCALE_JVP, theta, offset + 1)?;
    check_len(&SCALE_JVP, v, offset + 1)?;
    for buffer in [rx, x, ry] {
        check_len(&SCALE_JVP, buffer, len)?;
    }
    rec.dispatch(&SCALE_JVP, &Params::scalar(len, offset), &[theta, v, rx, x, ry], len as u64)
}

/// grad\[offset\] += Σ dy (a scalar bias's gradient) or, with `x`, Σ dy·x (a scale's), over `len`
/// values, summed in a fixed order through `scratch` (at least [`blas1::dot_groups`]`(len)`).
pub fn scalar_grad(
    rec: &mut Recorder,
    dy: &GpuBuffer<f32>,
    x: Option<&GpuBuffer<f32>>,
    len: usize,
    scratch: &GpuBuffer<f32>,
    grad: &GpuBuffer<f32>,
    offset: usize,
) -> Result<(), GpuError> {
    let groups = match x {
        Some(x) => blas1::dot_partials(rec, dy, x, len, scratch)?,
        None => blas1::sum_partials(rec, dy, len, scratch)?,
    };
    blas1::accumulate_groups(rec, scratch, groups, 1, grad, offset)
}

/// y = every `stride`-th row and column of x, zero channels appended (and R(y) of R(x)).
pub fn subsample_forward(
    rec: &mut Recorder,
    g: &SubsampleGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (batch * g.input.len(), batch * g.output.len());
    check_len(&SUBSAMPLE_FORWARD, x, len_in)?;
    check_len(&SUBSAMPLE_FORWARD, y, len_out)?;
    rec.dispatch(&SUBSAMPLE_FORWARD, &Params::subsample(g, batch), &[x, y], len_out as u64)
}

/// dx = dy at the rows and columns the forward pass kept, zero elsewhere.
pub fn subsample_backward(
    rec: &mut Recorder,
    g: &SubsampleGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (batch * g.input.len(), batch * g.output.len());
    check_len(&SUBSAMPLE_BACKWARD, dy, len_out)?;
    check_len(&SUBSAMPLE_BACKWARD, dx, len_in)?;
    rec.dispatch(&SUBSAMPLE_BACKWARD, &Params::subsample(g, batch), &[dy, dx], len_in as u64)
}

/// y = a\[c\]·x + b\[c\] over `batch` samples of `shape` (`coefficients` = a then b, per channel),
/// or with `shift` false y = a\[c\]·x: the backward pass and forward mode.
pub fn affine(
    rec: &mut Recorder,
    shape: Shape,
    batch: usize,
    coefficients: &GpuBuffer<f32>,
    shift: bool,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = batch * shape.len();
    let kernel = if shift { &AFFINE } else { &AFFINE_LINEAR };
    check_len(kernel, coefficients, 2 * shape.channels)?;
    check_len(kernel, x, len)?;
    check_len(kernel, y, len)?;
    let params = Params {
        len: u32_of(len),
        in_c: u32_of(shape.channels),
        in_h: u32_of(shape.height),
        in_w: u32_of(shape.width),
        ..Params::default()
    };
    rec.dispatch(kernel, &params, &[coefficients, x, y], len as u64)
}
