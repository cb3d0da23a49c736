use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};
use crate::nn::PoolGeometry;

pub(crate) static SHADER: Shader = Shader {
    name: "pool",
    trusted: true,
    workgroup_sum: false,
    constants: &[],
    parts: &[crate::shader_part!("pool")],
};

crate::uniform_params! {
    struct Params {
        planes: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        size: u32,
        stride: u32,
        relu: u32,
    }
}

crate::kernels! { KERNELS = [
    FORWARD: Params = SHADER::forward(Read, ReadWrite, ReadWrite);
    BACKWARD: Params = SHADER::backward(Read, Read, ReadWrite);
    JVP: Params = SHADER::jvp(Read, Read, ReadWrite);
] }

impl Params {
    fn new(g: &PoolGeometry, batch: usize) -> Self {
        Self {
            planes: u32_of(batch * g.input.channels),
            in_h: u32_of(g.input.height),
            in_w: u32_of(g.input.width),
            out_h: u32_of(g.output.height),
            out_w: u32_of(g.output.width),
            size: u32_of(g.size),
            stride: u32_of(g.stride),
            relu: 0,
        }
    }
}

/// y = the largest value of each window; argmax = its index within the input plane.
///
/// With `relu`, the pass is max-pool of max(x, 0) (a ReLU layer followed by this one): y is
/// the same, and windows whose largest value is not positive route nothing back, so
/// [`backward`] and [`jvp`] include ReLU's mask and the ReLU layer needs no pass of its own.
pub fn forward(
    rec: &mut Recorder,
    g: &PoolGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    argmax: &GpuBuffer<u32>,
    relu: bool,
) -> Result<(), GpuError> {
    check_len(&FORWARD, x, batch.saturating_mul(g.input.len()))?;
    check_len(&FORWARD, y, batch.saturating_mul(g.output.len()))?;
    check_len(&FORWARD, argmax, batch.saturating_mul(g.output.len()))?;
    let params = Params { relu: u32::from(relu), ..Params::new(g, batch) };
    rec.dispatch(&FORWARD, &params, &[x, y, argmax], (batch * g.output.len()) as u64)
}

/// dx = dy routed back to the stored arg-max positions (summed where windows overlap).
pub fn backward(
    rec: &mut Recorder,
    g: &PoolGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    argmax: &GpuBuffer<u32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&BACKWARD, dy, batch.saturating_mul(g.output.len()))?;
    check_len(&BACKWARD, argmax, batch.saturating_mul(g.output.len()))?;
    check_len(&BACKWARD, dx, batch.saturating_mul(g.input.len()))?;
    rec.dispatch(&BACKWARD, &Params::new(g, batch), &[dy, argmax, dx], (batch * g.input.len()) as u64)
}

/// Forward mode: ry = rx at the stored arg-max positions.
pub fn jvp(
    rec: &mut Recorder,
    g: &PoolGeometry,
    batch: usize,
    rx: &GpuBuffer<f32>,
    argmax: &GpuBuffer<u32>,
    ry: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    check_len(&JVP, rx, batch.saturating_mul(g.input.len()))?;
    check_len(&JVP, argmax, batch.saturating_mul(g.output.len()))?;
    check_len(&JVP, ry, batch.saturating_mul(g.output.len()))?;
    rec.dispatch(&JVP, &Params::new(g, batch), &[rx, argmax, ry], (batch * g.output.len()) as u64)
}
