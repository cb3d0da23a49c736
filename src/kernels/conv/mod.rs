//! Convolutions: the forward pass, forward mode (Jv), the backward pass to the input and the
//! weight gradient of one layer, each checking its buffers and recording the kernels of the
//! chosen kind ([`ConvStrategy`]):
//!
//! - [`windowed`]: results in registers without workgroup memory (shaders/conv_windowed.wgsl),
//!   for software GPUs, where every storage load costs a per-lane loop and a barrier more
//!   still;
//! - [`tiled`]: implicit matrix products in workgroup-memory tiles (shaders/conv_tiled.wgsl),
//!   for real GPUs, where a tile loads 16 values per 64 multiply-adds from fast shared memory.
//!
//! Both compute the same thing and both are tested against the CPU reference. The weight
//! gradient ([`backward_params`]), and the backward pass to the input at stride > 1, have
//! windowed kernels only.

mod params;
mod tiled;
mod windowed;

use super::blas1;
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
    check(pass, theta, g.bias_offset + g.output.channels)
}

/// Which convolution kernels run. Each kind of adapter has a kernel shape that suits it; both
/// compute the same thing (up to rounding) and both are tested against the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvStrategy {
    /// Register-blocked tiles without workgroup memory or barriers, for software GPUs.
    Windowed,
    /// Implicit matrix products in workgroup-memory tiles, for real GPUs.
    Tiled,
}

impl ConvStrategy {
    /// Both kinds, for tests and benchmarks.
    pub const ALL: [Self; 2] = [Self::Windowed, Self::Tiled];

    /// The kernels for an adapter of this type: windowed on a software rasteriser, tiled on
    /// any other.
    pub fn for_device_type(device_type: wgpu::DeviceType) -> Self {
        if device_type == wgpu::DeviceType::Cpu {
            Self::Windowed
        } else {
            Self::Tiled
        }
    }
}

impl std::str::FromStr for ConvStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "windowed" => Ok(Self::Windowed),
            "tiled" => Ok(Self::Tiled),
            _ => Err(format!("{s:?}: expected windowed or tiled")),
        }
    }
}

impl std::fmt::Display for ConvStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Windowed => "windowed",
            Self::Tiled => "tiled",
        })
    }
}

/// Bytes of a layer's packed filters (see [`ConvLayer`]), at most.
pub fn packed_bytes_bound(g: &ConvGeometry) -> u64 {
    windowed::packed_bytes_bound(g)
}

/// One convolution layer on the device: its geometry, the kernels that run it and, for the
/// windowed ones, θ's filters packed as they read them. θ's filters are packed by
/// [`ConvLayer::pack_theta`], once per θ: the forward pass and the backward pass to the input
/// read the filters of the θ last packed (the tiled kernels read θ directly and need none).
pub struct ConvLayer {
    geometry: ConvGeometry,
    strategy: ConvStrategy,
    packed: Option<windowed::Packed>,
}

impl ConvLayer {
    pub fn new(gpu: &Gpu, strategy: ConvStrategy, geometry: &ConvGeometry) -> Result<Self, GpuError> {
        let packed = match strategy {
            ConvStrategy::Windowed => Some(windowed::Packed::new(gpu, geometry)?),
            ConvStrategy::Tiled => None,
        };
        Ok(Self { geometry: *geometry, strategy, packed })
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
        match &self.packed {
            None => tiled::forward(rec, &params, x, theta, y),
            Some(packed) => windowed::forward(rec, &params, x, theta, packed, y),
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
        let params = Params::new(g, batch);
        match (&self.packed, rx) {
            (None, None) => tiled::forward(rec, &params, x, v, ry),
            (None, Some(rx)) => {
                check("forward mode", rx, batch.saturating_mul(g.input.len()))?;
                tiled::jvp(rec, &params, x, rx, theta, v, ry)
            }
            (Some(packed), None) => windowed::forward_with_direction(rec, &params, x, v, packed, ry),
            (Some(packed), Some(rx)) => {
                check("forward mode", rx, batch.saturating_mul(g.input.len()))?;
                windowed::jvp(rec, &params, x, rx, v, packed, ry)
            }
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
        match &self.packed {
            None => tiled::forward(rec, &Params::flipped(g, batch), dy, theta, dx),
            Some(packed) => windowed::backward_input_unit_stride(rec, g, batch, dy, theta, packed, dx),
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
        backward_params(rec, &self.geometry, batch, x, dy, partial, grad)
    }

    pub fn strategy(&self) -> ConvStrategy {
        self.strategy
    }
}

/// How the parameter gradient of a batch is split into groups of samples: enough groups to
/// keep a GPU busy, never more partial sums than `max_partial` values.
pub fn param_groups(g: &ConvGeometry, batch: usize, max_partial: usize) -> (usize, usize) {
    const SAMPLES_PER_GROUP: usize = 16;
    let by_memory = (max_partial / g.params()).max(1);
    let groups = batch.div_ceil(SAMPLES_PER_GROUP).min(by_memory).max(1);
    let group_size = batch.div_ceil(groups);
    (batch.div_ceil(group_size).max(1), group_size)
}

/// Adds ∂⟨dy, conv(x)⟩/∂(W, b), summed over the batch, into `grad` at the layer's offsets.
/// `partial` is scratch space of at least `groups × params` values (see [`param_groups`]).
pub fn backward_params(
    rec: &mut Recorder,
    g: &ConvGeometry,
    batch: usize,
    x: &GpuBuffer<f32>,
    dy: &GpuBuffer<f32>,
    partial: &GpuBuffer<f32>,
    grad: &GpuBuffer<f32>,
) -> Result<(), GpuError> {
    let groups = param_groups(g, batch, partial.len());
    check("weight gradient", x, batch.saturating_mul(g.input.len()))?;
    check("weight gradient", dy, batch.saturating_mul(g.output.len()))?;
    check("weight gradient", partial, groups.0 * g.params())?;
    check_theta("weight gradient", g, grad)?;
    windowed::weight_grad_partials(rec, g, batch, groups, x, dy, partial)?;
    blas1::accumulate_groups(rec, partial, groups.0, g.params(), grad, g.weight_offset)
}
