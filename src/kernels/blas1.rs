use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Kernel, Recorder, Shader, WORKGROUP_SIZE};

pub(crate) static SHADER: Shader = Shader {
    name: "blas1",
    trusted: true,
    workgroup_sum: true,
    constants: &[],
    parts: &[crate::shader_part!("blas1")],
};

crate::kernels! { KERNELS = [
    FILL: Params = SHADER::fill(ReadWrite);
    COPY: Params = SHADER::copy(Read, ReadWrite);
    SCALE: Params = SHADER::scale(ReadWrite);
    AXPY: Params = SHADER::axpy(Read, ReadWrite);
    ADD: Params = SHADER::add(Read, Read, ReadWrite);
    SUM_PARTIAL: Params = SHADER::sum_partial(Read, ReadWrite);
    DOT_PARTIAL: Params = SHADER::dot_partial(Read, Read, ReadWrite);
    DOT_FINAL: Params = SHADER::dot_final(Read, ReadWrite);
    NORM_FINAL: Params = SHADER::norm_final(Read, ReadWrite);
    ACCUMULATE_GROUPS: Params = SHADER::accumulate_groups(Read, ReadWrite);
] }

/// At most this many partial sums (one per workgroup) in the first pass of a dot product, so
/// that a kernel that finishes the sum reads few values however long the vectors are.
pub const MAX_DOT_GROUPS: usize = 256;

/// Values each invocation of the first pass sums at least, before the grid reaches
/// [`MAX_DOT_GROUPS`] workgroups.
const DOT_VALUES_PER_INVOCATION: usize = 4;

crate::uniform_params! {
    struct Params {
        len: u32,
        block: u32,
        offset: u32,
        alpha: f32,
        source: u32,
        _pad: [u32; 3],
    }
}

impl Params {
    fn len(len: usize) -> Self {
        Self { len: u32_of(len), block: 0, offset: 0, alpha: 0.0, source: 0, _pad: [0; 3] }
    }
}

/// y[..len] = value.
pub fn fill(rec: &mut Recorder, y: &GpuBuffer<f32>, len: usize, value: f32) -> Result<(), GpuError> {
    check_len(&FILL, y, len)?;
    rec.dispatch(&FILL, &Params { alpha: value, ..Params::len(len) }, &[y], len as u64)
}

/// y[to..to + len] = x[from..from + len], inside the compute pass (no pass break, unlike a
/// buffer-to-buffer copy).
pub fn copy(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    from: usize,
    y: &GpuBuffer<f32>,
    to: usize,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&COPY, x, from + len)?;
    check_len(&COPY, y, to + len)?;
    let params = Params { source: u32_of(from), offset: u32_of(to), ..Params::len(len) };
    rec.dispatch(&COPY, &params, &[x, y], len as u64)
}

/// y[..len] *= alpha.
pub fn scale(rec: &mut Recorder, alpha: f32, y: &GpuBuffer<f32>, len: usize) -> Result<(), GpuError> {
    check_len(&SCALE, y, len)?;
    rec.dispatch(&SCALE, &Params { alpha, ..Params::len(len) }, &[y], len as u64)
}

/// y[..len] += alpha · x[..len].
pub fn axpy(
    rec: &mut Recorder,
    alpha: f32,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&AXPY, x, len)?;
    check_len(&AXPY, y, len)?;
    rec.dispatch(&AXPY, &Params { alpha, ..Params::len(len) }, &[x, y], len as u64)
}

/// z[..len] = x[..len] + y[..len].
pub fn add(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    z: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    for buffer in [x, y, z] {
        check_len(&ADD, buffer, len)?;
    }
    rec.dispatch(&ADD, &Params::len(len), &[x, y, z], len as u64)
}

/// Workgroups of the first pass of a dot product of length `len`: its partial sums, and the
/// scratch values it needs.
pub fn dot_groups(len: usize) -> usize {
    len.div_ceil(WORKGROUP_SIZE as usize * DOT_VALUES_PER_INVOCATION).clamp(1, MAX_DOT_GROUPS)
}

/// `scalars[slot]` = xᵀy over the first `len` values, by a two-pass reduction in a fixed order.
/// `scratch` holds at least [`dot_groups`]`(len)` values.
pub fn dot(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
    scratch: &GpuBuffer<f32>,
    scalars: &GpuBuffer<f32>,
    slot: usize,
) -> Result<(), GpuError> {
    reduce(rec, x, y, len, scratch, scalars, slot, &DOT_FINAL)
}

/// `scalars[slot]` = ‖x‖ over the first `len` values, in the same fixed order as [`dot`].
pub fn norm(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    len: usize,
    scratch: &GpuBuffer<f32>,
    scalars: &GpuBuffer<f32>,
    slot: usize,
) -> Result<(), GpuError> {
    reduce(rec, x, x, len, scratch, scalars, slot, &NORM_FINAL)
}

/// `scratch[b]` = the sum of `x[i]·y[i]` over the values of workgroup b of [`dot_groups`]`(len)`
/// (i = b·WG + t, then every groups·WG-th after it, so that neighbouring invocations load
/// neighbouring values): the first pass of [`dot`], for kernels that finish the sum
/// themselves. Returns the number of partial sums.
pub fn dot_partials(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
    scratch: &GpuBuffer<f32>,
) -> Result<usize, GpuError> {
    let groups = dot_groups(len);
    check_len(&DOT_PARTIAL, x, len)?;
    check_len(&DOT_PARTIAL, y, len)?;
    check_len(&DOT_PARTIAL, scratch, groups)?;
    rec.dispatch(
        &DOT_PARTIAL,
        &Params::len(len),
        &[x, y, scratch],
        (groups * WORKGROUP_SIZE as usize) as u64,
    )?;
    Ok(groups)
}

/// `scratch[b]` = the sum of `x[i]` over the values of workgroup b, as [`dot_partials`] sums
/// products. Returns the number of partial sums.
pub fn sum_partials(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    len: usize,
    scratch: &GpuBuffer<f32>,
) -> Result<usize, GpuError> {
    let groups = dot_groups(len);
    check_len(&SUM_PARTIAL, x, len)?;
    check_len(&SUM_PARTIAL, scratch, groups)?;
    rec.dispatch(&SUM_PARTIAL, &Params::len(len), &[x, scratch], (groups * WORKGROUP_SIZE as usize) as u64)?;
    Ok(groups)
}

#[allow(clippy::too_many_arguments)]
fn reduce(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
    scratch: &GpuBuffer<f32>,
    scalars: &GpuBuffer<f32>,
    slot: usize,
    last_pass: &'static Kernel<Params>,
) -> Result<(), GpuError> {
    check_len(last_pass, scalars, slot + 1)?;
    let blocks = dot_partials(rec, x, y, len, scratch)?;
    let last = Params { offset: u32_of(slot), ..Params::len(blocks) };
    rec.dispatch(last_pass, &last, &[scratch, scalars], 1)
}

/// y[offset + k] += Σ_g partial[g·len + k] for k < len, over `groups` groups in order.
pub fn accumulate_groups(
    rec: &mut Recorder,
    partial: &GpuBuffer<f32>,
    groups: usize,
    len: usize,
    y: &GpuBuffer<f32>,
    offset: usize,
) -> Result<(), GpuError> {
    check_len(&ACCUMULATE_GROUPS, partial, groups * len)?;
    check_len(&ACCUMULATE_GROUPS, y, offset + len)?;
    let params = Params { block: u32_of(groups), offset: u32_of(offset), ..Params::len(len) };
    rec.dispatch(&ACCUMULATE_GROUPS, &params, &[partial, y], len as u64)
}
