//! Conjugate gradient for (G_S + λI)s = −g, entirely on the device: each step is one encoder
//! and one submit (the product, two dots, the α and β kernels, three vector updates), and the
//! host reads the residual back only every `check_every` steps.

use crate::curvature::Subsample;
use crate::error::Error;
use crate::gpu::{Gpu, GpuBuffer};
use crate::kernels::blas1;
use crate::kernels::cg::{self as kernels, slot};

/// The vectors and scalars of a solve; allocated once per run.
pub struct CgBuffers {
    /// The solution s.
    pub direction: GpuBuffer<f32>,
    residual: GpuBuffer<f32>,
    conjugate: GpuBuffer<f32>,
    product: GpuBuffer<f32>,
    scalars: GpuBuffer<f32>,
    scratch: GpuBuffer<f32>,
}

impl CgBuffers {
    pub fn new(gpu: &Gpu, n: usize) -> Result<Self, Error> {
        Ok(Self {
            direction: gpu.zeros(n, "CG s")?,
            residual: gpu.zeros(n, "CG r")?,
            conjugate: gpu.zeros(n, "CG p")?,
            product: gpu.zeros(n, "CG (G + λI)p")?,
            scalars: gpu.zeros(slot::COUNT, "CG scalars")?,
            scratch: gpu.zeros(blas1::dot_scratch_len(n), "CG dot scratch")?,
        })
    }
}

/// When CG stops.
#[derive(Clone, Copy, Debug)]
pub struct CgSettings {
    /// Stop when ‖r‖ ≤ xi·‖g‖.
    pub xi: f64,
    pub max_steps: usize,
    /// Read the residual back every this many steps.
    pub check_every: usize,
}

/// How a solve ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOutcome {
    /// Steps whose update was kept.
    pub steps: usize,
    pub residual_norm: f64,
    /// True when a step had pᵀ(G + λI)p ≤ 0 or a non-finite value; s is the last good iterate.
    pub broke_down: bool,
    /// gᵀs.
    pub gs: f64,
    /// sᵀG_S s without the λ term, from the CG recurrences: Σ αᵢ rᵢᵀrᵢ − λ sᵀs.
    pub s_g_s: f64,
}

/// Solves (G_S + λI)s = −g from s = 0; the solution is left in `buffers.direction`.
pub fn solve(
    gpu: &Gpu,
    subsample: &Subsample,
    lambda: f64,
    grad: &GpuBuffer<f32>,
    grad_norm: f64,
    settings: &CgSettings,
    buffers: &CgBuffers,
) -> Result<CgOutcome, Error> {
    let CgBuffers { direction: s, residual: r, conjugate: p, product: ap, scalars, scratch } = buffers;
    let n = s.len();
    let mut rec = gpu.recorder();
    blas1::fill(&mut rec, scalars, slot::COUNT, 0.0)?;
    blas1::fill(&mut rec, s, n, 0.0)?;
    blas1::copy(&mut rec, grad, 0, r, 0, n)?;
    blas1::scale(&mut rec, -1.0, r, n)?;
    blas1::copy(&mut rec, r, 0, p, 0, n)?;
    blas1::dot(&mut rec, r, r, n, scratch, scalars, slot::RR)?;
    rec.submit();

    let tolerance = settings.xi * grad_norm;
    let check_every = settings.check_every.max(1);
    let mut steps = 0;
    while steps < settings.max_steps {
        let mut rec = gpu.recorder();
        subsample.record_gauss_newton(&mut rec, p, lambda, ap)?;
        blas1::dot(&mut rec, p, ap, n, scratch, scalars, slot::PGP)?;
        kernels::alpha(&mut rec, scalars, steps)?;
        kernels::axpy_scalar(&mut rec, 1.0, scalars, slot::ALPHA, p, s)?;
        kernels::axpy_scalar(&mut rec, -1.0, scalars, slot::ALPHA, ap, r)?;
        blas1::dot(&mut rec, r, r, n, scratch, scalars, slot::RR_NEW)?;
        kernels::beta(&mut rec, scalars)?;
        kernels::xpay_scalar(&mut rec, scalars, slot::BETA, r, p)?;
        rec.submit();
        steps += 1;
        if steps % check_every == 0 || steps == settings.max_steps {
            let values = gpu.read(scalars)?;
            if values[slot::STOP] != 0.0 || (values[slot::RR] as f64).sqrt() <= tolerance {
                break;
            }
        }
    }
    // The final figures: gᵀs and sᵀs on the device, read back with the scalars.
    let mut rec = gpu.recorder();
    blas1::dot(&mut rec, grad, s, n, scratch, scalars, slot::GS)?;
    blas1::dot(&mut rec, s, s, n, scratch, scalars, slot::SS)?;
    rec.submit();
    let last = gpu.read(scalars)?;
    let broke_down = last[slot::STOP] != 0.0;
    if broke_down {
        steps = last[slot::STOP_AT] as usize;
    }
    let (gs, ss) = (last[slot::GS] as f64, last[slot::SS] as f64);
    Ok(CgOutcome {
        steps,
        // RR holds the residual of the last kept step (β does not move it after a stop).
        residual_norm: (last[slot::RR] as f64).sqrt(),
        broke_down,
        gs,
        s_g_s: last[slot::SAS] as f64 - lambda * ss,
    })
}
