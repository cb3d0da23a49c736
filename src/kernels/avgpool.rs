//! Average pooling (shaders/avgpool.wgsl): the window's mean, padding counted; its backward
//! pass; forward mode is [`forward`] on the direction (the pass is linear).

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};
use crate::nn::AvgPoolGeometry;

pub(crate) static SHADER: Shader = Shader {
    name: "avgpool",
    trusted: true,
    workgroup_sum: false,
    constants: &[],
    parts: &[crate::shader_part!("avgpool")],
};

crate::uniform_params! {
    struct Params {
        planes: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride: u32,
        padding: u32,
        _pad: [u32; 3],
    }
}

crate::kernels! { KERNELS = [
    FORWARD: Params = SHADER::forward(Read, ReadWrite);
    BACKWARD: Params = SHADER::backward(Read, ReadWrite);
] }

impl Params {
    fn new(g: &AvgPoolGeometry, batch: usize) -> Self {
        Self {
            planes: u32_of(batch * g.input.channels),
            in_h: u32_of(g.input.height),
            in_w: u32_of(g.input.width),
            out_h: u32_of(g.output.height),
            out_w: u32_of(g.output.width),
            kernel_h: u32_of(g.kernel_h),
            kernel_w: u32_of(g.kernel_w),
            stride: u32_of(g.stride),
            padding: u32_of(g.padding),
            _pad: [0; 3],
        }
    }
}

/// y = the mean of each window of x (and, in forward mode, R(y) of R(x)).
pub fn forward(
    rec: &mut Recorder,
    g: &AvgPoolGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (batch * g.input.len(), batch * g.output.len());
    check_len(&FORWARD, x, len_in)?;
    check_len(&FORWARD, y, len_out)?;
    rec.dispatch(&FORWARD, &Params::new(g, batch), &[x, y], len_out as u64)
}

/// dx = the sum of dy over the windows that cover each input, over the window's area.
pub fn backward(
    rec: &mut Recorder,
    g: &AvgPoolGeometry,
    batch: usize,
    dy: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (batch * g.input.len(), batch * g.output.len());
    check_len(&BACKWARD, dy, len_out)?;
    check_len(&BACKWARD, dx, len_in)?;
    rec.dispatch(&BACKWARD, &Params::new(g, batch), &[dy, dx], len_in as u64)
}
