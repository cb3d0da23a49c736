use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};

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
        _pad: [u32; 3],
    }
}

crate::kernels! { KERNELS = [
    FORWARD: Params = SHADER::relu_forward(Read, ReadWrite);
    BACKWARD: Params = SHADER::relu_backward(Read, Read, ReadWrite);
] }

/// y = max(x, 0) on the first `len` values.
pub fn relu_forward(
    rec: &mut Recorder,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
    len: usize,
) -> Result<(), GpuError> {
    check_len(&FORWARD, x, len)?;
    check_len(&FORWARD, y, len)?;
    rec.dispatch(&FORWARD, &Params { len: u32_of(len), _pad: [0; 3] }, &[x, y], len as u64)
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
    rec.dispatch(&BACKWARD, &Params { len: u32_of(len), _pad: [0; 3] }, &[y, dy, dx], len as u64)
}
