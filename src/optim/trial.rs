//! The trial point of a step, θ + α·s, and its acceptance θ ← θ + α·s, on the device: two
//! programs recorded once for a θ buffer and a direction buffer and replayed, α read from a
//! one-value buffer so that one program serves every step length. Newton-CG's line search and
//! SGN's unit step share them.

use crate::error::Error;
use crate::gpu::{Gpu, GpuBuffer, Program};
use crate::kernels::{blas1, cg as cg_kernels};

pub(crate) struct TrialPoint {
    /// θ + α·s.
    point: GpuBuffer<f32>,
    /// [α], as the trial program reads it.
    step_length: GpuBuffer<f32>,
    /// The ids of the θ and s buffers the programs bind, the trial program and the accept.
    programs: Option<((u64, u64), Program, Program)>,
}

impl TrialPoint {
    pub(crate) fn new(gpu: &Gpu, n: usize) -> Result<Self, Error> {
        Ok(Self {
            point: gpu.zeros(n, "θ + αs")?,
            step_length: gpu.zeros(1, "step length α")?,
            programs: None,
        })
    }

    /// θ + α·s, as the last [`TrialPoint::set`] left it.
    pub(crate) fn point(&self) -> &GpuBuffer<f32> {
        &self.point
    }

    /// Submits the trial point θ + α·s.
    pub(crate) fn set(
        &mut self,
        gpu: &Gpu,
        theta: &GpuBuffer<f32>,
        direction: &GpuBuffer<f32>,
        alpha: f64,
    ) -> Result<(), Error> {
        let key = (theta.id(), direction.id());
        if self.programs.as_ref().is_none_or(|(bound, _, _)| *bound != key) {
            self.programs =
                Some((key, self.record_trial(gpu, theta, direction)?, self.record_accept(gpu, theta)?));
        }
        gpu.write(&self.step_length, &[alpha as f32])?;
        let (_, trial, _) = self.programs.as_ref().expect("recorded above");
        gpu.submit(&[trial])?;
        Ok(())
    }

    /// Submits θ ← the trial point of the last [`TrialPoint::set`].
    pub(crate) fn accept(&self, gpu: &Gpu) -> Result<(), Error> {
        let (_, _, accept) = self.programs.as_ref().expect("a trial point is set before it is accepted");
        gpu.submit(&[accept])?;
        Ok(())
    }

    fn record_trial(
        &self,
        gpu: &Gpu,
        theta: &GpuBuffer<f32>,
        direction: &GpuBuffer<f32>,
    ) -> Result<Program, Error> {
        let mut rec = gpu.recorder();
        blas1::copy(&mut rec, theta, 0, &self.point, 0, theta.len())?;
        cg_kernels::axpy_scalar(&mut rec, 1.0, &self.step_length, 0, direction, &self.point)?;
        Ok(rec.finish()?)
    }

    fn record_accept(&self, gpu: &Gpu, theta: &GpuBuffer<f32>) -> Result<Program, Error> {
        let mut rec = gpu.recorder();
        blas1::copy(&mut rec, &self.point, 0, theta, 0, theta.len())?;
        Ok(rec.finish()?)
    }
}
