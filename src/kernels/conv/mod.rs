//! Convolutions: the forward pass, forward mode (Jv), the backward pass to the input and the
//! weight gradient of one layer, each checking its buffers and recording the kernel that its
//! [`ConvPlan`] names for the pass ([`ConvKernel`]):
//!
//! - `windowed`: results in registers without workgroup memory (shaders/conv_windowed.wgsl),
//!   for software GPUs, where every storage load costs a per-lane loop and a barrier more
//!   still;
//! - `tiled`: implicit matrix products (shaders/conv_tiled.wgsl) by any of the product
//!   kernels: workgroup-memory tiles (scalar or vec4), for real GPUs, where a tile loads few
//!   values per multiply-add from fast shared memory, or vec4 register blocks.
//!
//! All compute the same thing and all are tested against the CPU reference; the tuner
//! ([`crate::tune`]) picks per layer and pass. The weight gradient ([`backward_params`]), and
//! the backward pass to the input at stride > 1, have windowed kernels only.

mod params;
mod tiled;
mod windowed;

use super::blas1;
use super::gemm::GemmKernel;
use crate::gpu::{Gpu, GpuBuffer, GpuError, Recorder};
use crate::nn::ConvGeometry;
use params::Params;

pub(crate) use tiled::{KERNELS as TILED_KERNELS, SHADER as TILED_SHADER};
pub(crate) use windowed::{KERNELS as WINDOWED_KERNELS, SHADER as WINDOWED_SHADER};

/// Fails unless `buffer` holds at least `needed` values.
fn check(pass: &str, buffer: &GpuBuffer<f32>, needed: usize) -> Result<(), GpuError> {
    if buffer.len() < needed {
        return Err(GpuError::ShortBuffer {
            kernel: format!("convolution {pass}"),
            buffer: buffer.label().to_owned(),
            needed,
            found: buffer.len(),
        });
    }
    Ok(())
}

fn check_theta(pass: &str, g: &ConvGeometry, theta: &GpuBuffer<f32>) -> Result<(), GpuError> {
    check(pass, theta, g.weight_offset + g.params())
}

/// Which kernel runs one pass of a convolution. Every one computes the same thing (up to the
/// order of the sums) and every one is tested against the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvKernel {
    /// Register windows over packed filters, without workgroup memory (conv_windowed.wgsl):
    /// 4 output channels × 8 columns per invocation.
    Windowed,
    /// The same with 8 output channels per invocation: each input window loaded serves twice
    /// the multiply-adds, with half as many invocations.
    WindowedWide,
    /// An implicit matrix product by one of the product kernels (conv_tiled.wgsl).
    Gemm(GemmKernel),
}

impl ConvKernel {
    /// Every candidate, in the order the tuner tries them.
    pub const ALL: [Self; 8] = [
        Self::Windowed,
        Self::WindowedWide,
        Self::Gemm(GemmKernel::ALL[0]),
        Self::Gemm(GemmKernel::ALL[1]),
        Self::Gemm(GemmKernel::ALL[2]),
        Self::Gemm(GemmKernel::ALL[3]),
        Self::Gemm(GemmKernel::ALL[4]),
        Self::Gemm(GemmKernel::ALL[5]),
    ];

    /// For the windowed kernels, whether it is the wide one; None for the others.
    fn wide(self) -> Option<bool> {
        match self {
            Self::Windowed => Some(false),
            Self::WindowedWide => Some(true),
            Self::Gemm(_) => None,
        }
    }

    /// The kernel every pass runs when nothing was timed (tuning off, or a cached-only run
    /// without a cache entry): the windowed one, fastest of the old two on every
    /// convolution of cnn4 both on lavapipe and on an H200 (docs/benchmarks.md, Kernels and the tuner).
    pub fn fallback() -> Self {
        Self::Windowed
    }
}

impl std::str::FromStr for ConvKernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.to_string() == s).ok_or_else(|| {
            let names: Vec<String> = Self::ALL.iter().map(|k| k.to_string()).collect();
            format!("{s:?}: expected one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for ConvKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Windowed => f.write_str("windowed"),
            Self::WindowedWide => f.write_str("windowed8"),
            Self::Gemm(kernel) => kernel.fmt(f),
        }
    }
}

/// The passes of a convolution that have a choice of kernels. The backward pass to the input
/// at stride > 1 has one kernel; the weight gradient one kernel whose groups of samples are
/// chosen ([`ConvPlan::weight_group`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvPass {
    Forward,
    Jvp,
    BackwardInput,
}

impl ConvPass {
    pub const ALL: [Self; 3] = [Self::Forward, Self::Jvp, Self::BackwardInput];

    pub fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Jvp => "jvp",
            Self::BackwardInput => "backward_input",
        }
    }
}

/// The kernel of each pass of one convolution layer, and the samples per group of its weight
/// gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvPlan {
    pub forward: ConvKernel,
    pub jvp: ConvKernel,
    pub backward_input: ConvKernel,
    /// Samples per group of the weight gradient: each group's sum is one set of partial sums
    /// (computed in parallel), and the groups are added in a fixed order. Fewer samples per
    /// group means more invocations: what a GPU with many cores needs for a layer with few
    /// channels.
    pub weight_group: usize,
}

impl ConvPlan {
    /// The candidates for [`ConvPlan::weight_group`], in the order the tuner tries them.
    pub const WEIGHT_GROUPS: [usize; 4] = [16, 4, 1, 64];
    /// Samples per group of the weight gradient when nothing was timed.
    pub const DEFAULT_WEIGHT_GROUP: usize = 16;

    /// Every pass by `kernel`, the weight gradient in groups of [`Self::DEFAULT_WEIGHT_GROUP`].
    pub fn all(kernel: ConvKernel) -> Self {
        Self {
            forward: kernel,
            jvp: kernel,
            backward_input: kernel,
            weight_group: Self::DEFAULT_WEIGHT_GROUP,
        }
    }

    pub fn set(&mut self, pass: ConvPass, kernel: ConvKernel) {
        match pass {
            ConvPass::Forward => self.forward = kernel,
            ConvPass::Jvp => self.jvp = kernel,
            ConvPass::BackwardInput => self.backward_input = kernel,
        }
    }

    /// Whether some pass reads θ's packed filters (`flipped`: the backward pass's, at stride 1).
    fn packs(&self, g: &ConvGeometry) -> (bool, bool) {
        let flipped = g.stride == 1 && self.backward_input.wide().is_some();
        (flipped || self.forward.wide().is_some() || self.jvp.wide().is_some(), flipped)
    }
}

impl std::fmt::Display for ConvPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forward {}, jvp {}, backward_input {}, weight gradient in groups of {}",
            self.forward, self.jvp, self.backward_input, self.weight_group
        )
    }
}

/// Bytes of a layer's packed filters (see [`ConvLayer`]), at most.
pub fn packed_bytes_bound(g: &ConvGeometry) -> u64 {
    windowed::packed_bytes_bound(g)
}

/// One convolution layer on the device: its geometry, the kernel of each pass and, for the
/// windowed ones, θ's filters packed as they read them. θ's filters are packed by
/// [`ConvLayer::pack_theta`], once per θ: the windowed forward pass and backward pass to the
/// input read the filters of the θ last packed (the product kernels read θ directly).
pub struct ConvLayer {
    geometry: ConvGeometry,
    plan: ConvPlan,
    packed: Option<windowed::Packed>,
}

impl ConvLayer {
    pub fn new(gpu: &Gpu, plan: ConvPlan, geometry: &ConvGeometry) -> Result<Self, GpuError> {
        let (packs, flipped) = plan.packs(geometry);
        let packed = packs.then(|| windowed::Packed::new(gpu, geometry, flipped)).transpose()?;
        Ok(Self { geometry: *geometry, plan, packed })
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// Bytes of the packed filters on the device.
    pub fn bytes(&self) -> u64 {
        self.packed.as_ref().map_or(0, |p| p.bytes())
    }

    /// Packs θ's filters for the windowed kernels (nothing for the tiled ones).
    pub fn pack_theta(&self, rec: &mut Recorder, theta: &GpuBuffer<f32>) -> Result<(), GpuError> {
        check_theta("filter packing", &self.geometry, theta)?;
        match &self.packed {
            Some(packed) => windowed::pack_theta(rec, &self.geometry, packed, theta),
            None => Ok(()),
        }
    }

    /// y = conv(x; W, b) for `batch` samples, W and b θ's at the layer's offsets.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        batch: usize,
        x: &GpuBuffer<f32>,
        theta: &GpuBuffer<f32>,
        y: &GpuBuffer<f32>,
    ) -> Result<(), GpuError> {
        let g = &self.geometry;
        check("forward", x, batch.saturating_mul(g.input.len()))?;
        check_theta("forward", g, theta)?;
        check("forward", y, batch.saturating_mul(g.output.len()))?;
        let params = Params::new(g, batch);
        match (self.plan.forward, self.plan.forward.wide(), &self.packed) {
            (ConvKernel::Gemm(kernel), ..) => tiled::forward(rec, kernel, &params, x, theta, y),
            (_, Some(wide), Some(packed)) => windowed::forward(rec, wide, &params, x, theta, packed, y),
            _ => unreachable!("windowed passes pack θ's filters"),
        }
    }

    /// Forward mode through the layer: ry = W·rx + V_W·x + V_b, where (V_W, V_b) is the
    /// direction `v` at the layer's offsets. `rx` is None at the network's input, where
    /// R(x) = 0 and the product is the forward pass with V in place of θ.
    #[allow(clippy::too_many_arguments)]
    pub fn jvp(
        &self,
        rec: &mut Recorder,
        batch: usize,
        x: &GpuBuffer<f32>,
        rx: Option<&GpuBuffer<f32>>,
        theta: &GpuBuffer<f32>,
        v: &GpuBuffer<f32>,
        ry: &GpuBuffer<f32>,
    ) -> Result<(), GpuError> {
        let g = &self.geometry;
        check("forward mode", x, batch.saturating_mul(g.input.len()))?;
        check_theta("forward mode", g, theta)?;
        check_theta("forward mode", g, v)?;
        check("forward mode", ry, batch.saturating_mul(g.output.len()))?;
        if let Some(rx) = rx {
            check("forward mode", rx, batch.saturating_mul(g.input.len()))?;
        }
        let params = Params::new(g, batch);
        match (self.plan.jvp, self.plan.jvp.wide(), &self.packed, rx) {
            (ConvKernel::Gemm(kernel), _, _, None) => tiled::forward(rec, kernel, &params, x, v, ry),
            (ConvKernel::Gemm(kernel), _, _, Some(rx)) => {
                tiled::jvp(rec, kernel, &params, x, rx, theta, v, ry)
            }
            (_, Some(wide), Some(packed), None) => {
                windowed::forward_with_direction(rec, wide, &params, x, v, packed, ry)
            }
            (_, Some(wide), Some(packed), Some(rx)) => {
                windowed::jvp(rec, wide, &params, x, rx, v, packed, ry)
            }
            _ => unreachable!("windowed passes pack θ's filters"),
        }
    }

    /// dx = ∂⟨dy, conv(x)⟩/∂x: the gradient passed on to the layer below. At stride 1 it is
    /// the forward pass of dy with the flipped, transposed filters; at other strides the
    /// windowed kernel runs whatever the strategy.
    pub fn backward_input(
        &self,
        rec: &mut Recorder,
        batch: usize,
        dy: &GpuBuffer<f32>,
        theta: &GpuBuffer<f32>,
        dx: &GpuBuffer<f32>,
    ) -> Result<(), GpuError> {
        let g = &self.geometry;
        check("backward to the input", dy, batch.saturating_mul(g.output.len()))?;
        check_theta("backward to the input", g, theta)?;
        check("backward to the input", dx, batch.saturating_mul(g.input.len()))?;
        if g.stride != 1 {
            return windowed::backward_input_strided(rec, g, batch, dy, theta, dx);
        }
        match (self.plan.backward_input, self.plan.backward_input.wide(), &self.packed) {
            (ConvKernel::Gemm(kernel), ..) => {
                tiled::forward(rec, kernel, &Params::flipped(g, batch), dy, theta, dx)
            }
            (_, Some(wide), Some(packed)) => {
                windowed::backward_input_unit_stride(rec, wide, g, batch, dy, theta, packed, dx)
            }
            _ => unreachable!("windowed passes pack θ's filters"),
        }
    }

    /// Adds ∂⟨dy, conv(x)⟩/∂(W, b), summed over the batch, into `grad` at the layer's offsets:
    /// see [`backward_params`].
    #[allow(clippy::too_many_arguments)]
    pub fn backward_params(
        &self,
        rec: &mut Recorder,
        batch: usize,
        x: &GpuBuffer<f32>,
        dy: &GpuBuffer<f32>,
        partial: &GpuBuffer<f32>,
        grad: &GpuBuffer<f32>,
    ) -> Result<(), GpuError> {
        backward_params(rec, &self.geometry, batch, self.plan.weight_group, x, dy, partial, grad)
    }

    pub fn plan(&self) -> ConvPlan {
        self.plan
    }
}

/// Values of the scratch buffer a network's weight gradients share for their per-group partial
/// sums (16 MiB), unless one layer has more parameters.
pub const PARTIAL_VALUES: usize = 4 << 20;

/// Loop iterations one invocation of the weight gradient may run. llvmpipe (lavapipe) ends a
/// shader's loops after 65,535 iterations counted over all of them (Mesa's
/// LP_MAX_TGSI_LOOP_ITERATIONS) and silently leaves the rest undone; on other GPUs a long
/// invocation risks the driver's watchdog. Groups of samples are kept within it.
const MAX_LOOP_ITERATIONS: usize = 65_535;

/// Loop iterations a sample costs an invocation of the weight gradient, at most: a step per
/// output pixel and up to three in the loops inside it that a driver might not unroll, a step
/// per row and one per sample.
fn loop_iterations_per_sample(g: &ConvGeometry) -> usize {
    g.output.height * (4 * g.output.width + 1) + 1
}

/// How the parameter gradient of a batch is split into groups of about `samples_per_group`
/// samples, never more partial sums than `max_partial` values, and never more samples in a
/// group than one invocation may loop over (`MAX_LOOP_ITERATIONS`): (groups, samples per
/// group).
pub fn param_groups(
    g: &ConvGeometry,
    batch: usize,
    samples_per_group: usize,
    max_partial: usize,
) -> (usize, usize) {
    let by_loops = (MAX_LOOP_ITERATIONS / loop_iterations_per_sample(g)).max(1);
    let samples_per_group = samples_per_group.clamp(1, by_loops);
    let by_memory = (max_partial / g.params()).max(1);
    let groups = batch.div_ceil(samples_per_group).min(by_memory).max(1);
    let group_size = batch.div_ceil(groups);
    (batch.div_ceil(group_size).max(1), group_size)
}

/// Adds ∂⟨dy, conv(x)⟩/∂(W, b), summed over the batch, into `grad` at the layer's offsets.
/// `partial` is scratch space of at least `groups × params` values (see [`param_groups`]).
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    samples_per_group: usize,
    x: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    partial: &GpuBuffer<f32>,
    grad: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let groups = param_groups(g, batch, samples_per_group, partial.len());
    check("weight gradient", x, batch.saturating_mul(g.input.len()))?;
    check("weight gradient", dy, batch.saturating_mul(g.output.len()))?;
    check("weight gradient", partial, groups.0 * g.params())?;
    check_theta("weight gradient", g, grad)?;
    windowed::weight_grad_partials(rec, g, batch, groups, x, dy, partial)?;
    blas1::accumulate_groups(rec, partial, groups.0, g.params(), grad, g.weight_offset)
}
