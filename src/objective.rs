//! The objective of a [`Problem`] and its gradient, over a whole data set in chunks:
//!
//!   f(θ) = θᵀθ / (2·C·l) + (1/l) Σ_i ξ(z_i; y_i),    ∇f = θ/(C·l) + (1/l) Σ_i J_iᵀ ∂ξ/∂z_i

use crate::data::Dataset;
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::{blas1, loss as loss_kernels};
use crate::nn::device::{backward, forward, Passes, Workspace};
use crate::nn::Network;
use crate::problem::Problem;

/// f, and what it is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub f: f64,
    /// (1/l) Σ ξ.
    pub mean_loss: f64,
    /// θᵀθ / (2·C·l).
    pub regularization: f64,
    /// ‖∇f‖ (0 when only f was evaluated).
    pub grad_norm: f64,
}

/// Correct predictions and samples per class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accuracy {
    pub correct: Vec<usize>,
    pub total: Vec<usize>,
}

impl Accuracy {
    /// The share of all samples predicted correctly.
    pub fn overall(&self) -> f64 {
        self.correct.iter().sum::<usize>() as f64 / self.total.iter().sum::<usize>().max(1) as f64
    }
}

/// Slots of the scalars buffer.
const THETA_SQ: usize = 0;
const GRAD_SQ: usize = 1;

/// Evaluates f and ∇f of one problem on the device.
pub struct Objective<'g> {
    gpu: &'g Gpu,
    problem: &'g Problem,
    workspace: Workspace,
    /// One loss value per sample of the data set being evaluated.
    losses: GpuBuffer<f32>,
    dot_scratch: GpuBuffer<f32>,
    scalars: GpuBuffer<f32>,
    progress: Option<Progress<'g>>,
}

/// Called with (chunks done, chunks in all) while a data set is evaluated.
pub type Progress<'g> = Box<dyn FnMut(usize, usize) + 'g>;

impl<'g> Objective<'g> {
    /// Chunks hold at most `execution.bsize` samples, fewer when the adapter cannot bind that
    /// many activations at once.
    pub fn new(execution: &Execution<'g>, problem: &'g Problem) -> Result<Self, Error> {
        problem.check()?;
        execution.check()?;
        let (gpu, network) = (execution.gpu, &problem.network);
        let capacity = execution.bsize.min(Workspace::max_capacity(gpu, network));
        let workspace = Workspace::new(execution, network, capacity, Passes::Gradient)?;
        let n = network.param_count();
        Ok(Self {
            gpu,
            problem,
            workspace,
            losses: gpu.zeros(capacity, "per-sample losses")?,
            dot_scratch: gpu.zeros(blas1::dot_scratch_len(n), "dot scratch")?,
            scalars: gpu.zeros(4, "scalars")?,
            progress: None,
        })
    }

    /// Reports progress chunk by chunk (each chunk is then waited for, so that the report is
    /// true; the pause between chunks costs little against a chunk's work).
    pub fn set_progress(&mut self, progress: Option<Progress<'g>>) {
        self.progress = progress;
    }

    pub fn network(&self) -> &'g Network {
        &self.problem.network
    }

    /// Samples per chunk.
    pub fn chunk_size(&self) -> usize {
        self.workspace.capacity()
    }

    /// Bytes of device memory the evaluation holds.
    pub fn bytes(&self) -> u64 {
        self.workspace.bytes() + self.losses.bytes() + self.dot_scratch.bytes() + self.scalars.bytes()
    }

    fn check(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<(), Error> {
        self.network().check_data(data.shape, data.classes)?;
        let n = self.network().param_count();
        if theta.len() != n {
            return Err(Error::ParamCount { expected: n, found: theta.len() });
        }
        if self.losses.len() < data.len() {
            self.losses = self.gpu.zeros(data.len(), "per-sample losses")?;
        }
        Ok(())
    }

    /// f(θ) and ∇f(θ) over `data`; the gradient is written to `grad`.
    pub fn value_and_grad(
        &mut self,
        data: &Dataset,
        theta: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
    ) -> Result<Evaluation, Error> {
        self.check(data, theta)?;
        let n = self.network().param_count();
        if grad.len() != n {
            return Err(Error::ParamCount { expected: n, found: grad.len() });
        }
        self.run_chunks(data, theta, Some(grad))?;
        let mut rec = self.gpu.recorder();
        blas1::axpy(&mut rec, self.problem.regularization(data.len()) as f32, theta, grad, n)?;
        blas1::dot(&mut rec, grad, grad, n, &self.dot_scratch, &self.scalars, GRAD_SQ)?;
        rec.submit();
        self.finish(data, true)
    }

    /// f(θ) over `data`, forward passes only.
    pub fn value(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Evaluation, Error> {
        self.check(data, theta)?;
        self.run_chunks(data, theta, None)?;
        self.finish(data, false)
    }

    /// The share of `data` whose largest output is its label, and the correct count per class.
    pub fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Accuracy, Error> {
        let z = self.outputs(data, theta)?;
        let k = self.network().outputs();
        let mut accuracy = Accuracy { correct: vec![0; k], total: vec![0; k] };
        for (row, &label) in z.chunks_exact(k).zip(&data.labels) {
            let predicted = (0..k).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            accuracy.total[label as usize] += 1;
            if predicted == label as usize {
                accuracy.correct[label as usize] += 1;
            }
        }
        Ok(accuracy)
    }

    /// Records the gradient of one mini-batch into `grad`: the batch mean of the loss
    /// gradient plus θ/(C·l), with l = data.len(). Writes the batch's samples to the device
    /// now (before the recorder is submitted) and the per-sample losses at
    /// `losses[indices' positions in the epoch]`, from `epoch_offset` on; read them with
    /// [`Objective::epoch_losses`].
    pub fn record_minibatch_grad(
        &mut self,
        rec: &mut Recorder,
        data: &Dataset,
        indices: &[usize],
        epoch_offset: usize,
        theta: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        self.check(data, theta)?;
        let batch = indices.len();
        assert!(
            batch <= self.chunk_size(),
            "a mini-batch of {batch} exceeds the workspace's {}",
            self.chunk_size()
        );
        let (ws, network) = (&self.workspace, self.network());
        let mut images = Vec::with_capacity(batch * network.input().len());
        for &i in indices {
            images.extend_from_slice(data.images_of(i..i + 1));
        }
        let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i]).collect();
        self.gpu.write(ws.inputs(), &images)?;
        self.gpu.write(ws.labels(), &labels)?;
        let n = network.param_count();
        blas1::fill(rec, grad, n, 0.0)?;
        forward(rec, network, ws, theta, batch)?;
        let z = ws.network_outputs();
        let scale = 1.0 / batch as f32;
        let k = network.outputs();
        loss_kernels::value_and_grad(
            rec,
            self.problem.loss,
            batch,
            k,
            z,
            ws.labels(),
            &self.losses,
            epoch_offset,
            ws.output_grad(),
            scale,
        )?;
        backward(rec, network, ws, theta, batch, grad, None)?;
        blas1::axpy(rec, self.problem.regularization(data.len()) as f32, theta, grad, n)?;
        Ok(())
    }

    /// The mean of the first `count` per-sample losses written by mini-batches this epoch.
    pub fn epoch_losses(&self, count: usize) -> Result<f64, Error> {
        let losses = self.gpu.read_range(&self.losses, 0, count)?;
        Ok(losses.iter().map(|&v| v as f64).sum::<f64>() / count.max(1) as f64)
    }

    /// The network's outputs z for every sample of `data`, [len, K].
    pub fn outputs(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Vec<f32>, Error> {
        self.check(data, theta)?;
        let k = self.network().outputs();
        let mut z = Vec::with_capacity(data.len() * k);
        for start in (0..data.len()).step_by(self.chunk_size()) {
            let batch = self.chunk_size().min(data.len() - start);
            self.gpu.write(self.workspace.inputs(), data.images_of(start..start + batch))?;
            let mut rec = self.gpu.recorder();
            forward(&mut rec, self.network(), &self.workspace, theta, batch)?;
            rec.submit();
            z.extend(self.gpu.read_range(self.workspace.network_outputs(), 0, batch * k)?);
        }
        Ok(z)
    }

    /// Forward (and, with `grad`, backward) over every chunk; per-sample losses land in
    /// `self.losses`, the data term of the gradient in `grad`. One submit per chunk.
    fn run_chunks(
        &mut self,
        data: &Dataset,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<(), Error> {
        let (ws, network) = (&self.workspace, self.network());
        let k = network.outputs();
        let scale = (1.0 / data.len().max(1) as f64) as f32;
        let mut rec = self.gpu.recorder();
        if let Some(grad) = grad {
            blas1::fill(&mut rec, grad, grad.len(), 0.0)?;
        }
        for start in (0..data.len()).step_by(ws.capacity()) {
            let batch = ws.capacity().min(data.len() - start);
            // Queued writes land before the next submit and after the previous one.
            self.gpu.write(ws.inputs(), data.images_of(start..start + batch))?;
            self.gpu.write(ws.labels(), &data.labels[start..start + batch])?;
            forward(&mut rec, network, ws, theta, batch)?;
            let z = ws.network_outputs();
            loss_kernels::value_and_grad(
                &mut rec,
                self.problem.loss,
                batch,
                k,
                z,
                ws.labels(),
                &self.losses,
                start,
                ws.output_grad(),
                scale,
            )?;
            if let Some(grad) = grad {
                backward(&mut rec, network, ws, theta, batch, grad, None)?;
            }
            rec.submit();
            if let Some(progress) = &mut self.progress {
                self.gpu.wait()?;
                progress((start + batch).div_ceil(ws.capacity()), data.len().div_ceil(ws.capacity()));
            }
            rec = self.gpu.recorder();
        }
        blas1::dot(&mut rec, theta, theta, theta.len(), &self.dot_scratch, &self.scalars, THETA_SQ)?;
        rec.submit();
        Ok(())
    }

    /// Reads back the per-sample losses and the squared norms, and adds them up in f64.
    fn finish(&self, data: &Dataset, with_grad: bool) -> Result<Evaluation, Error> {
        let losses = self.gpu.read_range(&self.losses, 0, data.len())?;
        let scalars = self.gpu.read(&self.scalars)?;
        let l = data.len().max(1) as f64;
        let mean_loss = losses.iter().map(|&v| v as f64).sum::<f64>() / l;
        let regularization = scalars[THETA_SQ] as f64 / (2.0 * self.problem.c * l);
        Ok(Evaluation {
            f: mean_loss + regularization,
            mean_loss,
            regularization,
            grad_norm: if with_grad { (scalars[GRAD_SQ] as f64).sqrt() } else { 0.0 },
        })
    }
}
