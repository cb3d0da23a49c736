//! The objective of a [`Problem`] and its gradient, over a whole data set in chunks:
//!
//!   f(θ) = θᵀθ / (2·C·l) + (1/l) Σ_i ξ(z_i; y_i),    ∇f = θ/(C·l) + (1/l) Σ_i J_iᵀ ∂ξ/∂z_i
//!
//! Each chunk's work is a program recorded the first time it is needed and replayed after:
//! an evaluation writes each chunk's samples and submits, creating nothing on the device.

use std::collections::HashMap;

use crate::comm::{self, Communicator, SingleProcess};
use crate::data::{AugmentDraw, Dataset};
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, Program, Recorder};
use crate::kernels::{blas1, loss as loss_kernels};
use crate::nn::device::{Passes, Workspace};
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

/// Which part of a mini-batch gradient a rank computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinibatchPart {
    /// The whole mini-batch's size, which the loss gradients are divided by.
    pub of: usize,
    /// The training set's size l, for the regulariser θ/(C·l); None leaves it out (it is
    /// added once, after the ranks' parts are summed).
    pub regularize_over: Option<usize>,
}

/// Slots of the scalars buffer.
const THETA_SQ: usize = 0;
const GRAD_SQ: usize = 1;

/// Programs kept at most; beyond, the cache starts afresh (they are cheap to record again).
const MAX_PROGRAMS: usize = 256;

/// What a cached program does, with what it binds: θ's and the gradient's buffer ids (0 for
/// none), the data set's size l, and for a chunk its first sample and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// Pack θ's filters and, for a gradient, zero it.
    Begin { theta: u64, grad: u64 },
    /// Forward, loss (and with a gradient, backward) of one chunk.
    Chunk { theta: u64, grad: u64, l: usize, start: usize, batch: usize },
    /// θᵀθ, and for a gradient the regulariser's term and ‖∇f‖².
    End { theta: u64, grad: u64, l: usize },
    /// The forward pass alone, for the outputs.
    Outputs { theta: u64, batch: usize },
    /// A mini-batch's gradient (SGD): pack, zero, forward, loss, backward scaled by
    /// 1/`of` (the whole mini-batch's size), and the regulariser unless `l` is 0 (a rank's
    /// part, which the regulariser joins after the sum).
    Minibatch { theta: u64, grad: u64, l: usize, offset: usize, batch: usize, of: usize },
    /// A mini-batch's objective f_B (SGN): pack, forward, loss (with a gradient: zero it,
    /// backward, the regulariser and ‖∇f_B‖²), θᵀθ.
    Batch { theta: u64, grad: u64, l: usize, batch: usize },
}

/// Evaluates f and ∇f of one problem on the device.
pub struct Objective<'g> {
    gpu: &'g Gpu,
    problem: &'g Problem,
    workspace: Workspace,
    /// One loss value per sample of the data set being evaluated.
    losses: GpuBuffer<f32>,
    dot_scratch: GpuBuffer<f32>,
    scalars: GpuBuffer<f32>,
    programs: HashMap<Work, Program>,
    progress: Option<Progress<'g>>,
    /// The mini-batch [`Objective::load_batch`] left in the workspace, as (its size, l):
    /// None once anything else has written the workspace's inputs.
    loaded_batch: Option<(usize, usize)>,
}

/// Called with (chunks done, chunks in all) while a data set is evaluated.
pub type Progress<'g> = Box<dyn FnMut(usize, usize) + 'g>;

fn id(buffer: Option<&GpuBuffer<f32>>) -> u64 {
    buffer.map_or(0, |b| b.id())
}

impl<'g> Objective<'g> {
    /// Chunks hold at most `execution.bsize` samples, fewer when the adapter cannot bind that
    /// many activations at once.
    pub fn new(execution: &Execution<'g>, problem: &'g Problem) -> Result<Self, Error> {
        problem.check()?;
        execution.check()?;
        let (gpu, network) = (execution.gpu, &problem.network);
        problem.check_fits(gpu)?;
        let capacity = execution.bsize.min(Workspace::max_capacity(gpu, network));
        let workspace = Workspace::new(execution, network, capacity, Passes::Gradient)?;
        let n = network.param_count();
        Ok(Self {
            gpu,
            problem,
            workspace,
            losses: gpu.zeros(capacity, "per-sample losses")?,
            dot_scratch: gpu.zeros(blas1::dot_groups(n), "dot scratch")?,
            scalars: gpu.zeros(4, "scalars")?,
            programs: HashMap::new(),
            progress: None,
            loaded_batch: None,
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
            // Recorded programs bind the old buffer.
            self.programs.clear();
        }
        Ok(())
    }

    /// Submits the program for `work`, recording it first if it is new.
    fn run(
        &mut self,
        work: Work,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<(), Error> {
        if !self.programs.contains_key(&work) {
            if self.programs.len() >= MAX_PROGRAMS {
                self.programs.clear();
            }
            let mut rec = self.gpu.recorder();
            self.record(&mut rec, work, theta, grad)?;
            self.programs.insert(work, rec.finish()?);
        }
        self.gpu.submit(&[&self.programs[&work]])?;
        Ok(())
    }

    fn record(
        &self,
        rec: &mut Recorder,
        work: Work,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<(), Error> {
        let (ws, network, loss) = (&self.workspace, self.network(), self.problem.loss);
        let (n, k) = (network.param_count(), network.outputs());
        match work {
            Work::Begin { .. } => {
                ws.record_pack(rec, theta)?;
                if let Some(grad) = grad {
                    blas1::fill(rec, grad, n, 0.0)?;
                }
            }
            Work::Chunk { l, start, batch, .. } => {
                let scale = (1.0 / l.max(1) as f64) as f32;
                ws.record_forward(rec, theta, batch)?;
                let (z, labels, dz) = (ws.network_outputs(), ws.labels(), ws.output_grad());
                loss_kernels::value_and_grad(rec, loss, batch, k, z, labels, &self.losses, start, dz, scale)?;
                if let Some(grad) = grad {
                    ws.record_backward(rec, theta, batch, grad, None)?;
                }
            }
            Work::End { l, .. } => {
                let (scratch, scalars) = (&self.dot_scratch, &self.scalars);
                blas1::dot(rec, theta, theta, n, scratch, scalars, THETA_SQ)?;
                if let Some(grad) = grad {
                    blas1::axpy(rec, self.problem.regularization(l) as f32, theta, grad, n)?;
                    blas1::dot(rec, grad, grad, n, scratch, scalars, GRAD_SQ)?;
                }
            }
            Work::Outputs { batch, .. } => ws.record_forward(rec, theta, batch)?,
            Work::Batch { l, batch, .. } => {
                let (scratch, scalars) = (&self.dot_scratch, &self.scalars);
                ws.record_pack(rec, theta)?;
                ws.record_forward(rec, theta, batch)?;
                let (z, labels, dz) = (ws.network_outputs(), ws.labels(), ws.output_grad());
                let scale = 1.0 / batch as f32;
                loss_kernels::value_and_grad(rec, loss, batch, k, z, labels, &self.losses, 0, dz, scale)?;
                if let Some(grad) = grad {
                    blas1::fill(rec, grad, n, 0.0)?;
                    ws.record_backward(rec, theta, batch, grad, None)?;
                    blas1::axpy(rec, self.problem.regularization(l) as f32, theta, grad, n)?;
                    blas1::dot(rec, grad, grad, n, scratch, scalars, GRAD_SQ)?;
                }
                blas1::dot(rec, theta, theta, n, scratch, scalars, THETA_SQ)?;
            }
            Work::Minibatch { l, offset, batch, of, .. } => {
                let grad = grad.expect("a mini-batch gradient has a buffer");
                ws.record_pack(rec, theta)?;
                blas1::fill(rec, grad, n, 0.0)?;
                ws.record_forward(rec, theta, batch)?;
                let (z, labels, dz) = (ws.network_outputs(), ws.labels(), ws.output_grad());
                let scale = 1.0 / of as f32;
                loss_kernels::value_and_grad(
                    rec,
                    loss,
                    batch,
                    k,
                    z,
                    labels,
                    &self.losses,
                    offset,
                    dz,
                    scale,
                )?;
                ws.record_backward(rec, theta, batch, grad, None)?;
                if l > 0 {
                    blas1::axpy(rec, self.problem.regularization(l) as f32, theta, grad, n)?;
                }
            }
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
        self.value_and_grad_across(&SingleProcess, data, data.len(), theta, grad)
    }

    /// f(θ) over `data`, forward passes only.
    pub fn value(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Evaluation, Error> {
        self.value_across(&SingleProcess, data, data.len(), theta)
    }

    /// f(θ) and ∇f(θ) over a training set of `total` samples of which this rank of `comm`
    /// holds `shard` (each rank the same θ): every rank's partial sums of the loss and its
    /// gradient are added up, the regulariser is applied once after, and every rank gets the
    /// same f, ‖∇f‖ and ∇f (in `grad`). With one rank nothing is communicated.
    pub fn value_and_grad_across(
        &mut self,
        comm: &dyn Communicator,
        shard: &Dataset,
        total: usize,
        theta: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
    ) -> Result<Evaluation, Error> {
        self.check(shard, theta)?;
        let n = self.network().param_count();
        if grad.len() != n {
            return Err(Error::ParamCount { expected: n, found: grad.len() });
        }
        self.run_chunks(comm, shard, total, theta, Some(grad))?;
        self.finish(comm, shard, total, true)
    }

    /// f(θ) over a training set of `total` samples of which this rank holds `shard`; see
    /// [`Objective::value_and_grad_across`].
    pub fn value_across(
        &mut self,
        comm: &dyn Communicator,
        shard: &Dataset,
        total: usize,
        theta: &GpuBuffer<f32>,
    ) -> Result<Evaluation, Error> {
        self.check(shard, theta)?;
        self.run_chunks(comm, shard, total, theta, None)?;
        self.finish(comm, shard, total, false)
    }

    /// The share of `data` whose largest output is its label, and the correct count per class.
    pub fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Accuracy, Error> {
        self.accuracy_across(&SingleProcess, data, theta)
    }

    /// The counts of [`Objective::accuracy`] over a data set of which this rank holds `shard`,
    /// summed over the ranks.
    pub fn accuracy_across(
        &mut self,
        comm: &dyn Communicator,
        shard: &Dataset,
        theta: &GpuBuffer<f32>,
    ) -> Result<Accuracy, Error> {
        let mut accuracy = if shard.is_empty() {
            let k = self.network().outputs();
            Accuracy { correct: vec![0; k], total: vec![0; k] }
        } else {
            self.shard_accuracy(shard, theta)?
        };
        if comm.size() > 1 {
            let mut counts: Vec<f64> =
                accuracy.correct.iter().chain(&accuracy.total).map(|&c| c as f64).collect();
            comm.sum_f64(&mut counts)?;
            let k = accuracy.correct.len();
            accuracy.correct = counts[..k].iter().map(|&c| c as usize).collect();
            accuracy.total = counts[k..].iter().map(|&c| c as usize).collect();
        }
        if accuracy.total.iter().sum::<usize>() == 0 {
            return Err(Error::EmptyData { what: "the data set to score".into() });
        }
        Ok(accuracy)
    }

    fn shard_accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Accuracy, Error> {
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

    /// Submits the gradient of one mini-batch into `grad`: the batch mean of the loss gradient
    /// plus θ/(C·l), with l = data.len(); θ's filters are packed first. The members' images are
    /// as `draw` augments them (as they are with None). The per-sample losses go to
    /// `losses[epoch_offset..]`; read their sum with [`Objective::epoch_loss_sum`]. `then` runs
    /// in the same submit, after the gradient (SGD's update).
    #[allow(clippy::too_many_arguments)]
    pub fn minibatch_grad(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        draw: Option<AugmentDraw>,
        epoch_offset: usize,
        theta: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
        then: &Program,
    ) -> Result<(), Error> {
        let part = MinibatchPart { of: indices.len(), regularize_over: Some(data.len()) };
        self.minibatch_part(data, indices, draw, epoch_offset, part, theta, grad, Some(then))
    }

    /// Submits one rank's part of a mini-batch gradient into `grad`: the loss gradients of
    /// `indices` (as `draw` augments them) summed and divided by the whole mini-batch's size,
    /// and the regulariser when `part` says over how many samples (see
    /// [`Objective::minibatch_grad`]).
    #[allow(clippy::too_many_arguments)]
    pub fn minibatch_part(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        draw: Option<AugmentDraw>,
        epoch_offset: usize,
        part: MinibatchPart,
        theta: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
        then: Option<&Program>,
    ) -> Result<(), Error> {
        self.check(data, theta)?;
        let batch = indices.len();
        assert!(
            batch <= self.chunk_size(),
            "a mini-batch of {batch} exceeds the workspace's {}",
            self.chunk_size()
        );
        self.upload_members(data, indices, draw)?;
        let work = Work::Minibatch {
            theta: theta.id(),
            grad: grad.id(),
            l: part.regularize_over.unwrap_or(0),
            offset: epoch_offset,
            batch,
            of: part.of,
        };
        if !self.programs.contains_key(&work) {
            if self.programs.len() >= MAX_PROGRAMS {
                self.programs.clear();
            }
            let mut rec = self.gpu.recorder();
            self.record(&mut rec, work, theta, Some(grad))?;
            self.programs.insert(work, rec.finish()?);
        }
        match then {
            Some(then) => self.gpu.submit(&[&self.programs[&work], then])?,
            None => self.gpu.submit(&[&self.programs[&work]])?,
        };
        Ok(())
    }

    /// Uploads the mini-batch `indices` (distinct samples of `data`, at most a chunk, their
    /// images as `draw` augments them) into the workspace, where [`Objective::batch_value`]
    /// evaluates it at any number of θ.
    pub fn load_batch(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        draw: Option<AugmentDraw>,
    ) -> Result<(), Error> {
        self.network().check_data(data.shape, data.classes)?;
        let images = crate::data::gather_images(data, indices, draw);
        let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i]).collect();
        self.load_samples(&images, &labels, data.len())
    }

    /// [`Objective::load_batch`] for samples given as their images and labels (checked
    /// against the network's classes), drawn from a training set of `l` samples (a rank's
    /// part of a mini-batch: [`crate::comm::gather_part`]).
    pub fn load_samples(&mut self, images: &[f32], labels: &[u32], l: usize) -> Result<(), Error> {
        let batch = labels.len();
        if batch == 0 || batch > self.chunk_size() {
            return Err(Error::Setting {
                field: "mini-batch",
                expected: "from 1 sample to a chunk's".into(),
                found: format!("{batch} samples, chunks of {}", self.chunk_size()),
            });
        }
        let classes = self.network().outputs();
        if images.len() != batch * self.network().input().len()
            || labels.iter().any(|&c| c as usize >= classes)
        {
            return Err(Error::Setting {
                field: "mini-batch samples",
                expected: format!("an image of {} and a label below {classes} each", self.network().input()),
                found: format!("{} values for {batch} labels", images.len()),
            });
        }
        if self.losses.len() < batch {
            self.losses = self.gpu.zeros(batch, "per-sample losses")?;
            self.programs.clear();
        }
        self.gpu.write(self.workspace.inputs(), images)?;
        self.gpu.write(self.workspace.labels(), labels)?;
        self.loaded_batch = Some((batch, l));
        Ok(())
    }

    /// The objective of the mini-batch B that [`Objective::load_batch`] loaded from a set of
    /// l samples:
    ///
    ///   f_B(θ) = θᵀθ / (2·C·l) + (1/|B|) Σ_{i∈B} ξ_i,   ∇f_B = θ/(C·l) + (1/|B|) Σ_{i∈B} J_iᵀ ∂ξ_i,
    ///
    /// so that f_B estimates f without bias; ∇f_B goes to `grad` when one is given. One
    /// submit and one read.
    pub fn batch_value(
        &mut self,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<Evaluation, Error> {
        let (batch, l) = self.loaded(theta, grad)?;
        self.run(Work::Batch { theta: theta.id(), grad: id(grad), l, batch }, theta, grad)?;
        self.sum_up(&SingleProcess, batch, batch, l, grad.is_some())
    }

    /// The loaded mini-batch's size and l, after checking that one is loaded and that θ and
    /// the gradient have the network's length.
    fn loaded(&self, theta: &GpuBuffer<f32>, grad: Option<&GpuBuffer<f32>>) -> Result<(usize, usize), Error> {
        let Some(loaded) = self.loaded_batch else {
            return Err(Error::Setting {
                field: "mini-batch",
                expected: "one loaded by load_batch since the last evaluation over a data set".into(),
                found: "none".into(),
            });
        };
        let n = self.network().param_count();
        for buffer in std::iter::once(theta).chain(grad) {
            if buffer.len() != n {
                return Err(Error::ParamCount { expected: n, found: buffer.len() });
            }
        }
        Ok(loaded)
    }

    /// [`Objective::batch_value`] as one rank of a data-parallel job: the loaded batch is this
    /// rank's part of a mini-batch of `of` samples (every rank the same θ). The parts' loss
    /// sums and gradients (each scaled by 1/`of`) are summed over the ranks, the regulariser
    /// joins once after, and every rank gets the same f_B, ‖∇f_B‖ and ∇f_B. With one rank it
    /// is `batch_value`.
    pub fn batch_value_across(
        &mut self,
        comm: &dyn Communicator,
        of: usize,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<Evaluation, Error> {
        if comm.size() == 1 {
            return self.batch_value(theta, grad);
        }
        let (batch, l) = self.loaded(theta, grad)?;
        let t = theta.id();
        match grad {
            Some(grad) => {
                let g = grad.id();
                self.run(
                    Work::Minibatch { theta: t, grad: g, l: 0, offset: 0, batch, of },
                    theta,
                    Some(grad),
                )?;
                // The one exchange of the gradient, as over a whole set.
                comm::sum_on_device(self.gpu, comm, grad)?;
                self.run(Work::End { theta: t, grad: g, l }, theta, Some(grad))?;
            }
            None => self.run(Work::Batch { theta: t, grad: 0, l, batch }, theta, None)?,
        }
        self.sum_up(comm, batch, of, l, grad.is_some())
    }

    /// Writes the images and labels of `indices` into the workspace, in that order.
    fn upload_members(
        &mut self,
        data: &Dataset,
        indices: &[usize],
        draw: Option<AugmentDraw>,
    ) -> Result<(), Error> {
        let images = crate::data::gather_images(data, indices, draw);
        let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i]).collect();
        self.gpu.write(self.workspace.inputs(), &images)?;
        self.gpu.write(self.workspace.labels(), &labels)?;
        self.loaded_batch = None;
        Ok(())
    }

    /// The sum of the first `count` per-sample losses written by mini-batches this epoch.
    pub fn epoch_loss_sum(&self, count: usize) -> Result<f64, Error> {
        if count == 0 {
            return Ok(0.0);
        }
        let losses = self.gpu.read_range(&self.losses, 0, count)?;
        Ok(losses.iter().map(|&v| v as f64).sum::<f64>())
    }

    /// The network's outputs z for every sample of `data`, [len, K].
    pub fn outputs(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<Vec<f32>, Error> {
        self.check(data, theta)?;
        let k = self.network().outputs();
        self.run(Work::Begin { theta: theta.id(), grad: 0 }, theta, None)?;
        let mut z = Vec::with_capacity(data.len() * k);
        for start in (0..data.len()).step_by(self.chunk_size()) {
            let batch = self.chunk_size().min(data.len() - start);
            self.loaded_batch = None;
            self.gpu.write(self.workspace.inputs(), data.images_of(start..start + batch))?;
            self.run(Work::Outputs { theta: theta.id(), batch }, theta, None)?;
            z.extend(self.gpu.read_range(self.workspace.network_outputs(), 0, batch * k)?);
        }
        Ok(z)
    }

    /// Every chunk's forward (and, with `grad`, backward) pass, the gradient's sum over the
    /// ranks, then the regulariser and the squared norms; the per-sample losses land in
    /// `self.losses`, the gradient in `grad`. One submit per chunk. Gradients are scaled by
    /// 1/`total`, the whole training set's size, so that the ranks' parts add up to ∇f.
    fn run_chunks(
        &mut self,
        comm: &dyn Communicator,
        data: &Dataset,
        total: usize,
        theta: &GpuBuffer<f32>,
        grad: Option<&GpuBuffer<f32>>,
    ) -> Result<(), Error> {
        let (t, g, len) = (theta.id(), id(grad), data.len());
        self.run(Work::Begin { theta: t, grad: g }, theta, grad)?;
        let capacity = self.chunk_size();
        for start in (0..len).step_by(capacity) {
            let batch = capacity.min(len - start);
            // Queued writes land before the next submit and after the previous one.
            self.loaded_batch = None;
            self.gpu.write(self.workspace.inputs(), data.images_of(start..start + batch))?;
            self.gpu.write(self.workspace.labels(), &data.labels[start..start + batch])?;
            self.run(Work::Chunk { theta: t, grad: g, l: total, start, batch }, theta, grad)?;
            if let Some(progress) = &mut self.progress {
                self.gpu.wait()?;
                progress((start + batch).div_ceil(capacity), len.div_ceil(capacity));
            }
        }
        if let (Some(grad), true) = (grad, comm.size() > 1) {
            // The one exchange of the gradient: read back, summed, written back; the
            // regulariser and the norms below then see ∇f itself.
            comm::sum_on_device(self.gpu, comm, grad)?;
        }
        self.run(Work::End { theta: t, grad: g, l: total }, theta, grad)
    }

    /// Reads back the per-sample losses and the squared norms, and adds them up in f64: the
    /// losses over the ranks, the norms as rank 0 has them (θ is the same everywhere, but only
    /// numbers that are summed or sent are the same bit for bit on every device).
    fn finish(
        &self,
        comm: &dyn Communicator,
        data: &Dataset,
        total: usize,
        with_grad: bool,
    ) -> Result<Evaluation, Error> {
        self.sum_up(comm, data.len(), total.max(1), total.max(1), with_grad)
    }

    /// The evaluation from this rank's first `count` per-sample losses and the squared norms
    /// (see [`Objective::finish`]): the mean loss over `mean_over` samples in all, the
    /// regulariser over the training set's `l`.
    fn sum_up(
        &self,
        comm: &dyn Communicator,
        count: usize,
        mean_over: usize,
        l: usize,
        with_grad: bool,
    ) -> Result<Evaluation, Error> {
        let losses = if count == 0 { Vec::new() } else { self.gpu.read_range(&self.losses, 0, count)? };
        let scalars = self.gpu.read(&self.scalars)?;
        let mut sums = [losses.iter().map(|&v| v as f64).sum::<f64>(), 0.0, 0.0];
        if comm.rank() == 0 {
            sums[1] = scalars[THETA_SQ] as f64;
            sums[2] = scalars[GRAD_SQ] as f64;
        }
        comm.sum_f64(&mut sums)?;
        let [loss_sum, theta_sq, grad_sq] = sums;
        let mean_loss = loss_sum / mean_over as f64;
        let regularization = theta_sq / (2.0 * self.problem.c * l as f64);
        Ok(Evaluation {
            f: mean_loss + regularization,
            mean_loss,
            regularization,
            grad_norm: if with_grad { grad_sq.sqrt() } else { 0.0 },
        })
    }
}
