//! Curvature on the device: the damped Gauss-Newton product on a random subsample S,
//!
//!   (G_S + λI)·v = (λ + 1/(C·l))·v + (1/|S|) Σ_{i∈S} J_iᵀ B_i J_i v,
//!
//! computed without forming any matrix: forward mode (Jv) through the stored forward pass of
//! S, the loss Hessian B applied per sample, and back-propagation (Jᵀ). One product is one
//! command encoder and one submit, with no read-back.

use rand::SeedableRng;

use crate::data::Dataset;
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::{blas1, loss as loss_kernels};
use crate::loss::Loss;
use crate::nn::device::{backward, forward, jvp, Passes, Workspace};
use crate::nn::Network;
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

/// A subsample S of the training data with its forward pass on the device, bound to one θ;
/// it serves any number of products Jv, Jᵀu and (G_S + λI)v.
pub struct Subsample<'a> {
    gpu: &'a Gpu,
    network: &'a Network,
    loss: Loss,
    theta: &'a GpuBuffer<f32>,
    indices: Vec<usize>,
    /// The inputs of all of S when chunked (each chunk is copied into the workspace and its
    /// forward pass recomputed); None when the workspace holds all of S.
    chunk_source: Option<GpuBuffer<f32>>,
    workspace: Workspace,
    /// 1/(C·l), the regularisation's share of the damping.
    regularization: f64,
}

impl<'a> Subsample<'a> {
    /// Draws S from `data`, uploads it and runs its forward pass with `theta`. The
    /// regularisation term uses l = data.len().
    pub fn new(
        execution: &Execution<'a>,
        problem: &'a Problem,
        data: &Dataset,
        theta: &'a GpuBuffer<f32>,
        options: &SubsampleOptions,
    ) -> Result<Self, Error> {
        problem.check()?;
        execution.check()?;
        let (gpu, network) = (execution.gpu, &problem.network);
        network.check_data(data.shape, data.classes)?;
        if options.size == 0 || options.size > data.len() {
            return Err(Error::Setting {
                field: "GNsize",
                expected: "between 1 and the number of training samples",
                found: options.size.to_string(),
            });
        }
        if theta.len() != network.param_count() {
            return Err(Error::ParamCount { expected: network.param_count(), found: theta.len() });
        }
        let indices = pick_subsample(data.len(), options.size, options.seed);
        let size = indices.len();
        let d = network.input().len();
        let mut images = Vec::with_capacity(size * d);
        for &i in &indices {
            images.extend_from_slice(data.images_of(i..i + 1));
        }

        let budget = options.memory_budget.unwrap_or_else(|| default_memory_budget(gpu));
        let fits_binding = Workspace::max_capacity(gpu, network);
        let whole = Workspace::bytes_for(network, size, Passes::Curvature);
        let (workspace, chunk_source) = if whole <= budget && size <= fits_binding {
            let workspace = Workspace::new(execution, network, size, Passes::Curvature)?;
            gpu.write(workspace.inputs(), &images)?;
            let mut rec = gpu.recorder();
            forward(&mut rec, network, &workspace, theta, size)?;
            rec.submit();
            (workspace, None)
        } else {
            let source_bytes = 4 * images.len() as u64;
            let mut capacity = execution.bsize.clamp(1, size).min(fits_binding);
            while capacity > 1
                && Workspace::bytes_for(network, capacity, Passes::Curvature) + source_bytes > budget
            {
                capacity /= 2;
            }
            let source = gpu.upload(&images, "subsample inputs")?;
            (Workspace::new(execution, network, capacity, Passes::Curvature)?, Some(source))
        };
        Ok(Self {
            gpu,
            network,
            loss: problem.loss,
            theta,
            indices,
            chunk_source,
            workspace,
            regularization: problem.regularization(data.len()),
        })
    }

    /// The indices of S in the training set, increasing.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// |S|.
    pub fn len(&self) -> usize {
        self.indices.len()
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
        self.workspace.bytes() + self.chunk_source.as_ref().map_or(0, |b| b.bytes())
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
        let d = self.network.input().len();
        for start in (0..self.len()).step_by(self.chunk_size()) {
            let batch = self.chunk_size().min(self.len() - start);
            if let Some(source) = &self.chunk_source {
                blas1::copy(rec, source, start * d, self.workspace.inputs(), 0, batch * d)?;
                forward(rec, self.network, &self.workspace, self.theta, batch)?;
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
        let k = self.network.outputs();
        self.check(v, self.network.param_count())?;
        self.check(out, self.len() * k)?;
        self.for_each_chunk(rec, |rec, start, batch| {
            let jv = jvp(rec, self.network, &self.workspace, self.theta, v, batch)?;
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
        let (k, n) = (self.network.outputs(), self.network.param_count());
        self.check(u, self.len() * k)?;
        self.check(out, n)?;
        blas1::fill(rec, out, n, 0.0)?;
        self.for_each_chunk(rec, |rec, start, batch| {
            blas1::copy(rec, u, start * k, self.workspace.output_grad(), 0, batch * k)?;
            backward(rec, self.network, &self.workspace, self.theta, batch, out, None)?;
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
        let k = self.network.outputs();
        self.check(u, self.len() * k)?;
        self.check(out, self.len() * k)?;
        self.for_each_chunk(rec, |rec, start, batch| {
            // The tangent buffer is free outside Jv: stage this chunk's u there.
            let staged = self.workspace.tangent_scratch();
            blas1::copy(rec, u, start * k, staged, 0, batch * k)?;
            let z = self.workspace.network_outputs();
            loss_kernels::hessian_product(
                rec,
                self.loss,
                batch,
                k,
                z,
                staged,
                self.workspace.output_grad(),
                1.0,
            )?;
            blas1::copy(rec, self.workspace.output_grad(), 0, out, start * k, batch * k)?;
            Ok(())
        })
    }

    /// Records out = (G_S + λI)·v: Jv, B, Jᵀ and the damping, with no read-back.
    pub fn record_gauss_newton(
        &self,
        rec: &mut Recorder,
        v: &GpuBuffer<f32>,
        lambda: f64,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let (k, n) = (self.network.outputs(), self.network.param_count());
        self.check(v, n)?;
        self.check(out, n)?;
        let per_sample = (1.0 / self.len() as f64) as f32;
        blas1::fill(rec, out, n, 0.0)?;
        self.for_each_chunk(rec, |rec, _, batch| {
            let ws = &self.workspace;
            let jv = jvp(rec, self.network, ws, self.theta, v, batch)?;
            let z = ws.network_outputs();
            loss_kernels::hessian_product(rec, self.loss, batch, k, z, jv, ws.output_grad(), per_sample)?;
            backward(rec, self.network, ws, self.theta, batch, out, None)?;
            Ok(())
        })?;
        blas1::axpy(rec, (lambda + self.regularization) as f32, v, out, n)?;
        Ok(())
    }

    /// out = (G_S + λI)·v, in one submit.
    pub fn gauss_newton_product(
        &self,
        v: &GpuBuffer<f32>,
        lambda: f64,
        out: &GpuBuffer<f32>,
    ) -> Result<(), Error> {
        let mut rec = self.gpu.recorder();
        self.record_gauss_newton(&mut rec, v, lambda, out)?;
        rec.submit();
        Ok(())
    }
}
