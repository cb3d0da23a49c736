//! Curvature on the device: the damped Gauss-Newton product on a random subsample S,
//!
//!   (G_S + λI)·v = (λ + 1/(C·l))·v + (1/|S|) Σ_{i∈S} J_iᵀ B_i J_i v,
//!
//! computed without forming any matrix: forward mode (Jv) through the stored forward pass of
//! S, the loss Hessian B applied per sample, and back-propagation (Jᵀ). One product is one
//! command encoder and one submit, with no read-back; recorded once into a program, it is
//! replayed with nothing created on the device.

use rand::SeedableRng;

use crate::comm::{Communicator, SingleProcess};
use crate::data::Dataset;
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, Program, Recorder};
use crate::kernels::{blas1, cg as cg_kernels, loss as loss_kernels};
use crate::nn::device::{GradientDone, Passes, Workspace};
use crate::problem::Problem;

/// `size` distinct sample indices of 0..l, drawn from `seed`, in increasing order.
pub fn pick_subsample(l: usize, size: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut indices = rand::seq::index::sample(&mut rng, l, size.min(l)).into_vec();
    indices.sort_unstable();
    indices
}

/// How a subsample is drawn and stored.
#[derive(Clone, Copy, Debug)]
pub struct SubsampleOptions {
    /// |S|, GNsize.
    pub size: usize,
    /// Seed of the draw; the optimiser passes a fresh one each iteration.
    pub seed: u64,
    /// Most bytes the subsample may hold on the device. When storing the activations of all
    /// of S would exceed it, S is processed in chunks (of at most the execution's bsize)
    /// whose forward pass is recomputed for every product. None: [`default_memory_budget`].
    pub memory_budget: Option<u64>,
}

/// Four storage bindings' worth of the adapter's largest binding, within its largest buffer.
pub fn default_memory_budget(gpu: &Gpu) -> u64 {
    4 * gpu.max_binding_bytes()
}

/// Where the damping of a Gauss-Newton product comes from.
#[derive(Clone, Copy)]
pub enum Damping<'b> {
    /// λ, fixed when the product is recorded.
    Lambda(f64),
    /// λ + 1/(C·l) as [`Subsample::damping`] gives it, read from `scalars[slot]` when the
    /// product runs (so one recorded product serves every λ).
    Slot { scalars: &'b GpuBuffer<f32>, slot: usize },
    /// None: (1/|S|) Σ J_iᵀ B_i J_i v alone, without 1/(C·l) either (the preconditioner's
    /// probes of diag(G_S)).
    Undamped,
}

/// A subsample S of the training data with its forward pass on the device, at the θ it was
/// drawn with (a copy of which it keeps); it serves any number of products Jv, Jᵀu and
/// (G_S + λI)v, and can be drawn again ([`Subsample::redraw`]) with all its device buffers
/// and programs kept.
pub struct Subsample<'a> {
    execution: Execution<'a>,
    problem: &'a Problem,
    /// θ as of the last draw.
    theta: GpuBuffer<f32>,
    /// The members of S this rank holds: all of S for one process.
    indices: Vec<usize>,
    /// |S|, over every rank.
    total: usize,
    /// The ranks: this one holds the [`crate::comm::shard`] of S's members by position.
    comm: &'a dyn Communicator,
    /// l, the training set's size (over every rank).
    l: usize,
    /// The inputs of all of S when chunked (each chunk is copied into the workspace and its
    /// forward pass recomputed); None when the workspace holds all of S.
    chunk_source: Option<GpuBuffer<f32>>,
    workspace: Workspace,
    /// 1/(C·l), the regularisation's share of the damping.
    regularization: f64,
    /// Copies θ in, packs its filters and (when S is stored) runs the forward pass of S.
    draw: Program,
    /// The id of the θ buffer `draw` copies from.
    source: u64,
}

impl<'a> Subsample<'a> {
    /// Draws S from `data`, uploads it and runs its forward pass with `theta`. The
    /// regularisation term uses l = data.len().
    pub fn new(
        execution: &Execution<'a>,
        problem: &'a Problem,
        data: &Dataset,
        theta: &GpuBuffer<f32>,
        options: &SubsampleOptions,
    ) -> Result<Self, Error> {
        Self::across(execution, problem, &SingleProcess, data, data.len(), theta, options)
    }

    /// The part of S that rank `comm.rank()` holds, for a training set of `l` samples of
    /// which this rank holds its [`crate::comm::shard`] in `held`: S drawn by position in the
    /// whole set as one process draws it, the rank taking its shard of the members by
    /// position (so that its size is the same every draw and nothing is recorded again),
    /// their images brought from the ranks that hold them ([`crate::comm::gather_part`]).
    /// Products are scaled by 1/|S|, so that the ranks' parts add up. Collective.
    pub fn across(
        execution: &Execution<'a>,
        problem: &'a Problem,
        comm: &'a dyn Communicator,
        held: &Dataset,
        l: usize,
        theta: &GpuBuffer<f32>,
        options: &SubsampleOptions,
    ) -> Result<Self, Error> {
        problem.check()?;
        execution.check()?;
        let (gpu, network) = (execution.gpu, &problem.network);
        network.check_data(held.shape, held.classes)?;
        if options.size < comm.size() || options.size > l {
            return Err(Error::Setting {
                field: "gn_size",
                expected:
                    "between the number of ranks (1 for one process) and the number of training samples"
                        .into(),
                found: options.size.to_string(),
            });
        }
        let n = network.param_count();
        if theta.len() != n {
            return Err(Error::ParamCount { expected: n, found: theta.len() });
        }
        let total = options.size;
        let size = crate::comm::shard(total, comm.rank(), comm.size()).len();
        let budget = options.memory_budget.unwrap_or_else(|| default_memory_budget(gpu));
        let fits_binding = Workspace::max_capacity(gpu, network);
        let whole = Workspace::bytes_for(network, size, Passes::Curvature);
        let (workspace, chunk_source) = if whole <= budget && size <= fits_binding {
            (Workspace::new(execution, network, size, Passes::Curvature)?, None)
        } else {
            let source_bytes = 4 * (size * network.input().len()) as u64;
            let mut capacity = execution.bsize.clamp(1, size).min(fits_binding);
            while capacity > 1
                && Workspace::bytes_for(network, capacity, Passes::Curvature) + source_bytes > budget
            {
                capacity /= 2;
            }
            let source = gpu.zeros(size * network.input().len(), "subsample inputs")?;
            (Workspace::new(execution, network, capacity, Passes::Curvature)?, Some(source))
        };
        let own_theta = gpu.zeros(n, "θ of the subsample")?;
        let mut rec = gpu.recorder();
        blas1::copy(&mut rec, theta, 0, &own_theta, 0, n)?;
        workspace.record_pack(&mut rec, &own_theta)?;
        if chunk_source.is_none() {
            workspace.record_forward(&mut rec, &own_theta, size)?;
        }
        let draw = rec.finish()?;
        let mut subsample = Self {
            execution: *execution,
            problem,
            theta: own_theta,
            indices: Vec::new(),
            total,
            comm,
            l,
            chunk_source,
            workspace,
            regularization: problem.regularization(l),
            draw,
            source: theta.id(),
        };
        subsample.redraw(held, theta, options.seed)?;
        Ok(subsample)
    }

    /// Draws a fresh S of the same size with `seed` at `theta`, and runs its forward pass:
    /// nothing is allocated or recorded again. `held` is what this rank holds of the training
    /// set S was first drawn from (all of it for one process). Collective.
    pub fn redraw(&mut self, held: &Dataset, theta: &GpuBuffer<f32>, seed: u64) -> Result<(), Error> {
        let drawn = pick_subsample(self.l, self.total, seed);
        self.draw_members(held, theta, &drawn, None)
    }

    /// Makes `members` (positions in the training set, as many as |S|, distinct) the
    /// subsample at `theta` and runs its forward pass, as [`Subsample::redraw`] does with a
    /// random draw: SGN's mini-batch is its subsample; its members' images as `augmentation`
    /// makes them, if given. Across ranks this rank takes its part by position, from the
    /// ranks that hold it. Collective.
    pub fn draw_members(
        &mut self,
        held: &Dataset,
        theta: &GpuBuffer<f32>,
        members: &[usize],
        augmentation: Option<crate::data::AugmentDraw>,
    ) -> Result<(), Error> {
        let size = self.total;
        let network = &self.problem.network;
        network.check_data(held.shape, held.classes)?;
        let (rank, ranks) = (self.comm.rank(), self.comm.size());
        if held.len() != crate::comm::shard(self.l, rank, ranks).len() {
            return Err(Error::Setting {
                field: "subsample data",
                expected: format!(
                    "this rank's part of the {} training samples the subsample was made for",
                    self.l
                ),
                found: held.len().to_string(),
            });
        }
        if members.len() != size || members.iter().any(|&i| i >= self.l) {
            return Err(Error::Setting {
                field: "subsample members",
                expected: "as many indices of the training set as |S|".into(),
                found: format!("{} indices", members.len()),
            });
        }
        // The draw program copies from the θ buffer it was recorded with.
        if theta.id() != self.source {
            return Err(Error::Setting {
                field: "θ",
                expected: "the buffer the subsample was made with".into(),
                found: theta.label().to_owned(),
            });
        }
        let (images, _) = crate::comm::gather_part(self.comm, held, self.l, members, augmentation)?;
        self.indices = members[crate::comm::shard(size, rank, ranks)].to_vec();
        let gpu = self.execution.gpu;
        gpu.write(self.chunk_source.as_ref().unwrap_or(self.workspace.inputs()), &images)?;
        gpu.submit(&[&self.draw])?;
        Ok(())
    }

    /// This subsample's identity (that of its copy of θ), for the programs that bind it.
    pub fn id(&self) -> u64 {
        self.theta.id()
    }

    /// Whether the subsample was made with (and draws from) the buffer `theta`.
    pub fn made_with(&self, theta: &GpuBuffer<f32>) -> bool {
        self.source == theta.id()
    }

    /// The indices in the training set of the members of S this rank holds (increasing when
    /// drawn at random; in the given order by [`Subsample::draw_members`]).
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The members of S this rank holds (|S| for one process).
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// |S| over every rank.
    pub fn total_len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Samples per chunk: |S| when the forward pass of all of S is stored.
    pub fn chunk_size(&self) -> usize {
        self.workspace.capacity()
    }

    /// True when S does not fit the memory budget and each product recomputes the forward
    /// pass chunk by chunk.
    pub fn is_chunked(&self) -> bool {
        self.chunk_source.is_some()
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> u64 {
        self.workspace.bytes() + self.theta.bytes() + self.chunk_source.as_ref().map_or(0, |b| b.bytes())
    }

    /// The damping of (G_S + λI) as the products add it, λ + 1/(C·l), in f32: the value to
    /// put in the slot of [`Damping::Slot`].
    pub fn damping(&self, lambda: f64) -> f32 {
        (lambda + self.regularization) as f32
    }

    /// One line for people: size, storage and memory.
    pub fn describe(&self) -> String {
        let mib = self.bytes() as f64 / (1 << 20) as f64;
        if self.is_chunked() {
            format!(
                "|S| = {} in chunks of {} (forward pass recomputed per product: the whole would exceed the memory budget), {mib:.1} MiB",
                self.len(),
                self.chunk_size()
            )
        } else {
            format!("|S| = {}, forward pass stored, {mib:.1} MiB", self.len())
        }
    }

    /// Calls `body(rec, start, batch)` for each chunk of S after making the chunk's forward
    /// pass current in the workspace.
    fn for_each_chunk(
        &self,
        rec: &mut Recorder,
        mut body: impl FnMut(&mut Recorder, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let d = self.problem.network.input().len();
        for start in (0..self.len()).step_by(self.chunk_size()) {
            let batch = self.chunk_size().min(self.len() - start);
            if let Some(source) = &self.chunk_source {
                blas1::copy(rec, source, start * d, self.workspace.inputs(), 0, batch * d)?;
                self.workspace.record_forward(rec, &self.theta, batch)?;
            }
            body(rec, start, batch)?;
        }
        Ok(())
    }

    fn check(&self, buffer: &GpuBuffer<f32>, len: usize) -> Result<(), Error> {
        if buffer.len() < len {
            return Err(Error::VectorLength {
                label: buffer.label().to_owned(),
                expected: len,
                found: buffer.len(),
            });
        }
        Ok(())
    }

    /// Records out = J v for every sample of S, [|S|, K].
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &GpuBuffer<f32>,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let k = self.problem.network.outputs();
        self.check(v, self.problem.network.param_count())?;
        self.check(out, self.len() * k)?;
        self.for_each_chunk(rec, |rec, start, batch| {
            let jv = self.workspace.record_jvp(rec, &self.theta, v, batch)?;
            blas1::copy(rec, jv, 0, out, start * k, batch * k)?;
            Ok(())
        })
    }

    /// Records out = Σ_{i∈S} J_iᵀ u_i, for u of shape [|S|, K].
    pub fn record_vjp(
        &self,
        rec: &mut Recorder,
        u: &GpuBuffer<f32>,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let (k, n) = (self.problem.network.outputs(), self.problem.network.param_count());
        self.check(u, self.len() * k)?;
        self.check(out, n)?;
        blas1::fill(rec, out, n, 0.0)?;
        self.for_each_chunk(rec, |rec, start, batch| {
            blas1::copy(rec, u, start * k, self.workspace.output_grad(), 0, batch * k)?;
            self.workspace.record_backward(rec, &self.theta, batch, out, None)?;
            Ok(())
        })
    }

    /// Records out = B u per sample of S (the loss Hessian at S's outputs), [|S|, K].
    pub fn record_loss_hessian(
        &self,
        rec: &mut Recorder,
        u: &GpuBuffer<f32>,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let k = self.problem.network.outputs();
        self.check(u, self.len() * k)?;
        self.check(out, self.len() * k)?;
        let ws = &self.workspace;
        self.for_each_chunk(rec, |rec, start, batch| {
            // The tangent buffer is free outside Jv: stage this chunk's u there.
            let staged = ws.tangent_scratch();
            blas1::copy(rec, u, start * k, staged, 0, batch * k)?;
            let z = ws.network_outputs();
            loss_kernels::hessian_product(
                rec,
                self.problem.loss,
                batch,
                k,
                z,
                staged,
                ws.output_grad(),
                1.0,
            )?;
            blas1::copy(rec, ws.output_grad(), 0, out, start * k, batch * k)?;
            Ok(())
        })
    }

    /// Records out = (G_S + λI)·v: Jv, B, Jᵀ and the damping, with no read-back.
    pub fn record_gauss_newton(
        &self,
        rec: &mut Recorder,
        v: &GpuBuffer<f32>,
        damping: Damping,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        self.record_product(rec, v, damping, out, None)
    }

    /// [`Subsample::record_gauss_newton`] with the damping added before the curvature, noting
    /// the points after which a tail out[from..] is final (the last chunk's backward pass, see
    /// [`GradientDone`]): across ranks, the parts of a product are read and summed while the
    /// device computes the rest of it.
    pub fn record_gauss_newton_marked(
        &self,
        rec: &mut Recorder,
        v: &GpuBuffer<f32>,
        damping: Damping,
        out: &GpuBuffer<f32>,
    ) -> Result<Vec<GradientDone>, Error> {
        let mut done = Vec::new();
        self.record_product(rec, v, damping, out, Some(&mut done))?;
        Ok(done)
    }

    /// The product; with `done`, the damping first and the last chunk's points noted there.
    fn record_product(
        &self,
        rec: &mut Recorder,
        v: &GpuBuffer<f32>,
        damping: Damping,
        out: &GpuBuffer<f32>,
        mut done: Option<&mut Vec<GradientDone>>,
    ) -> Result<(), Error> {
        let (k, n) = (self.problem.network.outputs(), self.problem.network.param_count());
        self.check(v, n)?;
        self.check(out, n)?;
        let per_sample = (1.0 / self.total as f64) as f32;
        blas1::fill(rec, out, n, 0.0)?;
        let add_damping = |rec: &mut Recorder| -> Result<(), Error> {
            match damping {
                Damping::Lambda(lambda) => blas1::axpy(rec, self.damping(lambda), v, out, n)?,
                Damping::Slot { scalars, slot } => cg_kernels::axpy_scalar(rec, 1.0, scalars, slot, v, out)?,
                Damping::Undamped => {}
            }
            Ok(())
        };
        let marked = done.is_some();
        if marked {
            add_damping(rec)?;
        }
        let ws = &self.workspace;
        let len = self.len();
        self.for_each_chunk(rec, |rec, start, batch| {
            let jv = ws.record_jvp(rec, &self.theta, v, batch)?;
            let z = ws.network_outputs();
            loss_kernels::hessian_product(
                rec,
                self.problem.loss,
                batch,
                k,
                z,
                jv,
                ws.output_grad(),
                per_sample,
            )?;
            match done.as_deref_mut() {
                // Earlier chunks write every part again after them.
                Some(done) if start + batch == len => {
                    ws.record_backward_marked(rec, &self.theta, batch, out, None, done)?
                }
                _ => ws.record_backward(rec, &self.theta, batch, out, None)?,
            }
            Ok(())
        })?;
        if !marked {
            add_damping(rec)?;
        }
        Ok(())
    }

    /// out = (G_S + λI)·v, in one submit.
    pub fn gauss_newton_product(
        &self,
        v: &GpuBuffer<f32>,
        lambda: f64,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let mut rec = self.execution.gpu.recorder();
        self.record_gauss_newton(&mut rec, v, Damping::Lambda(lambda), out)?;
        rec.submit()?;
        Ok(())
    }
}
