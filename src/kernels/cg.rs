//! A CG step after its product (cg.wgsl): two kernels that finish their dot products
//! themselves, update the vectors and keep the scalars in a buffer (the second also cancels
//! the next step's product once CG has stopped); a vector update that reads its coefficient
//! from that buffer; and the kernels of the diagonal preconditioner (random sign probes, their
//! running estimate of diag(G_S), and M⁻¹ applied).

use super::{blas1, check_len, u32_of};
use crate::gpu::{Binding, GpuBuffer, GpuError, IndirectArgs, Recorder, Shader, WORKGROUP_SIZE};

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
    /// ρ and STOP as the step's α found them, for its β (so that no kernel reads a slot it
    /// writes: see shaders/cg.wgsl).
    pub const RHO_STEP: usize = 14;
    pub const STOP_STEP: usize = 15;
    /// Which probe of the solve's preconditioner comes next (0 at the start of a solve):
    /// one recorded probe, replayed, draws every probe's signs.
    pub const PROBE_INDEX: usize = 16;
    /// Slots in all.
    pub const COUNT: usize = 17;
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
    workgroup_sum: true,
    constants: &[
        ("RR", slot::RR as u32),
        ("PGP", slot::PGP as u32),
        ("ALPHA", slot::ALPHA as u32),
        ("BETA", slot::BETA as u32),
        ("RHO", slot::RHO as u32),
        ("RHO_STEP", slot::RHO_STEP as u32),
        ("STOP", slot::STOP as u32),
        ("STOP_STEP", slot::STOP_STEP as u32),
        ("STEP", slot::STEP as u32),
        ("SAS", slot::SAS as u32),
        ("DAMPING", slot::DAMPING as u32),
        ("TOL_RR", slot::TOL_RR as u32),
        ("SHIFT", slot::SHIFT as u32),
        ("PROBE_SEED", slot::PROBE_SEED as u32),
        ("PROBE_INDEX", slot::PROBE_INDEX as u32),
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
        /// Partial sums of each dot product that advance and conjugate finish (and their
        /// workgroups).
        partials: u32,
        /// Indirect dispatch counts that conjugate sets.
        gated: u32,
        /// M = (diag + shift)^exponent.
        exponent: f32,
        /// Whether conjugate's ρ is rᵀz (the third part of its sums) rather than rᵀr.
        preconditioned: u32,
    }
}

crate::kernels! { KERNELS = [
    /// scalars, sums, p, (G + λI)p, s, r.
    ADVANCE: Params = SHADER::advance(ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite);
    /// ADVANCE's, then M⁻¹, z.
    ADVANCE_PRECONDITIONED: Params =
        SHADER::advance_preconditioned(ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite, Read, ReadWrite);
    /// scalars, sums, r (or z), p, the product's counts as recorded, its counts.
    CONJUGATE: Params = SHADER::conjugate(ReadWrite, ReadWrite, Read, ReadWrite, Read, ReadWrite);
    AXPY_SCALAR: Params = SHADER::axpy_scalar(Read, Read, ReadWrite);
    /// M⁻¹, r, z.
    PRECONDITION: Params = SHADER::precondition(Read, Read, ReadWrite);
    /// scalars, v.
    RADEMACHER: Params = SHADER::rademacher(Read, ReadWrite);
    /// scalars, v, G_S v, the estimate of diag(G_S).
    PROBE_ACCUMULATE: Params = SHADER::probe_accumulate(ReadWrite, Read, Read, ReadWrite);
    /// scalars, the estimate of diag(G_S), M⁻¹.
    INVERSE_DIAGONAL: Params = SHADER::inverse_diagonal(Read, Read, ReadWrite);
] }

fn params(len: usize, slot: usize, sign: f32) -> Params {
    Params { len: u32_of(len), slot: u32_of(slot), sign, ..Params::default() }
}

/// The vectors a CG step updates after its product.
pub struct StepVectors<'a> {
    pub p: &'a GpuBuffer<f32>,
    /// (G + λI)p.
    pub ap: &'a GpuBuffer<f32>,
    pub s: &'a GpuBuffer<f32>,
    pub r: &'a GpuBuffer<f32>,
    /// M⁻¹ and z = M⁻¹r, for preconditioned CG.
    pub preconditioner: Option<(&'a GpuBuffer<f32>, &'a GpuBuffer<f32>)>,
}

/// Scratch values of [`advance`] and [`conjugate`] for vectors of length `len`: three parts
/// of [`blas1::dot_groups`] partial sums (pᵀ(G + λI)p, rᵀr, rᵀz).
pub fn step_sums_len(len: usize) -> usize {
    3 * blas1::dot_groups(len)
}

/// α = ρ / pᵀ(G + λI)p from the partial sums [`blas1::dot_partials`] left in `sums`
/// (the step counted and sᵀAs accumulated, or a stop when pᵀAp ≤ 0 or a value is not
/// finite), then s += α·p, r −= α·(G + λI)p, z = M⁻¹r, and the partial sums of rᵀr (and rᵀz)
/// for [`conjugate`].
pub fn advance(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    sums: &GpuBuffer<f32>,
    v: &StepVectors,
) -> Result<(), GpuError> {
    let len = v.s.len();
    let groups = blas1::dot_groups(len);
    let kernel = if v.preconditioner.is_some() { &ADVANCE_PRECONDITIONED } else { &ADVANCE };
    check_len(kernel, scalars, slot::COUNT)?;
    check_len(kernel, sums, step_sums_len(len))?;
    for buffer in [v.p, v.ap, v.r] {
        check_len(kernel, buffer, len)?;
    }
    let params = Params { partials: u32_of(groups), ..params(len, 0, 0.0) };
    let invocations = (groups * WORKGROUP_SIZE as usize) as u64;
    match v.preconditioner {
        None => rec.dispatch(kernel, &params, &[scalars, sums, v.p, v.ap, v.s, v.r], invocations),
        Some((m_inv, z)) => {
            check_len(kernel, m_inv, len)?;
            check_len(kernel, z, len)?;
            rec.dispatch(kernel, &params, &[scalars, sums, v.p, v.ap, v.s, v.r, m_inv, z], invocations)
        }
    }
}

/// β = ρ(new) / ρ from [`advance`]'s partial sums (ρ = rᵀz when `preconditioned`, else rᵀr),
/// p = source + β·p (`source` is r, or z), ρ and rᵀr recorded, a stop once rᵀr ≤
/// `scalars[TOL_RR]`; then `section`'s counts for their next replay: as recorded, or 0 once
/// `scalars[STOP]` is set.
pub fn conjugate(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    sums: &GpuBuffer<f32>,
    source: &GpuBuffer<f32>,
    p: &GpuBuffer<f32>,
    preconditioned: bool,
    section: &IndirectArgs,
) -> Result<(), GpuError> {
    let len = p.len();
    let (groups, gated) = (blas1::dot_groups(len), section.args.len());
    check_len(&CONJUGATE, scalars, slot::COUNT)?;
    check_len(&CONJUGATE, sums, step_sums_len(len))?;
    check_len(&CONJUGATE, source, len)?;
    check_len(&CONJUGATE, &section.template, gated)?;
    let params = Params {
        partials: u32_of(groups),
        gated: u32_of(gated),
        preconditioned: u32::from(preconditioned),
        ..params(len, 0, 0.0)
    };
    let buffers: [&dyn Binding; 6] = [scalars, sums, source, p, &section.template, &section.args];
    rec.dispatch(&CONJUGATE, &params, &buffers, (groups * WORKGROUP_SIZE as usize) as u64)
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

/// v = a vector of random signs, from `scalars[PROBE_SEED]` and `scalars[PROBE_INDEX]`.
pub fn rademacher(rec: &mut Recorder, scalars: &GpuBuffer<f32>, v: &GpuBuffer<f32>) -> Result<(), GpuError> {
    let len = v.len();
    check_len(&RADEMACHER, scalars, slot::COUNT)?;
    rec.dispatch(&RADEMACHER, &params(len, 0, 0.0), &[scalars, v], len as u64)
}

/// d += weight·v ⊙ gv, and `scalars[PROBE_INDEX]` moves on by one.
pub fn probe_accumulate(
    rec: &mut Recorder,
    scalars: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    gv: &GpuBuffer<f32>,
    d: &GpuBuffer<f32>,
    weight: f32,
) -> Result<(), GpuError> {
    let len = d.len();
    check_len(&PROBE_ACCUMULATE, scalars, slot::COUNT)?;
    check_len(&PROBE_ACCUMULATE, v, len)?;
    check_len(&PROBE_ACCUMULATE, gv, len)?;
    rec.dispatch(&PROBE_ACCUMULATE, &params(len, 0, weight), &[scalars, v, gv, d], len as u64)
}

/// M⁻¹ = (max(d, 0) + `scalars[SHIFT]`)^(−exponent), elementwise.
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
