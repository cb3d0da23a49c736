//! A network on the device: the buffers of one batch (inputs, every layer's output, the
//! pooling arg-max, the back-propagated gradients, the forward-mode directions) and the
//! passes that record into a [`Recorder`]: forward, backward (Jᵀu), forward mode (Jv).

use crate::execution::{ConvStrategy, Execution};
use crate::gpu::{Gpu, GpuBuffer, GpuError, Recorder};
use crate::kernels::conv::{self, Conv};
use crate::kernels::{activation, blas1, pool};

use super::{ConvGeometry, Network, PlannedLayer};

/// Values of the scratch buffer for the per-group parameter gradients (16 MiB).
const PARTIAL_VALUES: usize = 4 << 20;

/// Which passes a workspace serves: the gradient needs the forward values and the
/// back-propagated gradients; curvature products (Jv) need two more buffers for directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    Gradient,
    Curvature,
}

/// Device buffers for running `network` on batches of at most `capacity` samples, and the
/// convolution kernels that run it.
pub struct Workspace {
    capacity: usize,
    conv: ConvStrategy,
    /// Distinct activation buffers; `outputs[i]` indexes the one that holds layer i's output
    /// (a flatten shares its input's buffer), and `values[0]` holds the batch's inputs.
    values: Vec<GpuBuffer<f32>>,
    outputs: Vec<usize>,
    /// `folded[i]`: layer i is a ReLU that the max-pool after it applies (pool::forward's
    /// `relu`); it has no pass and no buffer of its own.
    folded: Vec<bool>,
    argmax: Vec<Option<GpuBuffer<u32>>>,
    /// Ping-pong buffers for the gradient with respect to each layer's output.
    deltas: [GpuBuffer<f32>; 2],
    /// Ping-pong buffers for R(·), the forward-mode direction through each layer.
    tangents: Option<[GpuBuffer<f32>; 2]>,
    partial: GpuBuffer<f32>,
    /// Scratch for the packed filters of the layer at hand (see conv::forward).
    filters: GpuBuffer<f32>,
    labels: GpuBuffer<u32>,
}

impl Workspace {
    /// The largest batch whose biggest activation fits in one storage binding of `gpu`.
    pub fn max_capacity(gpu: &Gpu, network: &Network) -> usize {
        let widest = widest_activation(network) as u64 * 4;
        (gpu.max_binding_bytes() / widest).max(1) as usize
    }

    /// Bytes that a workspace of `capacity` samples would hold.
    pub fn bytes_for(network: &Network, capacity: usize, passes: Passes) -> u64 {
        let f = 4 * capacity.max(1) as u64;
        let mut values = network.input().len() as u64;
        let mut argmax = 0;
        let folded = folded_relus(network);
        for (layer, folded) in network.layers().iter().zip(folded) {
            match layer {
                PlannedLayer::Flatten { .. } => {}
                PlannedLayer::Relu { .. } if folded => {}
                PlannedLayer::MaxPool(_) => {
                    values += layer.output().len() as u64;
                    argmax += layer.output().len() as u64;
                }
                _ => values += layer.output().len() as u64,
            }
        }
        let pairs = if passes == Passes::Curvature { 4 } else { 2 };
        let scratch =
            4 * (PARTIAL_VALUES.max(largest_layer_params(network)) + filter_scratch_len(network)) as u64;
        f * (values + argmax + pairs * widest_activation(network) as u64 + 1) + scratch
    }

    /// Allocates the buffers; fails when `capacity` samples do not fit the adapter's limits.
    pub fn new(
        execution: &Execution,
        network: &Network,
        capacity: usize,
        passes: Passes,
    ) -> Result<Self, GpuError> {
        let gpu = execution.gpu;
        let capacity = capacity.max(1);
        let mut values = vec![gpu.zeros::<f32>(capacity * network.input().len(), "inputs")?];
        let mut outputs = Vec::new();
        let mut argmax = Vec::new();
        let folded = folded_relus(network);
        for (i, layer) in network.layers().iter().enumerate() {
            let len = capacity * layer.output().len();
            argmax.push(match layer {
                PlannedLayer::MaxPool(_) => Some(gpu.zeros::<u32>(len, &format!("layer {} argmax", i + 1))?),
                _ => None,
            });
            if matches!(layer, PlannedLayer::Flatten { .. }) || folded[i] {
                outputs.push(outputs.last().copied().unwrap_or(0));
            } else {
                values.push(gpu.zeros::<f32>(len, &format!("layer {} output", i + 1))?);
                outputs.push(values.len() - 1);
            }
        }
        let delta_len = capacity * widest_activation(network);
        let deltas = [gpu.zeros(delta_len, "delta A")?, gpu.zeros(delta_len, "delta B")?];
        let tangents = match passes {
            Passes::Curvature => {
                Some([gpu.zeros(delta_len, "tangent A")?, gpu.zeros(delta_len, "tangent B")?])
            }
            Passes::Gradient => None,
        };
        let partial = gpu.zeros(PARTIAL_VALUES.max(largest_layer_params(network)), "param partial sums")?;
        let filters = gpu.zeros(filter_scratch_len(network), "packed filters")?;
        let labels = gpu.zeros(capacity, "labels")?;
        Ok(Self {
            capacity,
            conv: execution.conv,
            values,
            outputs,
            folded,
            argmax,
            deltas,
            tangents,
            partial,
            filters,
            labels,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> u64 {
        let values: u64 = self.values.iter().map(|b| b.bytes()).sum();
        let argmax: u64 = self.argmax.iter().flatten().map(|b| b.bytes()).sum();
        let tangents: u64 = self.tangents.iter().flatten().map(|b| b.bytes()).sum();
        values
            + argmax
            + self.deltas.iter().map(|b| b.bytes()).sum::<u64>()
            + tangents
            + self.partial.bytes()
            + self.filters.bytes()
            + self.labels.bytes()
    }

    /// The buffer of the batch's inputs, [capacity, c, h, w].
    pub fn inputs(&self) -> &GpuBuffer<f32> {
        &self.values[0]
    }

    /// The buffer of the batch's labels.
    pub fn labels(&self) -> &GpuBuffer<u32> {
        &self.labels
    }

    /// The output of layer `index` (0-based), [capacity, …].
    pub fn output_of(&self, index: usize) -> &GpuBuffer<f32> {
        &self.values[self.outputs[index]]
    }

    /// The network's outputs z, [capacity, K].
    pub fn network_outputs(&self) -> &GpuBuffer<f32> {
        self.output_of(self.outputs.len() - 1)
    }

    /// Where the caller puts ∂(loss)/∂z before [`backward`]: [capacity, K].
    pub fn output_grad(&self) -> &GpuBuffer<f32> {
        &self.deltas[0]
    }

    /// A buffer of at least [capacity, K] values that is free between passes (a tangent
    /// buffer): callers may stage per-sample vectors there.
    pub fn tangent_scratch(&self) -> &GpuBuffer<f32> {
        &self.tangents.as_ref().expect("a workspace made for Passes::Curvature")[1]
    }

    /// Layer `geometry` as this workspace runs it.
    fn conv<'w>(&'w self, geometry: &'w ConvGeometry) -> Conv<'w> {
        Conv { geometry, strategy: self.conv, filters: &self.filters }
    }

    /// The input of layer `index`.
    fn input_of(&self, index: usize) -> &GpuBuffer<f32> {
        if index == 0 {
            self.inputs()
        } else {
            self.output_of(index - 1)
        }
    }
}

fn widest_activation(network: &Network) -> usize {
    let layers = network.layers().iter().map(|l| l.output().len());
    layers.chain([network.input().len()]).max().unwrap_or(1)
}

/// Which layers are ReLUs directly followed by a max-pool, which then applies them.
fn folded_relus(network: &Network) -> Vec<bool> {
    let layers = network.layers();
    (0..layers.len())
        .map(|i| {
            matches!(layers[i], PlannedLayer::Relu { .. })
                && matches!(layers.get(i + 1), Some(PlannedLayer::MaxPool(_)))
        })
        .collect()
}

fn filter_scratch_len(network: &Network) -> usize {
    network.conv_geometries().map(conv::filter_scratch_len).max().unwrap_or(4)
}

fn largest_layer_params(network: &Network) -> usize {
    network.conv_geometries().map(|g| g.params()).max().unwrap_or(1)
}

/// Records the forward pass of `batch` samples whose inputs are in `ws.inputs()`.
pub fn forward(
    rec: &mut Recorder,
    network: &Network,
    ws: &Workspace,
    theta: &GpuBuffer<f32>,
    batch: usize,
) -> Result<(), GpuError> {
    assert!(batch <= ws.capacity, "batch {batch} exceeds the workspace's {}", ws.capacity);
    for (i, layer) in network.layers().iter().enumerate() {
        let (x, y) = (ws.input_of(i), ws.output_of(i));
        match layer {
            PlannedLayer::Conv { geometry, .. } => ws.conv(geometry).forward(rec, batch, x, theta, y)?,
            PlannedLayer::Relu { .. } if ws.folded[i] => {}
            PlannedLayer::Relu { shape } => activation::relu_forward(rec, x, y, batch * shape.len())?,
            PlannedLayer::MaxPool(g) => {
                let argmax = ws.argmax[i].as_ref().expect("pool layers own an argmax buffer");
                let relu = i > 0 && ws.folded[i - 1];
                pool::forward(rec, g, batch, x, y, argmax, relu)?
            }
            PlannedLayer::Flatten { .. } => {}
        }
    }
    Ok(())
}

/// Records back-propagation of `ws.output_grad()` through the stored forward pass: adds
/// Jᵀ·(output grad), summed over the batch, into `grad`, and when `input_grad` is given also
/// writes the gradient with respect to the inputs there.
pub fn backward(
    rec: &mut Recorder,
    network: &Network,
    ws: &Workspace,
    theta: &GpuBuffer<f32>,
    batch: usize,
    grad: &GpuBuffer<f32>,
    input_grad: Option<&GpuBuffer<f32>>,
) -> Result<(), GpuError> {
    assert!(batch <= ws.capacity, "batch {batch} exceeds the workspace's {}", ws.capacity);
    // Below the first layer with parameters, gradients are needed only for input_grad.
    let first_with_params = network
        .layers()
        .iter()
        .position(|l| matches!(l, PlannedLayer::Conv { .. }))
        .unwrap_or(network.layers().len());
    let lowest = if input_grad.is_some() { 0 } else { first_with_params };
    let mut current = 0;
    for i in (lowest..network.layers().len()).rev() {
        let layer = &network.layers()[i];
        let dy = &ws.deltas[current];
        let dx = match (i, input_grad) {
            (0, Some(buffer)) => buffer,
            _ => &ws.deltas[1 - current],
        };
        let needs_dx = i > lowest || input_grad.is_some();
        match layer {
            PlannedLayer::Conv { geometry, .. } => {
                conv::backward_params(rec, geometry, batch, ws.input_of(i), dy, &ws.partial, grad)?;
                if needs_dx {
                    ws.conv(geometry).backward_input(rec, batch, dy, theta, dx)?;
                }
            }
            PlannedLayer::Relu { shape } if ws.folded[i] => {
                pass_through(rec, i, dy, input_grad, batch * shape.len())?;
                continue;
            }
            PlannedLayer::Relu { shape } => {
                activation::relu_backward(rec, ws.output_of(i), dy, dx, batch * shape.len())?
            }
            PlannedLayer::MaxPool(g) => {
                let argmax = ws.argmax[i].as_ref().expect("pool layers own an argmax buffer");
                pool::backward(rec, g, batch, dy, argmax, dx)?
            }
            PlannedLayer::Flatten { input, .. } => {
                pass_through(rec, i, dy, input_grad, batch * input.len())?;
                continue;
            }
        }
        current = 1 - current;
    }
    Ok(())
}

/// Back-propagation through a layer that leaves the gradient as it is (a flatten keeps its
/// values in order; a folded ReLU's mask is applied by the pool above): nothing to do, except
/// that the gradient must end in `input_grad` when this is the first layer.
fn pass_through(
    rec: &mut Recorder,
    layer: usize,
    dy: &GpuBuffer<f32>,
    input_grad: Option<&GpuBuffer<f32>>,
    len: usize,
) -> Result<(), GpuError> {
    match input_grad {
        Some(buffer) if layer == 0 => blas1::copy(rec, dy, 0, buffer, 0, len),
        _ => Ok(()),
    }
}

/// Records forward mode through the stored forward pass: Jv for each of `batch` samples, where
/// v has θ's layout. Returns the buffer that holds the result, [capacity, K].
pub fn jvp<'w>(
    rec: &mut Recorder,
    network: &Network,
    ws: &'w Workspace,
    theta: &GpuBuffer<f32>,
    v: &GpuBuffer<f32>,
    batch: usize,
) -> Result<&'w GpuBuffer<f32>, GpuError> {
    assert!(batch <= ws.capacity, "batch {batch} exceeds the workspace's {}", ws.capacity);
    let tangents = ws.tangents.as_ref().expect("Jv needs a workspace made for Passes::Curvature");
    // Which tangent buffer holds R(input of the current layer); None while it is zero, which
    // it is from the data up to the first layer with parameters.
    let mut current: Option<usize> = None;
    for (i, layer) in network.layers().iter().enumerate() {
        let next = current.map_or(0, |c| 1 - c);
        let (r_in, r_out) = (current.map(|c| &tangents[c]), &tangents[next]);
        match (layer, r_in) {
            (PlannedLayer::Conv { geometry, .. }, r_in) => {
                ws.conv(geometry).jvp(rec, batch, ws.input_of(i), r_in, theta, v, r_out)?
            }
            (PlannedLayer::Relu { shape }, Some(r_in)) if !ws.folded[i] => {
                activation::relu_backward(rec, ws.output_of(i), r_in, r_out, batch * shape.len())?
            }
            (PlannedLayer::MaxPool(g), Some(r_in)) => {
                let argmax = ws.argmax[i].as_ref().expect("pool layers own an argmax buffer");
                pool::jvp(rec, g, batch, r_in, argmax, r_out)?
            }
            // Flatten keeps the values where they are, a folded ReLU's mask is applied by the
            // pool above, and a zero direction stays zero.
            (PlannedLayer::Flatten { .. } | PlannedLayer::Relu { .. }, _) | (_, None) => continue,
        }
        current = Some(next);
    }
    match current {
        Some(c) => Ok(&tangents[c]),
        None => {
            // A network without parameters: J is empty and Jv is zero.
            blas1::fill(rec, &tangents[0], batch * network.outputs(), 0.0)?;
            Ok(&tangents[0])
        }
    }
}
