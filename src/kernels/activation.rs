use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};
use crate::nn::Smooth;

pub(crate) static SHADER: Shader = Shader {
    name: "activation",
    trusted: true,
    workgroup_sum: false,
    constants: &[],
    parts: &[crate::shader_part!("activation")],
};

crate::uniform_params! {
    struct Params {
        len: u32,
        /// The smooth function: 0 tanh, 1 sigmoid.
        function: u32,
        _pad: [u32; 2],
    }
}

crate::kernels! { KERNELS = [
    FORWARD: Params = SHADER::relu_forward(Read, ReadWrite);
    BACKWARD: Params = SHADER::relu_backward(Read, Read, ReadWrite);
    SMOOTH_FORWARD: Params = SHADER::smooth_forward(Read, ReadWrite);
    SMOOTH_BACKWARD: Params = SHADER::smooth_backward(Read, Read, ReadWrite);
] }

fn params(len: usize, function: Option<Smooth>) -> Params {
    let function = match function {
        None | Some(Smooth::Tanh) => 0,
        Some(Smooth::Sigmoid) => 1,
    };
    Params { len: u32_of(len), function, _pad: [0; 2] }
}

/// y = max(x, 0) on the first `len` values.
pub fn relu_forward(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&FORWARD, x, len)?;
    check_len(&FORWARD, y, len)?;
    rec.dispatch(&FORWARD, &params(len, None), &[x, y], len as u64)
}

/// dx = dy ⊙ 1(y > 0), with y the stored output of the forward pass. The same mask carries a
/// direction forward (Jv): R(out) = R(in) ⊙ 1(y > 0).
pub fn relu_backward(
    rec: &mut Recorder,
    y: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    for buffer in [y, dy, dx] {
        check_len(&BACKWARD, buffer, len)?;
    }
    rec.dispatch(&BACKWARD, &params(len, None), &[y, dy, dx], len as u64)
}

/// y = tanh(x) or sigmoid(x) on the first `len` values.
pub fn smooth_forward(
    rec: &mut Recorder,
    function: Smooth,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&SMOOTH_FORWARD, x, len)?;
    check_len(&SMOOTH_FORWARD, y, len)?;
    rec.dispatch(&SMOOTH_FORWARD, &params(len, Some(function)), &[x, y], len as u64)
}

/// dx = dy ⊙ f′, f′ from the stored output y (tanh: 1 − y², sigmoid: y(1 − y)); the same
/// product carries a direction forward (Jv).
pub fn smooth_backward(
    rec: &mut Recorder,
    function: Smooth,
    y: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    dx: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    for buffer in [y, dy, dx] {
        check_len(&SMOOTH_BACKWARD, buffer, len)?;
    }
    rec.dispatch(&SMOOTH_BACKWARD, &params(len, Some(function)), &[y, dy, dx], len as u64)
}
