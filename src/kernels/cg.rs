//! The scalar updates of a CG step (cg.wgsl), read from and written to a scalars buffer, and
//! the vector updates that read their coefficient from it.

use bytemuck::{Pod, Zeroable};

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, Kernel, Recorder, CG};

const ALPHA: Kernel = Kernel::new(&CG, "alpha");
const BETA: Kernel = Kernel::new(&CG, "beta");
const AXPY_SCALAR: Kernel = Kernel::new(&CG, "axpy_scalar");
const XPAY_SCALAR: Kernel = Kernel::new(&CG, "xpay_scalar");

/// Slots of the CG scalars buffer (the constants at the top of cg.wgsl).
pub mod slot {
    pub const RR: usize = 0;
    pub const PGP: usize = 1;
    pub const ALPHA: usize = 2;
    pub const BETA: usize = 3;
    pub const RR_NEW: usize = 4;
    pub const STOP: usize = 5;
    pub const STOP_AT: usize = 6;
    pub const SAS: usize = 7;
    /// Slots in all.
    pub const COUNT: usize = 8;
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    slot: u32,
    step: u32,
    sign: f32,
}

/// α = rᵀr / pᵀAp, or a stop when pᵀAp ≤ 0 or α is not finite; accumulates sᵀAs.
pub fn alpha(rec: &mut Recorder, scalars: &GpuBuffer<f32>, step: usize) -> Result<(), GpuError> {
    check_len(ALPHA, scalars, slot::COUNT)?;
    let params = Params { len: 1, slot: 0, step: u32_of(step), sign: 0.0 };
    rec.dispatch(ALPHA, &params, &[scalars], 1)
}

/// β = rᵀr(new) / rᵀr, and rᵀr ← rᵀr(new).
pub fn beta(rec: &mut Recorder, scalars: &GpuBuffer<f32>) -> Result<(), GpuError> {
    check_len(BETA, scalars, slot::COUNT)?;
    rec.dispatch(BETA, &Params { len: 1, slot: 0, step: 0, sign: 0.0 }, &[scalars], 1)
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
    check_len(AXPY_SCALAR, scalars, slot + 1)?;
    check_len(AXPY_SCALAR, x, len)?;
    let params = Params { len: u32_of(len), slot: u32_of(slot), step: 0, sign };
    rec.dispatch(AXPY_SCALAR, &params, &[scalars, x, y], len as u64)
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
    check_len(XPAY_SCALAR, scalars, slot + 1)?;
    check_len(XPAY_SCALAR, x, len)?;
    let params = Params { len: u32_of(len), slot: u32_of(slot), step: 0, sign: 0.0 };
    rec.dispatch(XPAY_SCALAR, &params, &[scalars, x, y], len as u64)
}
