//! The scalar updates of a CG step (cg.wgsl), read from and written to a scalars buffer, and
//! the vector updates that read their coefficient from it.

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Recorder, Shader};

/// Slots of the CG scalars buffer; cg.wgsl is compiled with these values.
pub mod slot {
    /// rᵀr of the current residual.
    pub const RR: usize = 0;
    /// pᵀ(G + λI)p.
    pub const PGP: usize = 1;
    /// rᵀr / pᵀ(G + λI)p.
    pub const ALPHA: usize = 2;
    /// rᵀr(new) / rᵀr.
    pub const BETA: usize = 3;
    /// rᵀr of the updated residual.
    pub const RR_NEW: usize = 4;
    /// 1 once CG has broken down.
    pub const STOP: usize = 5;
    /// The step at which it did.
    pub const STOP_AT: usize = 6;
    /// Σ α rᵀr = sᵀ(G + λI)s so far.
    pub const SAS: usize = 7;
    /// gᵀs and sᵀs of the final s, for the line search and ρ.
    pub const GS: usize = 8;
    pub const SS: usize = 9;
    /// Slots in all.
    pub const COUNT: usize = 10;
}

pub(crate) static SHADER: Shader = Shader {
    name: "cg",
    constants: &[
        ("RR", slot::RR as u32),
        ("PGP", slot::PGP as u32),
        ("ALPHA", slot::ALPHA as u32),
        ("BETA", slot::BETA as u32),
        ("RR_NEW", slot::RR_NEW as u32),
        ("STOP", slot::STOP as u32),
        ("STOP_AT", slot::STOP_AT as u32),
        ("SAS", slot::SAS as u32),
    ],
    parts: &[crate::shader_part!("cg")],
};

crate::uniform_params! {
    struct Params {
        len: u32,
        slot: u32,
        step: u32,
        sign: f32,
    }
}

crate::kernels! { KERNELS = [
    ALPHA: Params = SHADER::alpha(ReadWrite);
    BETA: Params = SHADER::beta(ReadWrite);
    AXPY_SCALAR: Params = SHADER::axpy_scalar(Read, Read, ReadWrite);
    XPAY_SCALAR: Params = SHADER::xpay_scalar(Read, Read, ReadWrite);
] }

/// α = rᵀr / pᵀAp, or a stop when pᵀAp ≤ 0 or α is not finite; accumulates sᵀAs.
pub fn alpha(rec: &mut Recorder, scalars: &GpuBuffer<f32>, step: usize) -> Result<(), GpuError> {
    check_len(&ALPHA, scalars, slot::COUNT)?;
    let params = Params { len: 1, slot: 0, step: u32_of(step), sign: 0.0 };
    rec.dispatch(&ALPHA, &params, &[scalars], 1)
}

/// β = rᵀr(new) / rᵀr, and rᵀr ← rᵀr(new).
pub fn beta(rec: &mut Recorder, scalars: &GpuBuffer<f32>) -> Result<(), GpuError> {
    check_len(&BETA, scalars, slot::COUNT)?;
    rec.dispatch(&BETA, &Params { len: 1, slot: 0, step: 0, sign: 0.0 }, &[scalars], 1)
}

/// y += sign · scalars[slot] · x.
pub fn axpy_scalar(
    rec: &mut Recorder,
    sign: f32,
    scalars: &GpuBuffer<f32>,
    slot: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = y.len();
    check_len(&AXPY_SCALAR, scalars, slot + 1)?;
    check_len(&AXPY_SCALAR, x, len)?;
    let params = Params { len: u32_of(len), slot: u32_of(slot), step: 0, sign };
    rec.dispatch(&AXPY_SCALAR, &params, &[scalars, x, y], len as u64)
}

/// y = x + scalars[slot] · y.
pub fn xpay_scalar(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    slot: usize,
    x: &GpuBuffer<f32>,
    y: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = y.len();
    check_len(&XPAY_SCALAR, scalars, slot + 1)?;
    check_len(&XPAY_SCALAR, x, len)?;
    let params = Params { len: u32_of(len), slot: u32_of(slot), step: 0, sign: 0.0 };
    rec.dispatch(&XPAY_SCALAR, &params, &[scalars, x, y], len as u64)
}
