//! The scalar updates of a CG step (cg.wgsl), read from and written to a scalars buffer (β's
//! also cancels the next step's product once CG has stopped), and the vector updates that
//! read their coefficient from it.

use super::{check_len, u32_of};
use crate::gpu::{GpuBuffer, GpuError, IndirectArgs, Recorder, Shader};

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
    /// 0 while CG runs, then why it stopped ([`super::Stop`]).
    pub const STOP: usize = 5;
    /// Steps whose update was kept.
    pub const STEP: usize = 6;
    /// Σ α rᵀr = sᵀ(G + λI)s so far.
    pub const SAS: usize = 7;
    /// gᵀs and sᵀs of the final s, for the line search and ρ.
    pub const GS: usize = 8;
    pub const SS: usize = 9;
    /// λ + 1/(C·l), which the products add.
    pub const DAMPING: usize = 10;
    /// CG has converged once rᵀr is at most this.
    pub const TOL_RR: usize = 11;
    /// Slots in all.
    pub const COUNT: usize = 12;
}

/// Why CG stopped, as the STOP slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// ‖r‖ ≤ ξ‖g‖.
    Converged = 1,
    /// pᵀ(G + λI)p ≤ 0.
    Breakdown = 2,
    /// A value was NaN or infinite.
    NonFinite = 3,
}

impl Stop {
    /// The reason a STOP slot holds, if any.
    pub fn from_slot(value: f32) -> Option<Self> {
        [Self::Converged, Self::Breakdown, Self::NonFinite].into_iter().find(|s| *s as u32 as f32 == value)
    }
}

pub(crate) static SHADER: Shader = Shader {
    name: "cg",
    trusted: true,
    constants: &[
        ("RR", slot::RR as u32),
        ("PGP", slot::PGP as u32),
        ("ALPHA", slot::ALPHA as u32),
        ("BETA", slot::BETA as u32),
        ("RR_NEW", slot::RR_NEW as u32),
        ("STOP", slot::STOP as u32),
        ("STEP", slot::STEP as u32),
        ("SAS", slot::SAS as u32),
        ("DAMPING", slot::DAMPING as u32),
        ("TOL_RR", slot::TOL_RR as u32),
        ("CONVERGED", Stop::Converged as u32),
        ("BREAKDOWN", Stop::Breakdown as u32),
        ("NON_FINITE", Stop::NonFinite as u32),
    ],
    parts: &[crate::shader_part!("cg")],
};

crate::uniform_params! {
    struct Params {
        len: u32,
        slot: u32,
        sign: f32,
        /// Partial sums of a dot product that alpha and beta finish.
        partials: u32,
        /// Indirect dispatch counts that beta sets.
        gated: u32,
        _pad: [u32; 3],
    }
}

crate::kernels! { KERNELS = [
    /// scalars, the partial sums of pᵀ(G + λI)p.
    ALPHA: Params = SHADER::alpha(ReadWrite, Read);
    /// scalars, the partial sums of rᵀr, the product's counts as recorded, its counts.
    BETA: Params = SHADER::beta(ReadWrite, Read, Read, ReadWrite);
    /// scalars, p, (G + λI)p, s, r.
    UPDATE: Params = SHADER::update(Read, Read, Read, ReadWrite, ReadWrite);
    AXPY_SCALAR: Params = SHADER::axpy_scalar(Read, Read, ReadWrite);
    XPAY_SCALAR: Params = SHADER::xpay_scalar(Read, Read, ReadWrite);
] }

fn params(len: usize, slot: usize, sign: f32) -> Params {
    Params { len: u32_of(len), slot: u32_of(slot), sign, ..Params::default() }
}

/// pᵀAp = the sum of `partials` (blas1::dot_partials' `count` sums, in order), then
/// α = rᵀr / pᵀAp and the step counted, or a stop when pᵀAp ≤ 0 or a value is not finite;
/// accumulates sᵀAs.
pub fn alpha(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    partials: &GpuBuffer<f32>,
    count: usize,
) -> Result<(), GpuError> {
    check_len(&ALPHA, scalars, slot::COUNT)?;
    check_len(&ALPHA, partials, count)?;
    let params = Params { partials: u32_of(count), ..params(1, 0, 0.0) };
    rec.dispatch(&ALPHA, &params, &[scalars, partials], 1)
}

/// rᵀr(new) = the sum of `partials`, β = rᵀr(new) / rᵀr, rᵀr ← rᵀr(new), a stop once
/// rᵀr ≤ scalars[TOL_RR]; then `section`'s counts for their next replay: as recorded, or 0
/// once scalars[STOP] is set.
pub fn beta(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    partials: &GpuBuffer<f32>,
    count: usize,
    section: &IndirectArgs,
) -> Result<(), GpuError> {
    let gated = section.args.len();
    check_len(&BETA, scalars, slot::COUNT)?;
    check_len(&BETA, partials, count)?;
    check_len(&BETA, &section.template, gated)?;
    let params = Params { partials: u32_of(count), gated: u32_of(gated), ..params(1, 0, 0.0) };
    rec.dispatch(&BETA, &params, &[scalars, partials, &section.template, &section.args], 1)
}

/// s += α·p and r −= α·ap, α from scalars[ALPHA].
pub fn update(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    p: &GpuBuffer<f32>,
    ap: &GpuBuffer<f32>,
    s: &GpuBuffer<f32>,
    r: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = s.len();
    check_len(&UPDATE, scalars, slot::COUNT)?;
    for buffer in [p, ap, r] {
        check_len(&UPDATE, buffer, len)?;
    }
    rec.dispatch(&UPDATE, &params(len, 0, 0.0), &[scalars, p, ap, s, r], len as u64)
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
    rec.dispatch(&AXPY_SCALAR, &params(len, slot, sign), &[scalars, x, y], len as u64)
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
    rec.dispatch(&XPAY_SCALAR, &params(len, slot, 0.0), &[scalars, x, y], len as u64)
}
