//! The scalar updates of a CG step (cg.wgsl), read from and written to a scalars buffer (β's
//! also cancels the next step's product once CG has stopped), the vector updates that read
//! their coefficient from it, and the kernels of the diagonal preconditioner (random sign
//! probes, their running estimate of diag(G_S), and M⁻¹ applied).

use super::{check_len, u32_of};
use crate::gpu::{Binding, GpuBuffer, GpuError, IndirectArgs, Recorder, Shader};

/// Slots of the CG scalars buffer; cg.wgsl is compiled with these values.
pub mod slot {
    /// rᵀr of the current residual.
    pub const RR: usize = 0;
    /// pᵀ(G + λI)p.
    pub const PGP: usize = 1;
    /// ρ / pᵀ(G + λI)p.
    pub const ALPHA: usize = 2;
    /// ρ(new) / ρ.
    pub const BETA: usize = 3;
    /// ρ = rᵀz of the current residual, z = M⁻¹r (rᵀr without a preconditioner).
    pub const RHO: usize = 4;
    /// 0 while CG runs, then why it stopped ([`super::Stop`]).
    pub const STOP: usize = 5;
    /// Steps whose update was kept.
    pub const STEP: usize = 6;
    /// Σ α ρ = sᵀ(G + λI)s so far.
    pub const SAS: usize = 7;
    /// gᵀs and sᵀs of the final s, for the line search and ρ.
    pub const GS: usize = 8;
    pub const SS: usize = 9;
    /// λ + 1/(C·l), which the products add.
    pub const DAMPING: usize = 10;
    /// CG has converged once rᵀr is at most this.
    pub const TOL_RR: usize = 11;
    /// λ + 1/(C·l) on every rank (DAMPING is rank 0's alone), which M adds to diag(G_S).
    pub const SHIFT: usize = 12;
    /// A whole number below 2^24, the solve's seed for the random probes.
    pub const PROBE_SEED: usize = 13;
    /// Slots in all.
    pub const COUNT: usize = 14;
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
        ("RHO", slot::RHO as u32),
        ("STOP", slot::STOP as u32),
        ("STEP", slot::STEP as u32),
        ("SAS", slot::SAS as u32),
        ("DAMPING", slot::DAMPING as u32),
        ("TOL_RR", slot::TOL_RR as u32),
        ("SHIFT", slot::SHIFT as u32),
        ("PROBE_SEED", slot::PROBE_SEED as u32),
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
        /// Which probe of a refresh a random vector is.
        seed: u32,
        /// M = (diag + shift)^exponent.
        exponent: f32,
        _pad: u32,
    }
}

crate::kernels! { KERNELS = [
    /// scalars, the partial sums of pᵀ(G + λI)p.
    ALPHA: Params = SHADER::alpha(ReadWrite, Read);
    /// scalars, the partial sums of rᵀr, the product's counts as recorded, its counts.
    BETA: Params = SHADER::beta(ReadWrite, Read, Read, ReadWrite);
    /// BETA's, with the partial sums of rᵀz, then those of rᵀr.
    BETA_PRECONDITIONED: Params = SHADER::beta_preconditioned(ReadWrite, Read, Read, ReadWrite, Read);
    /// scalars, p, (G + λI)p, s, r.
    UPDATE: Params = SHADER::update(Read, Read, Read, ReadWrite, ReadWrite);
    AXPY_SCALAR: Params = SHADER::axpy_scalar(Read, Read, ReadWrite);
    XPAY_SCALAR: Params = SHADER::xpay_scalar(Read, Read, ReadWrite);
    /// M⁻¹, r, z.
    PRECONDITION: Params = SHADER::precondition(Read, Read, ReadWrite);
    /// scalars, v.
    RADEMACHER: Params = SHADER::rademacher(Read, ReadWrite);
    /// v, G_S v, the estimate of diag(G_S).
    PROBE_ACCUMULATE: Params = SHADER::probe_accumulate(Read, Read, ReadWrite);
    /// scalars, the estimate of diag(G_S), M⁻¹.
    INVERSE_DIAGONAL: Params = SHADER::inverse_diagonal(Read, Read, ReadWrite);
] }

fn params(len: usize, slot: usize, sign: f32) -> Params {
    Params { len: u32_of(len), slot: u32_of(slot), sign, ..Params::default() }
}

/// pᵀAp = the sum of `partials` (blas1::dot_partials' `count` sums, in order), then
/// α = ρ / pᵀAp and the step counted, or a stop when pᵀAp ≤ 0 or a value is not finite;
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

/// rᵀr(new) = the sum of `partials`, which is ρ(new) too (plain CG): β = ρ(new) / ρ,
/// ρ ← ρ(new), rᵀr ← rᵀr(new), a stop once rᵀr ≤ scalars[TOL_RR]; then `section`'s counts for
/// their next replay: as recorded, or 0 once scalars[STOP] is set.
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

/// [`beta`] for preconditioned CG: ρ(new) = rᵀz from `rz_partials`, rᵀr from `rr_partials`
/// (`count` sums each).
pub fn beta_preconditioned(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    rz_partials: &GpuBuffer<f32>,
    rr_partials: &GpuBuffer<f32>,
    count: usize,
    section: &IndirectArgs,
) -> Result<(), GpuError> {
    let gated = section.args.len();
    check_len(&BETA_PRECONDITIONED, scalars, slot::COUNT)?;
    check_len(&BETA_PRECONDITIONED, rz_partials, count)?;
    check_len(&BETA_PRECONDITIONED, rr_partials, count)?;
    check_len(&BETA_PRECONDITIONED, &section.template, gated)?;
    let params = Params { partials: u32_of(count), gated: u32_of(gated), ..params(1, 0, 0.0) };
    let buffers: [&dyn Binding; 5] = [scalars, rz_partials, &section.template, &section.args, rr_partials];
    rec.dispatch(&BETA_PRECONDITIONED, &params, &buffers, 1)
}

/// z = M⁻¹ ⊙ r.
pub fn precondition(
    rec: &mut Recorder,
    m_inv: &GpuBuffer<f32>,
    r: &GpuBuffer<f32>,
    z: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = z.len();
    check_len(&PRECONDITION, m_inv, len)?;
    check_len(&PRECONDITION, r, len)?;
    rec.dispatch(&PRECONDITION, &params(len, 0, 0.0), &[m_inv, r, z], len as u64)
}

/// v = a vector of random signs, from scalars[PROBE_SEED] and `probe`.
pub fn rademacher(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    probe: usize,
    v: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = v.len();
    check_len(&RADEMACHER, scalars, slot::COUNT)?;
    let params = Params { seed: u32_of(probe), ..params(len, 0, 0.0) };
    rec.dispatch(&RADEMACHER, &params, &[scalars, v], len as u64)
}

/// d += weight·v ⊙ gv, d set to 0 first when `first`.
pub fn probe_accumulate(
    rec: &mut Recorder,
    v: &GpuBuffer<f32>,
    gv: &GpuBuffer<f32>,
    d: &GpuBuffer<f32>,
    weight: f32,
    first: bool,
) -> Result<(), GpuError> {
    let len = d.len();
    check_len(&PROBE_ACCUMULATE, v, len)?;
    check_len(&PROBE_ACCUMULATE, gv, len)?;
    let params = params(len, usize::from(first), weight);
    rec.dispatch(&PROBE_ACCUMULATE, &params, &[v, gv, d], len as u64)
}

/// M⁻¹ = (max(d, 0) + scalars[SHIFT])^(−exponent), elementwise.
pub fn inverse_diagonal(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    d: &GpuBuffer<f32>,
    exponent: f32,
    m_inv: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let len = m_inv.len();
    check_len(&INVERSE_DIAGONAL, scalars, slot::COUNT)?;
    check_len(&INVERSE_DIAGONAL, d, len)?;
    let params = Params { exponent, ..params(len, 0, 0.0) };
    rec.dispatch(&INVERSE_DIAGONAL, &params, &[scalars, d, m_inv], len as u64)
}
