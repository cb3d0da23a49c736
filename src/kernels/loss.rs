use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Kernel, Recorder, Shader};
use crate::loss::Loss;

/// Not trusted: it reads z at each sample's label, which a caller could set out of range
/// after the data set checked it; the checks cost nothing beside the convolutions.
pub(crate) static SHADER: Shader = Shader {
    name: "loss",
    trusted: false,
    workgroup_sum: false,
    constants: &[],
    parts: &[crate::shader_part!("loss")],
};

crate::uniform_params! {
    struct Params {
        batch: u32,
        classes: u32,
        loss_off: u32,
        scale: f32,
    }
}

crate::kernels! { KERNELS = [
    SQUARED_ERROR: Params = SHADER::squared_error(Read, Read, ReadWrite, ReadWrite);
    SOFTMAX_CROSS_ENTROPY: Params = SHADER::softmax_cross_entropy(Read, Read, ReadWrite, ReadWrite);
    /// B is constant for squared error: no z.
    SQUARED_ERROR_HESSIAN: Params = SHADER::squared_error_hessian(Read, ReadWrite);
    SOFTMAX_HESSIAN: Params = SHADER::softmax_hessian(Read, Read, ReadWrite);
] }

fn hessian_kernel(loss: Loss) -> &'static Kernel<Params> {
    match loss {
        Loss::SquaredError => &SQUARED_ERROR_HESSIAN,
        Loss::CrossEntropy => &SOFTMAX_HESSIAN,
    }
}

fn kernel(loss: Loss) -> &'static Kernel<Params> {
    match loss {
        Loss::SquaredError => &SQUARED_ERROR,
        Loss::CrossEntropy => &SOFTMAX_CROSS_ENTROPY,
    }
}

/// Per-sample ξ(z_n; y_n) into `values[values_offset + n]` and `scale · ∂ξ/∂z` into `dz`.
#[allow(clippy::too_many_arguments)]
pub fn value_and_grad(
    rec: &mut Recorder,
    loss: Loss,
    batch: usize,
    classes: usize,
    z: &GpuBuffer<f32>,
    labels: &GpuBuffer<u32>,
    values: &GpuBuffer<f32>,
    values_offset: usize,
    dz: &GpuBuffer<f32>,
    scale: f32,
) -> Result<(), GpuError> {
    let k = kernel(loss);
    check_len(k, z, batch.saturating_mul(classes))?;
    check_len(k, labels, batch)?;
    check_len(k, values, values_offset + batch)?;
    check_len(k, dz, batch.saturating_mul(classes))?;
    let params =
        Params { batch: u32_of(batch), classes: u32_of(classes), loss_off: u32_of(values_offset), scale };
    rec.dispatch(k, &params, &[z, labels, values, dz], batch as u64)
}

/// bu = scale · B(z)·u per sample, with B = ∂²ξ/∂z² never formed.
#[allow(clippy::too_many_arguments)]
pub fn hessian_product(
    rec: &mut Recorder,
    loss: Loss,
    batch: usize,
    classes: usize,
    z: &GpuBuffer<f32>,
    u: &GpuBuffer<f32>,
    bu: &GpuBuffer<f32>,
    scale: f32,
) -> Result<(), GpuError> {
    let k = hessian_kernel(loss);
    for buffer in [z, u, bu] {
        check_len(k, buffer, batch.saturating_mul(classes))?;
    }
    let params = Params { batch: u32_of(batch), classes: u32_of(classes), loss_off: 0, scale };
    match loss {
        Loss::SquaredError => rec.dispatch(k, &params, &[u, bu], batch as u64),
        Loss::CrossEntropy => rec.dispatch(k, &params, &[z, u, bu], batch as u64),
    }
}
