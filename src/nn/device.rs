//! A network on the device, lowered once into a plan: a list of operations in graph order
//! with their buffers resolved, the fusions decided (a ReLU read only by a max-pool runs
//! inside the pool; a flatten is free: the data is already in (c, h, w) order) and each
//! convolution's packed filters allocated. The workspace holds the buffers of one batch
//! (inputs, every operation's output, the pooling arg-max, the back-propagated gradients, the
//! forward-mode directions) and records the passes into a [`Recorder`]: forward, backward
//! (Jᵀu), forward mode (Jv).
//!
//! Gradients and directions do not need a buffer per operation: each is live from the
//! operation that writes it to the last one that reads it, and buffers are shared between
//! values whose lives do not overlap (a chain needs two of each; a residual block three).
//! Where a value feeds several operations (a block's input feeds its body and its shortcut),
//! the backward pass adds each operation's part into its gradient.

use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, GpuError, Recorder};
use crate::kernels::conv::{self, ConvLayer, PARTIAL_VALUES};
use crate::kernels::{activation, avgpool, blas1, graph, pool};

use super::{AvgPoolGeometry, Network, PlannedLayer, PoolGeometry, Shape, Smooth, SubsampleGeometry};

/// Which passes a workspace serves: the gradient needs the forward values and the
/// back-propagated gradients; curvature products (Jv) need more buffers for directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    Gradient,
    Curvature,
}

/// What one operation of the plan computes.
enum Kind {
    /// A convolution or dense layer.
    Conv(ConvLayer),
    /// y = max(x, 0) (a ReLU that is not folded into a max-pool).
    Relu,
    /// Average pooling (global pooling included), linear: forward mode is its forward pass.
    AvgPool(AvgPoolGeometry),
    /// tanh or sigmoid.
    Smooth(Smooth),
    /// Max-pool; with `relu`, of max(x, 0) (the ReLU before it, which has no operation).
    Pool {
        geometry: PoolGeometry,
        argmax: usize,
        relu: bool,
    },
    /// The sum of its two inputs.
    Add,
    /// x + θ[offset].
    Bias(usize),
    /// θ[offset] · x.
    Scale(usize),
    Subsample(SubsampleGeometry),
    /// y = a[c]·x + b[c] with the constants on the device (a, then b).
    Affine {
        shape: Shape,
        coefficients: GpuBuffer<f32>,
    },
}

/// One operation: what it computes, the value buffers it reads and the one it writes,
/// `len`, its output's values per sample, and its parameters' place in θ (empty if none).
struct Op {
    kind: Kind,
    inputs: Vec<usize>,
    output: usize,
    len: usize,
    params: std::ops::Range<usize>,
}

/// A point in a recorded backward pass: from dispatch `dispatch` of the recorder on, the pass
/// writes nothing more into the gradient of θ[from..]: that part of it is final (see
/// [`Workspace::record_backward_marked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradientDone {
    pub dispatch: usize,
    pub from: usize,
}

/// The network's layers as operations on value buffers, before any buffer exists: what
/// [`Workspace::new`] allocates and [`Workspace::bytes_for`] counts.
struct Lowering {
    /// (layer index, inputs, fused ReLU) per operation; its output is value `index + 1`.
    ops: Vec<(usize, Vec<usize>, bool)>,
    /// Values per sample of each value buffer; value 0 holds the inputs.
    lens: Vec<usize>,
    /// The value that holds the network's outputs.
    output: usize,
    /// Whether a value depends on parameters: its gradient reaches θ, its direction is not zero.
    depends: Vec<bool>,
    /// The gradient buffer of each value (none for the inputs: the caller's, if any).
    delta_slot: Vec<usize>,
    delta_slots: usize,
    /// The direction buffer of each value that depends on parameters.
    tangent_slot: Vec<Option<usize>>,
    tangent_slots: usize,
    /// Whether some value feeds several operations: the backward pass then adds parts, through
    /// one more buffer.
    fans_out: bool,
}

/// Shares buffers between closed intervals [start, end] of time: the i-th interval's buffer,
/// and how many buffers. Taken in order of start, each reuses the buffer freed longest ago;
/// intervals that meet at a time never share (an operation reads one while it writes another).
fn assign_slots(intervals: &[(i64, i64)]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    order.sort_by_key(|&i| (intervals[i].0, i));
    let mut free_after: Vec<i64> = Vec::new();
    let mut slots = vec![0; intervals.len()];
    for i in order {
        let (start, end) = intervals[i];
        let reusable =
            (0..free_after.len()).filter(|&s| free_after[s] < start).min_by_key(|&s| (free_after[s], s));
        let slot = reusable.unwrap_or_else(|| {
            free_after.push(i64::MIN);
            free_after.len() - 1
        });
        free_after[slot] = end;
        slots[i] = slot;
    }
    (slots, free_after.len())
}

impl Lowering {
    fn new(network: &Network) -> Self {
        let layers = network.layers();
        let mut readers = vec![Vec::new(); layers.len() + 1];
        for i in 0..layers.len() {
            for &node in network.sources(i) {
                readers[node].push(i);
            }
        }
        // A ReLU folds into the max-pool that is its only reader.
        let folded = |i: usize| {
            matches!(layers[i], PlannedLayer::Relu { .. })
                && matches!(readers[i + 1].as_slice(), [j] if matches!(layers[*j], PlannedLayer::MaxPool(_)))
        };
        let mut value_of = vec![0; layers.len() + 1];
        let mut fused = vec![false; layers.len() + 1];
        let mut ops = Vec::new();
        let mut lens = vec![network.input().len()];
        for (i, layer) in layers.iter().enumerate() {
            let sources = network.sources(i);
            if matches!(layer, PlannedLayer::Flatten { .. }) || folded(i) {
                value_of[i + 1] = value_of[sources[0]];
                fused[i + 1] = folded(i);
                continue;
            }
            let inputs: Vec<usize> = sources.iter().map(|&node| value_of[node]).collect();
            let relu = matches!(layer, PlannedLayer::MaxPool(_)) && fused[sources[0]];
            ops.push((i, inputs, relu));
            lens.push(layer.output().len());
            value_of[i + 1] = ops.len();
        }
        let output = value_of[layers.len()];
        let count = ops.len();
        let mut depends = vec![false; count + 1];
        for (k, (layer, inputs, _)) in ops.iter().enumerate() {
            depends[k + 1] = layers[*layer].param_count() > 0 || inputs.iter().any(|&v| depends[v]);
        }
        let (mut last_reader, mut reads) = (vec![None; count + 1], vec![0; count + 1]);
        for (k, (_, inputs, _)) in ops.iter().enumerate() {
            for &v in inputs {
                last_reader[v] = Some(k);
                reads[v] += 1;
            }
        }
        let fans_out = reads.iter().any(|&r| r > 1);
        // Backward time: operation k runs at count − 1 − k. A value's gradient lives from its
        // last reader (the caller's write, before, for the outputs) to its producer.
        let backward_time = |k: usize| (count - 1 - k) as i64;
        let delta_intervals: Vec<(i64, i64)> = (1..=count)
            .map(|v| {
                let start = if v == output { -1 } else { last_reader[v].map_or(-1, backward_time) };
                (start, backward_time(v - 1))
            })
            .collect();
        let (slots, delta_slots) = assign_slots(&delta_intervals);
        let mut delta_slot = vec![0; count + 1];
        delta_slot[1..].copy_from_slice(&slots);
        // Forward time: operation k runs at k; a direction lives to its last reader (the
        // caller's read, after, for the outputs).
        let live: Vec<usize> = (1..=count).filter(|&v| depends[v]).collect();
        let tangent_intervals: Vec<(i64, i64)> = live
            .iter()
            .map(|&v| {
                let end = if v == output { count as i64 } else { last_reader[v].map_or(count, |k| k) as i64 };
                ((v - 1) as i64, end)
            })
            .collect();
        let (slots, tangent_slots) = assign_slots(&tangent_intervals);
        let mut tangent_slot = vec![None; count + 1];
        for (&v, slot) in live.iter().zip(slots) {
            tangent_slot[v] = Some(slot);
        }
        Self {
            ops,
            lens,
            output,
            depends,
            delta_slot,
            delta_slots,
            tangent_slot,
            tangent_slots: tangent_slots.max(1),
            fans_out,
        }
    }

    /// Gradient and direction buffers, each of the widest value.
    fn pass_buffers(&self, passes: Passes) -> usize {
        let tangents = if passes == Passes::Curvature { self.tangent_slots } else { 0 };
        self.delta_slots.max(1) + usize::from(self.fans_out) + tangents
    }
}

/// The plan of `network` and the device buffers for running it on batches of at most
/// `capacity` samples.
pub struct Workspace {
    capacity: usize,
    input_len: usize,
    ops: Vec<Op>,
    /// `values[0]` holds the batch's inputs, `values[k + 1]` operation k's output.
    values: Vec<GpuBuffer<f32>>,
    argmax: Vec<GpuBuffer<u32>>,
    /// Which value buffer holds the network's outputs.
    output: usize,
    /// Whether each value depends on parameters (see [`Lowering`]).
    depends: Vec<bool>,
    /// The gradient with respect to each value: `deltas[delta_slot[v]]`.
    deltas: Vec<GpuBuffer<f32>>,
    delta_slot: Vec<usize>,
    /// Where an operation puts its part of a gradient that another part is already in.
    gather: Option<GpuBuffer<f32>>,
    /// R(·), the forward-mode direction of each value that depends on parameters.
    tangents: Vec<GpuBuffer<f32>>,
    tangent_slot: Vec<Option<usize>>,
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
        let lowering = Lowering::new(network);
        let values: u64 = lowering.lens.iter().map(|&l| l as u64).sum();
        let argmax: u64 = lowering
            .ops
            .iter()
            .filter(|(layer, ..)| matches!(network.layers()[*layer], PlannedLayer::MaxPool(_)))
            .map(|(layer, ..)| network.layers()[*layer].output().len() as u64)
            .sum();
        let buffers = lowering.pass_buffers(passes) as u64;
        let packed: u64 = network.conv_geometries().map(conv::packed_bytes_bound).sum();
        let partial = 4 * PARTIAL_VALUES.max(largest_layer_params(network)) as u64;
        f * (values + argmax + buffers * widest_activation(network) as u64 + 1) + partial + packed
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
        let lowering = Lowering::new(network);
        let mut values = vec![gpu.zeros::<f32>(capacity * network.input().len(), "inputs")?];
        let mut argmax = Vec::new();
        let mut ops = Vec::new();
        for (k, (index, inputs, relu)) in lowering.ops.iter().enumerate() {
            let (index, relu) = (*index, *relu);
            let layer = &network.layers()[index];
            let len = layer.output().len();
            let kind = match layer {
                PlannedLayer::Conv { geometry, .. } => {
                    let plan = execution.conv_plan(geometry, capacity)?;
                    Kind::Conv(ConvLayer::new(gpu, plan, geometry)?)
                }
                PlannedLayer::Relu { .. } => Kind::Relu,
                PlannedLayer::Smooth { function, .. } => Kind::Smooth(*function),
                PlannedLayer::AvgPool(geometry) => Kind::AvgPool(*geometry),
                PlannedLayer::MaxPool(geometry) => {
                    argmax.push(gpu.zeros::<u32>(capacity * len, &format!("layer {} argmax", index + 1))?);
                    Kind::Pool { geometry: *geometry, argmax: argmax.len() - 1, relu }
                }
                PlannedLayer::Add { .. } => Kind::Add,
                PlannedLayer::Bias { offset, .. } => Kind::Bias(*offset),
                PlannedLayer::Scale { offset, .. } => Kind::Scale(*offset),
                PlannedLayer::Subsample(geometry) => Kind::Subsample(*geometry),
                PlannedLayer::Affine { shape, scale, shift } => {
                    let values: Vec<f32> = scale.iter().chain(shift).copied().collect();
                    let coefficients = gpu.upload(&values, &format!("layer {} affine", index + 1))?;
                    Kind::Affine { shape: *shape, coefficients }
                }
                PlannedLayer::Flatten { .. } => unreachable!("a flatten has no operation"),
            };
            values.push(gpu.zeros::<f32>(capacity * len, &format!("layer {} output", index + 1))?);
            ops.push(Op { kind, inputs: inputs.clone(), output: k + 1, len, params: layer.params() });
        }
        let widest = capacity * widest_activation(network);
        let buffers = |count: usize, what: &str| -> Result<Vec<GpuBuffer<f32>>, GpuError> {
            (0..count).map(|i| gpu.zeros(widest, &format!("{what} {i}"))).collect()
        };
        let deltas = buffers(lowering.delta_slots.max(1), "gradient")?;
        let gather = lowering.fans_out.then(|| gpu.zeros(widest, "gradient part")).transpose()?;
        let tangents = match passes {
            Passes::Curvature => buffers(lowering.tangent_slots, "direction")?,
            Passes::Gradient => Vec::new(),
        };
        let partial = gpu.zeros(PARTIAL_VALUES.max(largest_layer_params(network)), "param partial sums")?;
        Ok(Self {
            capacity,
            input_len: network.input().len(),
            ops,
            values,
            argmax,
            output: lowering.output,
            depends: lowering.depends,
            deltas,
            delta_slot: lowering.delta_slot,
            gather,
            tangents,
            tangent_slot: lowering.tangent_slot,
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
            + self.gather.as_ref().map_or(0, |b| b.bytes())
            + sum(&self.tangents)
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
        &self.deltas[self.delta_slot[self.output]]
    }

    /// A buffer of at least [capacity, K] values that is free between passes (a direction
    /// buffer): callers may stage per-sample vectors there.
    pub fn tangent_scratch(&self) -> &GpuBuffer<f32> {
        self.tangents.first().expect("a workspace made for Passes::Curvature")
    }

    fn convs(&self) -> impl Iterator<Item = &ConvLayer> {
        self.ops.iter().filter_map(|op| match &op.kind {
            Kind::Conv(layer) => Some(layer),
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
            let (x, y, len) = (&v[op.inputs[0]], &v[op.output], batch * op.len);
            match &op.kind {
                Kind::Conv(layer) => layer.forward(rec, batch, x, theta, y)?,
                Kind::Relu => activation::relu_forward(rec, x, y, len)?,
                Kind::Smooth(function) => activation::smooth_forward(rec, *function, x, y, len)?,
                Kind::AvgPool(geometry) => avgpool::forward(rec, geometry, batch, x, y)?,
                Kind::Pool { geometry, argmax, relu } => {
                    pool::forward(rec, geometry, batch, x, y, &self.argmax[*argmax], *relu)?
                }
                Kind::Add => blas1::add(rec, x, &v[op.inputs[1]], y, len)?,
                Kind::Bias(offset) => graph::shift(rec, theta, *offset, x, y, len)?,
                Kind::Scale(offset) => graph::multiply(rec, theta, *offset, x, y, len)?,
                Kind::Subsample(geometry) => graph::subsample_forward(rec, geometry, batch, x, y)?,
                Kind::Affine { shape, coefficients } => {
                    graph::affine(rec, *shape, batch, coefficients, true, x, y)?
                }
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
        self.record_backward_marked(rec, theta, batch, grad, input_grad, &mut Vec::new())
    }

    /// [`Workspace::record_backward`], noting in `done` each point of the pass after which a
    /// longer tail θ[from..] of the gradient is final (the pass runs from the last layer to
    /// the first, so the tails grow; the last point has from = 0 when every parameter is
    /// reached). A product's parts can then be read while the device computes the rest.
    pub fn record_backward_marked(
        &self,
        rec: &mut Recorder,
        theta: &GpuBuffer<f32>,
        batch: usize,
        grad: &GpuBuffer<f32>,
        input_grad: Option<&GpuBuffer<f32>>,
        done: &mut Vec<GradientDone>,
    ) -> Result<(), GpuError> {
        self.check_batch(batch);
        // The parameters' starts from the last to the first; a tail is final once every
        // operation owning a start in it has written its part.
        let mut starts: Vec<usize> =
            self.ops.iter().filter(|op| !op.params.is_empty()).map(|op| op.params.start).collect();
        starts.sort_unstable_by(|a, b| b.cmp(a));
        let mut written = vec![false; starts.len()];
        let mut final_owners = 0;
        let mut note_written = |rec: &Recorder, start: usize| {
            if let Some(i) = starts.iter().position(|&s| s == start) {
                written[i] = true;
            }
            let before = final_owners;
            while final_owners < starts.len() && written[final_owners] {
                final_owners += 1;
            }
            if final_owners > before {
                done.push(GradientDone { dispatch: rec.dispatches(), from: starts[final_owners - 1] });
            }
        };
        if self.ops.is_empty() {
            // No operation: the network is the identity on its inputs.
            return match input_grad {
                Some(buffer) => blas1::copy(rec, self.output_grad(), 0, buffer, 0, batch * self.input_len),
                None => Ok(()),
            };
        }
        // A value's gradient is needed where it reaches θ, or everywhere for input_grad.
        let wanted = |value: usize| match value {
            0 => input_grad.is_some(),
            _ => self.depends[value] || input_grad.is_some(),
        };
        let delta = |value: usize| match (value, input_grad) {
            (0, Some(buffer)) => buffer,
            _ => &self.deltas[self.delta_slot[value]],
        };
        let values = &self.values;
        // Whether a value's gradient holds a part already: later parts are added to it.
        let mut started = vec![false; values.len()];
        for op in self.ops.iter().rev() {
            if !wanted(op.output) {
                continue;
            }
            let dy = delta(op.output);
            let (x, len) = (&values[op.inputs[0]], batch * op.len);
            match &op.kind {
                Kind::Conv(layer) => layer.backward_params(rec, batch, x, dy, &self.partial, grad)?,
                Kind::Bias(offset) => graph::scalar_grad(rec, dy, None, len, &self.partial, grad, *offset)?,
                Kind::Scale(offset) => {
                    graph::scalar_grad(rec, dy, Some(x), len, &self.partial, grad, *offset)?
                }
                _ => {}
            }
            if !op.params.is_empty() {
                note_written(rec, op.params.start);
            }
            for (position, &input) in op.inputs.iter().enumerate() {
                if !wanted(input) {
                    continue;
                }
                let target = delta(input);
                let input_len = values[input].len() / self.capacity * batch;
                if matches!(op.kind, Kind::Add | Kind::Bias(_)) {
                    // The gradient passes unchanged.
                    match started[input] {
                        true => blas1::axpy(rec, 1.0, dy, target, input_len)?,
                        false => blas1::copy(rec, dy, 0, target, 0, input_len)?,
                    }
                    started[input] = true;
                    continue;
                }
                debug_assert_eq!(position, 0, "only an add reads two values");
                let dx = match started[input] {
                    true => self.gather.as_ref().expect("a value read twice has a part buffer"),
                    false => target,
                };
                match &op.kind {
                    Kind::Conv(layer) => layer.backward_input(rec, batch, dy, theta, dx)?,
                    Kind::Relu => activation::relu_backward(rec, &values[op.output], dy, dx, len)?,
                    Kind::Smooth(function) => {
                        activation::smooth_backward(rec, *function, &values[op.output], dy, dx, len)?
                    }
                    Kind::AvgPool(geometry) => avgpool::backward(rec, geometry, batch, dy, dx)?,
                    Kind::Pool { geometry, argmax, .. } => {
                        pool::backward(rec, geometry, batch, dy, &self.argmax[*argmax], dx)?
                    }
                    Kind::Scale(offset) => graph::multiply(rec, theta, *offset, dy, dx, len)?,
                    Kind::Subsample(geometry) => graph::subsample_backward(rec, geometry, batch, dy, dx)?,
                    Kind::Affine { shape, coefficients } => {
                        graph::affine(rec, *shape, batch, coefficients, false, dy, dx)?
                    }
                    Kind::Add | Kind::Bias(_) => unreachable!("handled above"),
                }
                if started[input] {
                    blas1::axpy(rec, 1.0, dx, target, input_len)?;
                }
                started[input] = true;
            }
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
        assert!(!self.tangents.is_empty(), "Jv needs a workspace made for Passes::Curvature");
        let values = &self.values;
        // R(value): None while it is zero, which it is up to the first operation with parameters.
        let tangent = |value: usize| self.tangent_slot[value].map(|slot| &self.tangents[slot]);
        for op in &self.ops {
            let Some(r_out) = tangent(op.output) else { continue };
            let (x, len) = (&values[op.inputs[0]], batch * op.len);
            match (&op.kind, tangent(op.inputs[0])) {
                (Kind::Conv(layer), r_in) => layer.jvp(rec, batch, x, r_in, theta, v, r_out)?,
                (Kind::Bias(offset), Some(r_in)) => graph::shift(rec, v, *offset, r_in, r_out, len)?,
                (Kind::Bias(offset), None) => graph::broadcast(rec, v, *offset, r_out, len)?,
                (Kind::Scale(offset), Some(r_in)) => {
                    graph::scale_jvp(rec, theta, v, *offset, r_in, x, r_out, len)?
                }
                (Kind::Scale(offset), None) => graph::multiply(rec, v, *offset, x, r_out, len)?,
                (Kind::Add, r_body) => match (r_body, tangent(op.inputs[1])) {
                    (Some(a), Some(b)) => blas1::add(rec, a, b, r_out, len)?,
                    (Some(only), None) | (None, Some(only)) => blas1::copy(rec, only, 0, r_out, 0, len)?,
                    (None, None) => {
                        unreachable!("a direction that depends on parameters has a source that does")
                    }
                },
                (Kind::Relu, Some(r_in)) => {
                    activation::relu_backward(rec, &values[op.output], r_in, r_out, len)?
                }
                (Kind::Smooth(function), Some(r_in)) => {
                    activation::smooth_backward(rec, *function, &values[op.output], r_in, r_out, len)?
                }
                (Kind::AvgPool(geometry), Some(r_in)) => avgpool::forward(rec, geometry, batch, r_in, r_out)?,
                (Kind::Pool { geometry, argmax, .. }, Some(r_in)) => {
                    pool::jvp(rec, geometry, batch, r_in, &self.argmax[*argmax], r_out)?
                }
                (Kind::Subsample(geometry), Some(r_in)) => {
                    graph::subsample_forward(rec, geometry, batch, r_in, r_out)?
                }
                (Kind::Affine { shape, coefficients }, Some(r_in)) => {
                    graph::affine(rec, *shape, batch, coefficients, false, r_in, r_out)?
                }
                (_, None) => unreachable!("a parameter-free operation on a zero direction has no direction"),
            }
        }
        match tangent(self.output) {
            Some(result) => Ok(result),
            None => {
                // A network without parameters: J is empty and Jv is zero.
                let k = self.network_outputs().len() / self.capacity;
                blas1::fill(rec, &self.tangents[0], batch * k, 0.0)?;
                Ok(&self.tangents[0])
            }
        }
    }
}

fn widest_activation(network: &Network) -> usize {
    let layers = network.layers().iter().map(|l| l.output().len());
    layers.chain([network.input().len()]).max().unwrap_or(1)
}

fn largest_layer_params(network: &Network) -> usize {
    network.conv_geometries().map(|g| g.params()).max().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{cnn4, LayerSpec, Shape};

    #[test]
    fn buffers_are_shared_between_values_whose_lives_do_not_overlap() {
        // Three intervals in a row share two buffers: neighbours meet at a time.
        assert_eq!(assign_slots(&[(0, 1), (1, 2), (2, 3)]), (vec![0, 1, 0], 2));
        assert_eq!(assign_slots(&[(0, 5), (1, 2), (3, 4)]), (vec![0, 1, 1], 2));
        // A chain: two gradient and two direction buffers, as before graphs.
        let chain = Lowering::new(&cnn4(Shape::new(1, 28, 28), 10).unwrap());
        assert_eq!((chain.delta_slots, chain.tangent_slots, chain.fans_out), (2, 2, false));
        // A block: its input lives across the body, so one more of each, and a part buffer.
        let block = LayerSpec::Residual {
            body: vec![LayerSpec::conv(3, 2, 1, 1), LayerSpec::Relu, LayerSpec::conv(3, 2, 1, 1)],
            shortcut: vec![],
        };
        let specs = [LayerSpec::conv(3, 2, 1, 1), block, LayerSpec::dense(3)];
        let residual = Lowering::new(&Network::new(Shape::new(1, 6, 6), &specs).unwrap());
        assert_eq!((residual.delta_slots, residual.tangent_slots, residual.fans_out), (3, 3, true));
        // The outputs' gradient is the first buffer: the caller writes it before anything runs.
        assert_eq!(residual.delta_slot[residual.output], 0);
    }
}
