use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use thiserror::Error;

use super::layer::{
    AvgPoolGeometry, ConvGeometry, LayerSpec, PoolGeometry, Shape, Smooth, SubsampleGeometry,
};

/// Where a layer sits in its network: its place in the top-level list and, inside residual
/// blocks, in the block's body or shortcut. Indices are 0-based; messages show them 1-based,
/// tensor names ([`LayerPath::name`]) 0-based, as PyTorch names a module's children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerPath(Vec<(Branch, usize)>);

/// Which list of layers a step of a [`LayerPath`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    Top,
    Body,
    Shortcut,
}

impl LayerPath {
    /// The top-level layer at `index`.
    pub fn top(index: usize) -> Self {
        Self(vec![(Branch::Top, index)])
    }

    /// The layer at `index` of this residual block's `branch`.
    pub fn child(&self, branch: Branch, index: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push((branch, index));
        Self(steps)
    }

    /// How many residual blocks hold the layer.
    pub fn depth(&self) -> usize {
        self.0.len().saturating_sub(1)
    }

    /// The prefix of its tensors' names: `layers.3`, `layers.3.body.0`.
    pub fn name(&self) -> String {
        let mut name = String::new();
        for (branch, index) in &self.0 {
            let list = match branch {
                Branch::Top => "layers",
                Branch::Body => ".body",
                Branch::Shortcut => ".shortcut",
            };
            name.push_str(&format!("{list}.{index}"));
        }
        name
    }
}

impl std::fmt::Display for LayerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("layer 0");
        }
        for (i, (branch, index)) in self.0.iter().enumerate() {
            let list = match branch {
                Branch::Top => "layer",
                Branch::Body => "body layer",
                Branch::Shortcut => "shortcut layer",
            };
            write!(f, "{}{list} {}", if i > 0 { ", " } else { "" }, index + 1)?;
        }
        Ok(())
    }
}

/// Errors in describing or building a network.
#[derive(Debug, Error, PartialEq)]
pub enum NetworkError {
    #[error("the network has no layers")]
    Empty,
    #[error("{layer} ({kind}): `{field}` must be at least 1")]
    ZeroField { layer: LayerPath, kind: &'static str, field: &'static str },
    #[error("{layer} ({kind}): a window of {window} with padding {padding} does not fit the input {input}")]
    WindowTooLarge { layer: LayerPath, kind: &'static str, window: usize, padding: usize, input: Shape },
    #[error("the network's input is {expected}, but the data's samples are {found}")]
    InputShape { expected: Shape, found: Shape },
    #[error("the network has {outputs} outputs, but the data has {classes} classes")]
    Outputs { outputs: usize, classes: usize },
    #[error("{layer} ({kind}): {what} would hold {needed} values, more than 2^31 - 1")]
    TooLarge { layer: LayerPath, kind: &'static str, what: &'static str, needed: u128 },
    #[error("{layer} ({kind}): `{field}` is {value}, more than {MAX_FIELD}")]
    FieldTooLarge { layer: LayerPath, kind: &'static str, field: &'static str, value: usize },
    #[error("{layer} ({kind}): `gain` is {value}, expected a finite number, at least 0")]
    Gain { layer: LayerPath, kind: &'static str, value: f64 },
    #[error("{layer} (residual): the body has no layers; a block adds its body's output to its shortcut's")]
    EmptyBody { layer: LayerPath },
    #[error(
        "{layer} (residual): the body gives {body} but the shortcut gives {shortcut}; the two are \
         added, so they must match (a shortcut of `subsample` or a 1×1 `conv` changes the shape)"
    )]
    ResidualShapes { layer: LayerPath, body: Shape, shortcut: Shape },
    #[error("{layer} (subsample): `channels` is {channels}, fewer than the input's {input}")]
    SubsampleChannels { layer: LayerPath, input: usize, channels: usize },
    #[error("{layer} (affine): `{field}` holds {found} values, expected one per channel: {channels}")]
    AffineChannels { layer: LayerPath, field: &'static str, found: usize, channels: usize },
    #[error("{layer} (affine): `{field}` value {index} is {value}, not a finite number")]
    AffineValue { layer: LayerPath, field: &'static str, index: usize, value: f32 },
    #[error("{layer} (residual): blocks nest {depth} deep, more than {MAX_DEPTH}")]
    TooDeep { layer: LayerPath, depth: usize },
}

/// Every size of a network (the input's channels, height and width; a layer's kernel,
/// channels, stride, padding, pool window and units) is at most this, so that no product of
/// them overflows before the checks on their totals.
pub const MAX_FIELD: usize = 1 << 16;

/// Residual blocks nest at most this deep.
pub const MAX_DEPTH: usize = 16;

/// A layer with its shapes and parameter offsets resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedLayer {
    /// Convolutions and dense layers (a dense layer's kernel covers its whole input).
    Conv {
        spec: LayerSpec,
        geometry: ConvGeometry,
    },
    Relu {
        shape: Shape,
    },
    /// tanh or sigmoid.
    Smooth {
        function: Smooth,
        shape: Shape,
    },
    MaxPool(PoolGeometry),
    /// Average pooling, global pooling included.
    AvgPool(AvgPoolGeometry),
    Flatten {
        input: Shape,
        output: Shape,
    },
    /// The sum of a residual block's body and shortcut (its two sources, in that order).
    Add {
        shape: Shape,
    },
    /// x + θ\[offset\].
    Bias {
        shape: Shape,
        offset: usize,
    },
    /// θ\[offset\] · x.
    Scale {
        shape: Shape,
        offset: usize,
    },
    Subsample(SubsampleGeometry),
    /// y = scale\[c\] · x + shift\[c\], constants of the network.
    Affine {
        shape: Shape,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
}

impl PlannedLayer {
    /// The layer's type as a network file names it (a residual block's sum is `add`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conv { spec: LayerSpec::Dense { .. }, .. } => "dense",
            Self::Conv { .. } => "conv",
            Self::Relu { .. } => "relu",
            Self::Smooth { function, .. } => function.name(),
            Self::MaxPool(_) => "maxpool",
            Self::AvgPool(_) => "avgpool",
            Self::Flatten { .. } => "flatten",
            Self::Add { .. } => "add",
            Self::Bias { .. } => "bias",
            Self::Scale { .. } => "scale",
            Self::Subsample(_) => "subsample",
            Self::Affine { .. } => "affine",
        }
    }

    /// Its parameters' place in θ (empty for layers without).
    pub fn params(&self) -> std::ops::Range<usize> {
        match self {
            Self::Conv { geometry: g, .. } => g.weight_offset..g.weight_offset + g.params(),
            Self::Bias { offset, .. } | Self::Scale { offset, .. } => *offset..*offset + 1,
            _ => 0..0,
        }
    }

    /// Its parameters (weights and biases).
    pub fn param_count(&self) -> usize {
        self.params().len()
    }

    pub fn input(&self) -> Shape {
        match self {
            Self::Conv { geometry, .. } => geometry.input,
            Self::Relu { shape }
            | Self::Smooth { shape, .. }
            | Self::Add { shape }
            | Self::Bias { shape, .. }
            | Self::Scale { shape, .. }
            | Self::Affine { shape, .. } => *shape,
            Self::MaxPool(pool) => pool.input,
            Self::AvgPool(pool) => pool.input,
            Self::Flatten { input, .. } => *input,
            Self::Subsample(g) => g.input,
        }
    }

    pub fn output(&self) -> Shape {
        match self {
            Self::Conv { geometry, .. } => geometry.output,
            Self::Relu { shape }
            | Self::Smooth { shape, .. }
            | Self::Add { shape }
            | Self::Bias { shape, .. }
            | Self::Scale { shape, .. }
            | Self::Affine { shape, .. } => *shape,
            Self::MaxPool(pool) => pool.output,
            Self::AvgPool(pool) => pool.output,
            Self::Flatten { output, .. } => *output,
            Self::Subsample(g) => g.output,
        }
    }

    /// One line for people: what the layer is, its shapes and its parameter count.
    pub fn describe(&self) -> String {
        let shapes = format!("{} → {}", self.input(), self.output());
        match self {
            Self::Conv { spec: LayerSpec::Dense { units, .. }, geometry } => {
                format!("dense {units:<16} {shapes}  ({} params)", geometry.params())
            }
            Self::Conv { geometry: g, .. } => {
                let kernel = format!(
                    "{}×{}·{} s{} p{}",
                    g.kernel_h, g.kernel_w, g.output.channels, g.stride, g.padding
                );
                let bias = if g.bias { "" } else { ", no bias" };
                format!("conv {kernel:<17} {shapes}  ({} params{bias})", g.params())
            }
            Self::Relu { .. } => format!("relu {:16} {shapes}", ""),
            Self::Smooth { function, .. } => format!("{:<21} {shapes}", function.name()),
            Self::MaxPool(p) => format!("maxpool {}×{} s{}{:8} {shapes}", p.size, p.size, p.stride, ""),
            Self::AvgPool(p) => {
                let window = format!("{}×{} s{} p{}", p.kernel_h, p.kernel_w, p.stride, p.padding);
                format!("avgpool {window:<13} {shapes}")
            }
            Self::Flatten { .. } => format!("flatten {:13} {shapes}", ""),
            Self::Add { .. } => format!("add (body + shortcut) {shapes}"),
            Self::Bias { .. } => format!("bias {:16} {shapes}  (1 param)", ""),
            Self::Scale { .. } => format!("scale {:15} {shapes}  (1 param)", ""),
            Self::Subsample(g) => format!("subsample s{:<11} {shapes}", g.stride),
            Self::Affine { .. } => format!("affine (frozen) {:5} {shapes}", ""),
        }
    }
}

/// A network for a given input shape: a graph of layers in an order where every layer comes
/// after the layers it reads (a chain, or residual blocks unfolded), and the layout of θ: each
/// layer's parameters in that order.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    input: Shape,
    specs: Vec<LayerSpec>,
    layers: Vec<PlannedLayer>,
    /// The nodes each layer reads: node 0 is the input, node i + 1 layer i's output.
    sources: Vec<Vec<usize>>,
    paths: Vec<LayerPath>,
    param_count: usize,
}

/// Indices on the device are u32 and WGSL arrays are indexed by i32-safe values.
const MAX_LEN: usize = i32::MAX as usize;

fn window_output(
    layer: &LayerPath,
    kind: &'static str,
    input: usize,
    window: usize,
    stride: usize,
    padding: usize,
    shape: Shape,
) -> Result<usize, NetworkError> {
    let padded = input + 2 * padding;
    if window > padded {
        return Err(NetworkError::WindowTooLarge {
            layer: layer.clone(),
            kind,
            window,
            padding,
            input: shape,
        });
    }
    Ok((padded - window) / stride + 1)
}

/// out · in · taps weights, None past [`MAX_LEN`].
fn weights(out: usize, input: usize, taps: usize) -> Option<usize> {
    out.checked_mul(input)?.checked_mul(taps).filter(|&w| w <= MAX_LEN)
}

fn wide(values: &[usize]) -> u128 {
    values.iter().map(|&v| v as u128).product()
}

fn zero(layer: &LayerPath, kind: &'static str, field: &'static str) -> NetworkError {
    NetworkError::ZeroField { layer: layer.clone(), kind, field }
}

fn bounded(
    layer: &LayerPath,
    kind: &'static str,
    fields: &[(usize, &'static str)],
) -> Result<(), NetworkError> {
    match fields.iter().find(|(value, _)| *value > MAX_FIELD) {
        Some(&(value, field)) => {
            Err(NetworkError::FieldTooLarge { layer: layer.clone(), kind, field, value })
        }
        None => Ok(()),
    }
}

fn too_large(layer: &LayerPath, kind: &'static str, what: &'static str, needed: u128) -> NetworkError {
    NetworkError::TooLarge { layer: layer.clone(), kind, what, needed }
}

fn checked_gain(layer: &LayerPath, kind: &'static str, gain: f64) -> Result<(), NetworkError> {
    if gain.is_finite() && gain >= 0.0 {
        Ok(())
    } else {
        Err(NetworkError::Gain { layer: layer.clone(), kind, value: gain })
    }
}

/// The graph as it is built: layers in order, what each reads, where θ has reached.
struct Planner {
    input: Shape,
    layers: Vec<PlannedLayer>,
    sources: Vec<Vec<usize>>,
    paths: Vec<LayerPath>,
    offset: usize,
}

impl Planner {
    fn shape(&self, node: usize) -> Shape {
        match node {
            0 => self.input,
            _ => self.layers[node - 1].output(),
        }
    }

    /// Adds `layer`, reading `sources`; returns its node.
    fn push(
        &mut self,
        layer: PlannedLayer,
        sources: Vec<usize>,
        path: LayerPath,
    ) -> Result<usize, NetworkError> {
        let shape = layer.output();
        let needed = wide(&[shape.channels, shape.height, shape.width]);
        if shape.checked_len().is_none_or(|l| l > MAX_LEN) {
            return Err(too_large(&path, layer.kind(), "its output", needed));
        }
        let params = layer.params();
        if !params.is_empty() {
            if params.end > MAX_LEN {
                return Err(too_large(&path, layer.kind(), "θ up to it", params.end as u128));
            }
            self.offset = params.end;
        }
        self.layers.push(layer);
        self.sources.push(sources);
        self.paths.push(path);
        Ok(self.layers.len())
    }

    /// Plans `specs` in order from `node`; returns the last one's node (`node` for no specs).
    fn chain(
        &mut self,
        specs: &[LayerSpec],
        mut node: usize,
        parent: &LayerPath,
        branch: Branch,
    ) -> Result<usize, NetworkError> {
        for (index, spec) in specs.iter().enumerate() {
            let path = match branch {
                Branch::Top => LayerPath::top(index),
                _ => parent.child(branch, index),
            };
            node = self.layer(spec, node, path)?;
        }
        Ok(node)
    }

    fn layer(&mut self, spec: &LayerSpec, node: usize, path: LayerPath) -> Result<usize, NetworkError> {
        let shape = self.shape(node);
        let offset = self.offset;
        let planned = match spec {
            LayerSpec::Residual { body, shortcut } => {
                if path.depth() >= MAX_DEPTH {
                    return Err(NetworkError::TooDeep { layer: path.clone(), depth: path.depth() + 1 });
                }
                if body.is_empty() {
                    return Err(NetworkError::EmptyBody { layer: path });
                }
                let body_end = self.chain(body, node, &path, Branch::Body)?;
                let shortcut_end = self.chain(shortcut, node, &path, Branch::Shortcut)?;
                let (body_shape, shortcut_shape) = (self.shape(body_end), self.shape(shortcut_end));
                if body_shape != shortcut_shape {
                    return Err(NetworkError::ResidualShapes {
                        layer: path,
                        body: body_shape,
                        shortcut: shortcut_shape,
                    });
                }
                return self.push(
                    PlannedLayer::Add { shape: body_shape },
                    vec![body_end, shortcut_end],
                    path,
                );
            }
            &LayerSpec::Conv { kernel, channels, stride, padding, bias, gain } => {
                for (value, field) in [(kernel, "kernel"), (channels, "channels"), (stride, "stride")] {
                    if value == 0 {
                        return Err(zero(&path, "conv", field));
                    }
                }
                bounded(
                    &path,
                    "conv",
                    &[(kernel, "kernel"), (channels, "channels"), (stride, "stride"), (padding, "padding")],
                )?;
                checked_gain(&path, "conv", gain)?;
                let out_h = window_output(&path, "conv", shape.height, kernel, stride, padding, shape)?;
                let out_w = window_output(&path, "conv", shape.width, kernel, stride, padding, shape)?;
                let geometry = ConvGeometry {
                    input: shape,
                    output: Shape::new(channels, out_h, out_w),
                    kernel_h: kernel,
                    kernel_w: kernel,
                    stride,
                    padding,
                    weight_offset: offset,
                    bias_offset: weights(channels, shape.channels, kernel * kernel)
                        .and_then(|w| w.checked_add(offset))
                        .ok_or_else(|| {
                            let needed = wide(&[channels, shape.channels, kernel, kernel]);
                            too_large(&path, "conv", "its weights", needed)
                        })?,
                    bias,
                };
                PlannedLayer::Conv { spec: spec.clone(), geometry }
            }
            &LayerSpec::Dense { units, gain } => {
                if units == 0 {
                    return Err(zero(&path, "dense", "units"));
                }
                bounded(&path, "dense", &[(units, "units")])?;
                checked_gain(&path, "dense", gain)?;
                let geometry = ConvGeometry {
                    input: shape,
                    output: Shape::new(units, 1, 1),
                    kernel_h: shape.height,
                    kernel_w: shape.width,
                    stride: 1,
                    padding: 0,
                    weight_offset: offset,
                    bias_offset: weights(units, shape.channels, shape.height * shape.width)
                        .and_then(|w| w.checked_add(offset))
                        .ok_or_else(|| {
                            let needed = wide(&[units, shape.channels, shape.height, shape.width]);
                            too_large(&path, "dense", "its weights", needed)
                        })?,
                    bias: true,
                };
                PlannedLayer::Conv { spec: spec.clone(), geometry }
            }
            &LayerSpec::MaxPool { size, stride } => {
                let stride = stride.unwrap_or(size);
                if size == 0 {
                    return Err(zero(&path, "maxpool", "size"));
                }
                if stride == 0 {
                    return Err(zero(&path, "maxpool", "stride"));
                }
                bounded(&path, "maxpool", &[(size, "size"), (stride, "stride")])?;
                let out_h = window_output(&path, "maxpool", shape.height, size, stride, 0, shape)?;
                let out_w = window_output(&path, "maxpool", shape.width, size, stride, 0, shape)?;
                PlannedLayer::MaxPool(PoolGeometry {
                    input: shape,
                    output: Shape::new(shape.channels, out_h, out_w),
                    size,
                    stride,
                })
            }
            &LayerSpec::AvgPool { size, stride, padding } => {
                let stride = stride.unwrap_or(size);
                if size == 0 {
                    return Err(zero(&path, "avgpool", "size"));
                }
                if stride == 0 {
                    return Err(zero(&path, "avgpool", "stride"));
                }
                bounded(&path, "avgpool", &[(size, "size"), (stride, "stride"), (padding, "padding")])?;
                let out_h = window_output(&path, "avgpool", shape.height, size, stride, padding, shape)?;
                let out_w = window_output(&path, "avgpool", shape.width, size, stride, padding, shape)?;
                PlannedLayer::AvgPool(AvgPoolGeometry {
                    input: shape,
                    output: Shape::new(shape.channels, out_h, out_w),
                    kernel_h: size,
                    kernel_w: size,
                    stride,
                    padding,
                })
            }
            LayerSpec::GlobalAvgPool => PlannedLayer::AvgPool(AvgPoolGeometry {
                input: shape,
                output: Shape::new(shape.channels, 1, 1),
                kernel_h: shape.height,
                kernel_w: shape.width,
                stride: 1,
                padding: 0,
            }),
            &LayerSpec::Subsample { stride, channels } => {
                if stride == 0 {
                    return Err(zero(&path, "subsample", "stride"));
                }
                bounded(&path, "subsample", &[(stride, "stride"), (channels, "channels")])?;
                if channels < shape.channels {
                    return Err(NetworkError::SubsampleChannels {
                        layer: path,
                        input: shape.channels,
                        channels,
                    });
                }
                let output =
                    Shape::new(channels, (shape.height - 1) / stride + 1, (shape.width - 1) / stride + 1);
                PlannedLayer::Subsample(SubsampleGeometry { input: shape, output, stride })
            }
            LayerSpec::Affine { scale, shift } => {
                for (field, values) in [("scale", scale), ("shift", shift)] {
                    if values.len() != shape.channels {
                        return Err(NetworkError::AffineChannels {
                            layer: path,
                            field,
                            found: values.len(),
                            channels: shape.channels,
                        });
                    }
                    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                        return Err(NetworkError::AffineValue { layer: path, field, index, value });
                    }
                }
                PlannedLayer::Affine { shape, scale: scale.clone(), shift: shift.clone() }
            }
            LayerSpec::Relu => PlannedLayer::Relu { shape },
            LayerSpec::Tanh => PlannedLayer::Smooth { function: Smooth::Tanh, shape },
            LayerSpec::Sigmoid => PlannedLayer::Smooth { function: Smooth::Sigmoid, shape },
            LayerSpec::Bias => PlannedLayer::Bias { shape, offset },
            LayerSpec::Scale => PlannedLayer::Scale { shape, offset },
            LayerSpec::Flatten => {
                PlannedLayer::Flatten { input: shape, output: Shape::new(shape.len(), 1, 1) }
            }
        };
        self.push(planned, vec![node], path)
    }
}

impl Network {
    /// Resolves the shapes of `specs` applied to samples of shape `input`, checking each one.
    pub fn new(input: Shape, specs: &[LayerSpec]) -> Result<Self, NetworkError> {
        if specs.is_empty() {
            return Err(NetworkError::Empty);
        }
        let at_input = LayerPath::default();
        if input.is_empty() {
            return Err(zero(&at_input, "input", "channels, height and width"));
        }
        bounded(
            &at_input,
            "input",
            &[(input.channels, "channels"), (input.height, "height"), (input.width, "width")],
        )?;
        if input.checked_len().is_none_or(|l| l > MAX_LEN) {
            let needed = wide(&[input.channels, input.height, input.width]);
            return Err(too_large(&at_input, "input", "its output", needed));
        }
        let mut planner =
            Planner { input, layers: Vec::new(), sources: Vec::new(), paths: Vec::new(), offset: 0 };
        planner.chain(specs, 0, &at_input, Branch::Top)?;
        let Planner { layers, sources, paths, offset, .. } = planner;
        Ok(Self { input, specs: specs.to_vec(), layers, sources, paths, param_count: offset })
    }

    pub fn input(&self) -> Shape {
        self.input
    }

    /// Number of outputs (classes): the values of the last layer's output, in (c, h, w) order.
    pub fn outputs(&self) -> usize {
        self.layers.last().expect("a network has layers").output().len()
    }

    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }

    /// The layers in an order where each comes after those it reads.
    pub fn layers(&self) -> &[PlannedLayer] {
        &self.layers
    }

    /// The nodes layer `index` reads: node 0 is the network's input, node i + 1 the output of
    /// layer i. One node, or for an `add` the body's and the shortcut's.
    pub fn sources(&self, index: usize) -> &[usize] {
        &self.sources[index]
    }

    /// Where layer `index` sits in the network's description.
    pub fn path(&self, index: usize) -> &LayerPath {
        &self.paths[index]
    }

    /// n, the length of θ.
    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Checks that data of this sample shape and class count fits the network.
    pub fn check_data(&self, sample: Shape, classes: usize) -> Result<(), NetworkError> {
        if sample != self.input {
            return Err(NetworkError::InputShape { expected: self.input, found: sample });
        }
        if classes != self.outputs() {
            return Err(NetworkError::Outputs { outputs: self.outputs(), classes });
        }
        Ok(())
    }

    /// Multiply-adds of the convolutions and dense layers in a forward pass of one sample.
    pub fn forward_macs_per_sample(&self) -> u64 {
        self.conv_geometries().map(|g| g.macs_per_sample()).sum()
    }

    pub fn conv_geometries(&self) -> impl Iterator<Item = &ConvGeometry> {
        self.layers.iter().filter_map(|layer| match layer {
            PlannedLayer::Conv { geometry, .. } => Some(geometry),
            _ => None,
        })
    }

    /// The starting θ, from a seed (ChaCha8, so the same seed gives the same θ on every
    /// platform): convolution and dense weights N(0, gain² · 2/fan_in) (He's, times the layer's
    /// gain; a gain of 0 starts them at zero), their biases and scalar biases 0, scalar scales 1.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut theta = vec![0.0f32; self.param_count];
        for layer in &self.layers {
            match layer {
                PlannedLayer::Conv { spec, geometry: g } => {
                    let gain = match spec {
                        LayerSpec::Conv { gain, .. } | LayerSpec::Dense { gain, .. } => *gain,
                        _ => 1.0,
                    };
                    if gain == 0.0 {
                        continue;
                    }
                    let std = gain * (2.0 / g.fan_in() as f64).sqrt();
                    let normal = Normal::new(0.0, std).expect("finite std");
                    for w in &mut theta[g.weight_offset..g.bias_offset] {
                        *w = normal.sample(&mut rng) as f32;
                    }
                }
                PlannedLayer::Scale { offset, .. } => theta[*offset] = 1.0,
                _ => {}
            }
        }
        theta
    }

    /// A table of the layers, one per line; a residual block's layers say where they sit.
    pub fn describe(&self) -> String {
        let mut text = format!("input {}\n", self.input);
        for (i, layer) in self.layers.iter().enumerate() {
            let path = &self.paths[i];
            let place = match path.depth() {
                0 => String::new(),
                _ => format!("{}: ", path.name().trim_start_matches("layers.")),
            };
            text.push_str(&format!("{:>3}  {place}{}\n", i + 1, layer.describe()));
        }
        text.push_str(&format!("parameters: {}", self.param_count));
        text
    }
}

fn conv(kernel: usize, channels: usize) -> [LayerSpec; 2] {
    [LayerSpec::conv(kernel, channels, 1, kernel / 2), LayerSpec::Relu]
}

fn pool() -> LayerSpec {
    LayerSpec::MaxPool { size: 2, stride: Some(2) }
}

/// The paper's 3-conv network: conv 5×5·32, pool, conv 3×3·64, pool, conv 3×3·64, pool,
/// dense; ReLU after every conv, 'same' padding, 2×2 max-pool with stride 2.
pub fn cnn4(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    let mut specs = Vec::new();
    specs.extend(conv(5, 32));
    specs.push(pool());
    specs.extend(conv(3, 64));
    specs.push(pool());
    specs.extend(conv(3, 64));
    specs.push(pool());
    specs.push(LayerSpec::dense(classes));
    Network::new(input, &specs)
}

/// simpleNN's 6-conv network: conv 5×5·32, conv 3×3·32, pool, conv 3×3·64, conv 3×3·64, pool,
/// conv 3×3·64, conv 3×3·128, pool, dense.
pub fn cnn7(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    let mut specs = Vec::new();
    specs.extend(conv(5, 32));
    specs.extend(conv(3, 32));
    specs.push(pool());
    specs.extend(conv(3, 64));
    specs.extend(conv(3, 64));
    specs.push(pool());
    specs.extend(conv(3, 64));
    specs.extend(conv(3, 128));
    specs.push(pool());
    specs.push(LayerSpec::dense(classes));
    Network::new(input, &specs)
}

/// cnn4's layout at a quarter of its width (8, 16, 16 channels): the main job's network,
/// which the software GPU trains in minutes.
pub fn cnn4_small(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    let mut specs = Vec::new();
    specs.extend(conv(5, 8));
    specs.push(pool());
    specs.extend(conv(3, 16));
    specs.push(pool());
    specs.extend(conv(3, 16));
    specs.push(pool());
    specs.push(LayerSpec::dense(classes));
    Network::new(input, &specs)
}

/// VGG-11 (Simonyan and Zisserman's configuration A) without batch normalisation, as
/// simpleNN's Python code and CIFAR-10's PyTorch examples build it: 3×3 'same' convolutions of
/// 64, 128, 256, 256, 512, 512, 512 and 512 channels with ReLU, a 2×2 max-pool after the 1st,
/// 2nd, 4th, 6th and 8th, then one dense layer (512 inputs at 32×32). Five pools halve the
/// input five times: it needs samples of at least 32×32.
pub fn vgg11(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    let mut specs = Vec::new();
    for (channels, pooled) in [
        (64, true),
        (128, true),
        (256, false),
        (256, true),
        (512, false),
        (512, true),
        (512, false),
        (512, true),
    ] {
        specs.extend(conv(3, channels));
        if pooled {
            specs.push(pool());
        }
    }
    specs.push(LayerSpec::dense(classes));
    Network::new(input, &specs)
}

/// He et al.'s CIFAR ResNet of `blocks` basic blocks per stage, without batch normalisation
/// and initialised as Fixup (Zhang, Dauphin and Ma 2019) builds it: a 3×3·16 convolution,
/// three stages of 16, 32 and 64 channels (the 2nd and 3rd halve the plane in their first
/// block, whose shortcut subsamples and appends zero channels), global average pooling and a
/// dense layer. Each block is
/// `relu(scale · conv(relu(conv(x + b1a) + b1b) + b2a) + b2b + x)` with scalar biases and
/// multiplier; a downsampling block adds b1a before the block, so its shortcut reads it too.
/// Convolutions have no biases. Fixup's initialisation: each block's first convolution He's
/// by fan-out times L^(−1/2) for L blocks, its last one and the dense layer's weights zero.
pub fn fixup_resnet(input: Shape, classes: usize, blocks: usize) -> Result<Network, NetworkError> {
    let without_bias = |channels, stride, gain| LayerSpec::Conv {
        kernel: 3,
        channels,
        stride,
        padding: 1,
        bias: false,
        gain,
    };
    let depth = (3 * blocks) as f64;
    let mut specs = vec![without_bias(16, 1, 1.0), LayerSpec::Bias, LayerSpec::Relu];
    let mut channels = 16;
    for (planes, stride) in [(16, 1), (32, 2), (64, 2)] {
        for block in 0..blocks {
            let stride = if block == 0 { stride } else { 1 };
            // Fixup draws the first convolution by its fan-out: He's by fan-in, times
            // sqrt(fan-in / fan-out).
            let gain = (channels as f64 / planes as f64).sqrt() / depth.sqrt();
            let mut body = vec![
                without_bias(planes, stride, gain),
                LayerSpec::Bias,
                LayerSpec::Relu,
                LayerSpec::Bias,
                without_bias(planes, 1, 0.0),
                LayerSpec::Scale,
                LayerSpec::Bias,
            ];
            let shortcut = if stride == 1 && channels == planes {
                body.insert(0, LayerSpec::Bias);
                vec![]
            } else {
                specs.push(LayerSpec::Bias);
                vec![LayerSpec::Subsample { stride, channels: planes }]
            };
            specs.push(LayerSpec::Residual { body, shortcut });
            specs.push(LayerSpec::Relu);
            channels = planes;
        }
    }
    specs.extend([LayerSpec::GlobalAvgPool, LayerSpec::Bias, LayerSpec::Dense { units: classes, gain: 0.0 }]);
    Network::new(input, &specs)
}

/// Fixup ResNet-20: three blocks per stage ([`fixup_resnet`]), 0.27 M parameters on CIFAR-10.
pub fn resnet20(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    fixup_resnet(input, classes, 3)
}

/// Fixup ResNet-8: one block per stage ([`fixup_resnet`]), 78 k parameters on CIFAR-10.
pub fn resnet8(input: Shape, classes: usize) -> Result<Network, NetworkError> {
    fixup_resnet(input, classes, 1)
}

/// The built-in networks' names.
pub const BUILTIN: [&str; 6] = ["cnn4", "cnn7", "cnn4-small", "vgg11", "resnet8", "resnet20"];

/// A built-in network by name (see [`BUILTIN`]); None for other names.
pub fn builtin(name: &str, input: Shape, classes: usize) -> Option<Result<Network, NetworkError>> {
    match name {
        "cnn4" => Some(cnn4(input, classes)),
        "cnn7" => Some(cnn7(input, classes)),
        "cnn4-small" => Some(cnn4_small(input, classes)),
        "vgg11" => Some(vgg11(input, classes)),
        "resnet8" => Some(resnet8(input, classes)),
        "resnet20" => Some(resnet20(input, classes)),
        _ => None,
    }
}
