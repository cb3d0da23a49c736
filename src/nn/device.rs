//! A network on the device, lowered once into a plan: a list of operations with their buffers
//! resolved, the fusions decided (a ReLU followed by a max-pool runs inside the pool; a
//! flatten is free: the data is already in (c, h, w) order) and each convolution's packed
//! filters allocated. The workspace holds the buffers of one batch (inputs, every operation's
//! output, the pooling arg-max, the back-propagated gradients, the forward-mode directions)
//! and records the passes into a [`Recorder`]: forward, backward (Jᵀu), forward mode (Jv).

use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, GpuError, Recorder};
use crate::kernels::conv::{self, ConvLayer, PARTIAL_VALUES};
use crate::kernels::{activation, avgpool, blas1, pool};

use super::{AvgPoolGeometry, Network, PlannedLayer, PoolGeometry, Smooth};

/// Which passes a workspace serves: the gradient needs the forward values and the
/// back-propagated gradients; curvature products (Jv) need two more buffers for directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    Gradient,
    Curvature,
}

/// One operation of the plan; `input` and `output` index the workspace's value buffers.
enum Op {
    /// A convolution or dense layer.
    Conv { layer: ConvLayer, input: usize, output: usize },
    /// y = max(x, 0) on `len` values per sample (a ReLU that no max-pool follows).
    Relu { input: usize, output: usize, len: usize },
    /// Average pooling (global pooling included), linear: forward mode is its forward pass.
    AvgPool { geometry: AvgPoolGeometry, input: usize, output: usize },
    /// tanh or sigmoid on `len` values per sample.
    Smooth { function: Smooth, input: usize, output: usize, len: usize },
    /// Max-pool; with `relu`, of max(x, 0) (the ReLU before it, which has no operation).
    Pool { geometry: PoolGeometry, input: usize, output: usize, argmax: usize, relu: bool },
}

/// The plan of `network` and the device buffers for running it on batches of at most
/// `capacity` samples.
pub struct Workspace {
    capacity: usize,
    input_len: usize,
    ops: Vec<Op>,
    /// `values[0]` holds the batch's inputs, the others the operations' outputs.
    values: Vec<GpuBuffer<f32>>,
    argmax: Vec<GpuBuffer<u32>>,
    /// Which value buffer holds the network's outputs.
    output: usize,
    /// Ping-pong buffers for the gradient with respect to each operation's output.
    deltas: [GpuBuffer<f32>; 2],
    /// Ping-pong buffers for R(·), the forward-mode direction through each operation.
    tangents: Option<[GpuBuffer<f32>; 2]>,
    partial: GpuBuffer<f32>,
    labels: GpuBuffer<u32>,
}

impl Workspace {
    /// The largest batch whose biggest activation fits in one storage binding of `gpu`.
    pub fn max_capacity(gpu: &Gpu, network: &Network) -> usize {
        let widest = widest_activation(network) as u64 * 4;
        (gpu.max_binding_bytes() / widest).max(1) as usize
    }

    /// Bytes that a workspace of `capacity` samples would hold at most.
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
        let packed: u64 = network.conv_geometries().map(conv::packed_bytes_bound).sum();
        let partial = 4 * PARTIAL_VALUES.max(largest_layer_params(network)) as u64;
        f * (values + argmax + pairs * widest_activation(network) as u64 + 1) + partial + packed
    }

    /// Lowers `network` and allocates the buffers; fails when `capacity` samples do not fit
    /// the adapter's limits.
    pub fn new(
        execution: &Execution,
        network: &Network,
        capacity: usize,
        passes: Passes,
    ) -> Result<Self, GpuError> {
        let gpu = execution.gpu;
        let capacity = capacity.max(1);
        let mut values = vec![gpu.zeros::<f32>(capacity * network.input().len(), "inputs")?];
        let mut argmax = Vec::new();
        let mut ops = Vec::new();
        let folded = folded_relus(network);
        let mut current = 0;
        for (i, layer) in network.layers().iter().enumerate() {
            let output = values.len();
            let len = layer.output().len();
            let op = match layer {
                PlannedLayer::Flatten { .. } => continue,
                PlannedLayer::Relu { .. } if folded[i] => continue,
                PlannedLayer::Conv { geometry, .. } => {
                    let plan = execution.conv_plan(geometry, capacity)?;
                    let layer = ConvLayer::new(gpu, plan, geometry)?;
                    Op::Conv { layer, input: current, output }
                }
                PlannedLayer::Relu { shape } => Op::Relu { input: current, output, len: shape.len() },
                PlannedLayer::Smooth { function, shape } => {
                    Op::Smooth { function: *function, input: current, output, len: shape.len() }
                }
                PlannedLayer::AvgPool(geometry) => {
                    Op::AvgPool { geometry: *geometry, input: current, output }
                }
                PlannedLayer::MaxPool(geometry) => {
                    argmax.push(gpu.zeros::<u32>(capacity * len, &format!("layer {} argmax", i + 1))?);
                    let relu = i > 0 && folded[i - 1];
                    Op::Pool { geometry: *geometry, input: current, output, argmax: argmax.len() - 1, relu }
                }
            };
            values.push(gpu.zeros::<f32>(capacity * len, &format!("layer {} output", i + 1))?);
            ops.push(op);
            current = output;
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
        Ok(Self {
            capacity,
            input_len: network.input().len(),
            ops,
            values,
            argmax,
            output: current,
            deltas,
            tangents,
            partial,
            labels: gpu.zeros(capacity, "labels")?,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> u64 {
        let sum = |buffers: &[GpuBuffer<f32>]| buffers.iter().map(|b| b.bytes()).sum::<u64>();
        let argmax: u64 = self.argmax.iter().map(|b| b.bytes()).sum();
        let packed: u64 = self.convs().map(|layer| layer.bytes()).sum();
        sum(&self.values)
            + argmax
            + sum(&self.deltas)
            + self.tangents.as_ref().map_or(0, |t| sum(t))
            + self.partial.bytes()
            + self.labels.bytes()
            + packed
    }

    /// The buffer of the batch's inputs, [capacity, c, h, w].
    pub fn inputs(&self) -> &GpuBuffer<f32> {
        &self.values[0]
    }

    /// The buffer of the batch's labels.
    pub fn labels(&self) -> &GpuBuffer<u32> {
        &self.labels
    }

    /// The network's outputs z, [capacity, K].
    pub fn network_outputs(&self) -> &GpuBuffer<f32> {
        &self.values[self.output]
    }

    /// Where the caller puts ∂(loss)/∂z before [`Workspace::record_backward`]: [capacity, K].
    pub fn output_grad(&self) -> &GpuBuffer<f32> {
        &self.deltas[0]
    }

    /// A buffer of at least [capacity, K] values that is free between passes (a tangent
    /// buffer): callers may stage per-sample vectors there.
    pub fn tangent_scratch(&self) -> &GpuBuffer<f32> {
        &self.tangents.as_ref().expect("a workspace made for Passes::Curvature")[1]
    }

    fn convs(&self) -> impl Iterator<Item = &ConvLayer> {
        self.ops.iter().filter_map(|op| match op {
            Op::Conv { layer, .. } => Some(layer),
            _ => None,
        })
    }

    fn check_batch(&self, batch: usize) {
        assert!(batch <= self.capacity, "batch {batch} exceeds the workspace's {}", self.capacity);
    }

    /// Records the packing of θ's filters that the forward and backward passes read (for the
    /// windowed kernels): once per θ, before those passes.
    pub fn record_pack(&self, rec: &mut Recorder, theta: &GpuBuffer<f32>) -> Result<(), GpuError> {
        self.convs().try_for_each(|layer| layer.pack_theta(rec, theta))
    }

    /// Records the forward pass of `batch` samples whose inputs are in [`Workspace::inputs`],
    /// with θ's filters as last packed ([`Workspace::record_pack`]).
    pub fn record_forward(
        &self,
        rec: &mut Recorder,
        theta: &GpuBuffer<f32>,
        batch: usize,
    ) -> Result<(), GpuError> {
        self.check_batch(batch);
        let v = &self.values;
        for op in &self.ops {
            match op {
                Op::Conv { layer, input, output } => {
                    layer.forward(rec, batch, &v[*input], theta, &v[*output])?
                }
                Op::Relu { input, output, len } => {
                    activation::relu_forward(rec, &v[*input], &v[*output], batch * len)?
                }
                Op::Smooth { function, input, output, len } => {
                    activation::smooth_forward(rec, *function, &v[*input], &v[*output], batch * len)?
                }
                Op::AvgPool { geometry, input, output } => {
                    avgpool::forward(rec, geometry, batch, &v[*input], &v[*output])?
                }
                Op::Pool { geometry, input, output, argmax, relu } => pool::forward(
                    rec,
                    geometry,
                    batch,
                    &v[*input],
                    &v[*output],
                    &self.argmax[*argmax],
                    *relu,
                )?,
            }
        }
        Ok(())
    }

    /// Records back-propagation of [`Workspace::output_grad`] through the stored forward
    /// pass: adds Jᵀ·(output grad), summed over the batch, into `grad`, and when `input_grad`
    /// is given also writes the gradient with respect to the inputs there.
    pub fn record_backward(
        &self,
        rec: &mut Recorder,
        theta: &GpuBuffer<f32>,
        batch: usize,
        grad: &GpuBuffer<f32>,
        input_grad: Option<&GpuBuffer<f32>>,
    ) -> Result<(), GpuError> {
        self.check_batch(batch);
        if self.ops.is_empty() {
            // No operation: the network is the identity on its inputs.
            return match input_grad {
                Some(buffer) => blas1::copy(rec, self.output_grad(), 0, buffer, 0, batch * self.input_len),
                None => Ok(()),
            };
        }
        // Below the first operation with parameters, gradients are needed only for input_grad.
        let first_with_params =
            self.ops.iter().position(|op| matches!(op, Op::Conv { .. })).unwrap_or(self.ops.len());
        let lowest = if input_grad.is_some() { 0 } else { first_with_params };
        let v = &self.values;
        let mut current = 0;
        for index in (lowest..self.ops.len()).rev() {
            let dy = &self.deltas[current];
            let dx = match (index, input_grad) {
                (0, Some(buffer)) => buffer,
                _ => &self.deltas[1 - current],
            };
            match &self.ops[index] {
                Op::Conv { layer, input, .. } => {
                    layer.backward_params(rec, batch, &v[*input], dy, &self.partial, grad)?;
                    if index > lowest || input_grad.is_some() {
                        layer.backward_input(rec, batch, dy, theta, dx)?;
                    }
                }
                Op::Relu { output, len, .. } => {
                    activation::relu_backward(rec, &v[*output], dy, dx, batch * len)?
                }
                Op::Smooth { function, output, len, .. } => {
                    activation::smooth_backward(rec, *function, &v[*output], dy, dx, batch * len)?
                }
                Op::AvgPool { geometry, .. } => avgpool::backward(rec, geometry, batch, dy, dx)?,
                Op::Pool { geometry, argmax, .. } => {
                    pool::backward(rec, geometry, batch, dy, &self.argmax[*argmax], dx)?
                }
            }
            current = 1 - current;
        }
        Ok(())
    }

    /// Records forward mode through the stored forward pass: Jv for each of `batch` samples,
    /// where v has θ's layout. Returns the buffer that holds the result, [capacity, K].
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        theta: &GpuBuffer<f32>,
        v: &GpuBuffer<f32>,
        batch: usize,
    ) -> Result<&GpuBuffer<f32>, GpuError> {
        self.check_batch(batch);
        let tangents = self.tangents.as_ref().expect("Jv needs a workspace made for Passes::Curvature");
        let values = &self.values;
        // Which tangent buffer holds R(input of the current operation); None while it is zero,
        // which it is from the data up to the first operation with parameters.
        let mut current: Option<usize> = None;
        for op in &self.ops {
            let next = current.map_or(0, |c| 1 - c);
            let (r_in, r_out) = (current.map(|c| &tangents[c]), &tangents[next]);
            match (op, r_in) {
                (Op::Conv { layer, input, .. }, r_in) => {
                    layer.jvp(rec, batch, &values[*input], r_in, theta, v, r_out)?
                }
                (Op::Relu { output, len, .. }, Some(r_in)) => {
                    activation::relu_backward(rec, &values[*output], r_in, r_out, batch * len)?
                }
                (Op::Smooth { function, output, len, .. }, Some(r_in)) => {
                    activation::smooth_backward(rec, *function, &values[*output], r_in, r_out, batch * len)?
                }
                (Op::AvgPool { geometry, .. }, Some(r_in)) => {
                    avgpool::forward(rec, geometry, batch, r_in, r_out)?
                }
                (Op::Pool { geometry, argmax, .. }, Some(r_in)) => {
                    pool::jvp(rec, geometry, batch, r_in, &self.argmax[*argmax], r_out)?
                }
                // A zero direction stays zero.
                (_, None) => continue,
            }
            current = Some(next);
        }
        match current {
            Some(c) => Ok(&tangents[c]),
            None => {
                // A network without parameters: J is empty and Jv is zero.
                let k = self.network_outputs().len() / self.capacity;
                blas1::fill(rec, &tangents[0], batch * k, 0.0)?;
                Ok(&tangents[0])
            }
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

fn largest_layer_params(network: &Network) -> usize {
    network.conv_geometries().map(|g| g.params()).max().unwrap_or(1)
}
