use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use thiserror::Error;

use super::layer::{AvgPoolGeometry, ConvGeometry, LayerSpec, PoolGeometry, Shape, Smooth};

/// Errors in describing or building a network.
#[derive(Debug, Error, PartialEq)]
pub enum NetworkError {
    #[error("the network has no layers")]
    Empty,
    #[error("layer {layer} ({kind}): `{field}` must be at least 1")]
    ZeroField { layer: usize, kind: &'static str, field: &'static str },
    #[error(
        "layer {layer} ({kind}): a window of {window} with padding {padding} does not fit the input {input}"
    )]
    WindowTooLarge { layer: usize, kind: &'static str, window: usize, padding: usize, input: Shape },
    #[error("the network's input is {expected}, but the data's samples are {found}")]
    InputShape { expected: Shape, found: Shape },
    #[error("the network has {outputs} outputs, but the data has {classes} classes")]
    Outputs { outputs: usize, classes: usize },
    #[error("layer {layer} ({kind}): {what} would hold {needed} values, more than 2^31 - 1")]
    TooLarge { layer: usize, kind: &'static str, what: &'static str, needed: u128 },
    #[error("layer {layer} ({kind}): `{field}` is {value}, more than {MAX_FIELD}")]
    FieldTooLarge { layer: usize, kind: &'static str, field: &'static str, value: usize },
}

/// Every size of a network (the input's channels, height and width; a layer's kernel,
/// channels, stride, padding, pool window and units) is at most this, so that no product of
/// them overflows before the checks on their totals.
pub const MAX_FIELD: usize = 1 << 16;

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
}

impl PlannedLayer {
    /// The layer's type as a network file names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conv { spec: LayerSpec::Dense { .. }, .. } => "dense",
            Self::Conv { .. } => "conv",
            Self::Relu { .. } => "relu",
            Self::Smooth { function, .. } => function.name(),
            Self::MaxPool(_) => "maxpool",
            Self::AvgPool(_) => "avgpool",
            Self::Flatten { .. } => "flatten",
        }
    }

    /// Its parameters (weights and biases).
    pub fn param_count(&self) -> usize {
        match self {
            Self::Conv { geometry, .. } => {
                geometry.bias_offset - geometry.weight_offset + geometry.output.channels
            }
            _ => 0,
        }
    }

    pub fn input(&self) -> Shape {
        match self {
            Self::Conv { geometry, .. } => geometry.input,
            Self::Relu { shape } | Self::Smooth { shape, .. } => *shape,
            Self::MaxPool(pool) => pool.input,
            Self::AvgPool(pool) => pool.input,
            Self::Flatten { input, .. } => *input,
        }
    }

    pub fn output(&self) -> Shape {
        match self {
            Self::Conv { geometry, .. } => geometry.output,
            Self::Relu { shape } | Self::Smooth { shape, .. } => *shape,
            Self::MaxPool(pool) => pool.output,
            Self::AvgPool(pool) => pool.output,
            Self::Flatten { output, .. } => *output,
        }
    }

    /// One line for people: what the layer is, its shapes and its parameter count.
    pub fn describe(&self) -> String {
        let shapes = format!("{} → {}", self.input(), self.output());
        match self {
            Self::Conv { spec: LayerSpec::Dense { units }, geometry } => {
                format!("dense {units:<16} {shapes}  ({} params)", geometry.params())
            }
            Self::Conv { geometry: g, .. } => {
                let kernel = format!(
                    "{}×{}·{} s{} p{}",
                    g.kernel_h, g.kernel_w, g.output.channels, g.stride, g.padding
                );
                format!("conv {kernel:<17} {shapes}  ({} params)", g.params())
            }
            Self::Relu { .. } => format!("relu {:16} {shapes}", ""),
            Self::Smooth { function, .. } => format!("{:<21} {shapes}", function.name()),
            Self::MaxPool(p) => format!("maxpool {}×{} s{}{:8} {shapes}", p.size, p.size, p.stride, ""),
            Self::AvgPool(p) => {
                let window = format!("{}×{} s{} p{}", p.kernel_h, p.kernel_w, p.stride, p.padding);
                format!("avgpool {window:<13} {shapes}")
            }
            Self::Flatten { .. } => format!("flatten {:13} {shapes}", ""),
        }
    }
}

/// A network for a given input shape: its layers, in order, and the layout of θ.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    input: Shape,
    specs: Vec<LayerSpec>,
    layers: Vec<PlannedLayer>,
    param_count: usize,
}

/// Indices on the device are u32 and WGSL arrays are indexed by i32-safe values.
const MAX_LEN: usize = i32::MAX as usize;

fn window_output(
    layer: usize,
    kind: &'static str,
    input: usize,
    window: usize,
    stride: usize,
    padding: usize,
    shape: Shape,
) -> Result<usize, NetworkError> {
    let padded = input + 2 * padding;
    if window > padded {
        return Err(NetworkError::WindowTooLarge { layer, kind, window, padding, input: shape });
    }
    Ok((padded - window) / stride + 1)
}

/// out · in · taps weights, None past [`MAX_LEN`].
fn weights(out: usize, input: usize, taps: usize) -> Option<usize> {
    out.checked_mul(input)?.checked_mul(taps).filter(|&w| w <= MAX_LEN)
}

impl Network {
    /// Resolves the shapes of `specs` applied to samples of shape `input`, checking each one.
    pub fn new(input: Shape, specs: &[LayerSpec]) -> Result<Self, NetworkError> {
        if specs.is_empty() {
            return Err(NetworkError::Empty);
        }
        let zero = |layer, kind, field| NetworkError::ZeroField { layer, kind, field };
        if input.is_empty() {
            return Err(zero(0, "input", "channels, height and width"));
        }
        let bounded = |layer, kind, fields: &[(usize, &'static str)]| match fields
            .iter()
            .find(|(value, _)| *value > MAX_FIELD)
        {
            Some(&(value, field)) => Err(NetworkError::FieldTooLarge { layer, kind, field, value }),
            None => Ok(()),
        };
        bounded(
            0,
            "input",
            &[(input.channels, "channels"), (input.height, "height"), (input.width, "width")],
        )?;
        let wide = |values: &[usize]| values.iter().map(|&v| v as u128).product::<u128>();
        let too_large = |layer, kind, what, needed| NetworkError::TooLarge { layer, kind, what, needed };
        let len = |layer, kind, shape: Shape| {
            let needed = wide(&[shape.channels, shape.height, shape.width]);
            shape.checked_len().filter(|&l| l <= MAX_LEN).ok_or(too_large(layer, kind, "its output", needed))
        };
        len(0, "input", input)?;
        let mut shape = input;
        let mut offset = 0;
        let mut layers = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let layer = index + 1;
            let planned = match *spec {
                LayerSpec::Conv { kernel, channels, stride, padding } => {
                    for (value, field) in [(kernel, "kernel"), (channels, "channels"), (stride, "stride")] {
                        if value == 0 {
                            return Err(zero(layer, "conv", field));
                        }
                    }
                    bounded(
                        layer,
                        "conv",
                        &[
                            (kernel, "kernel"),
                            (channels, "channels"),
                            (stride, "stride"),
                            (padding, "padding"),
                        ],
                    )?;
                    let out_h = window_output(layer, "conv", shape.height, kernel, stride, padding, shape)?;
                    let out_w = window_output(layer, "conv", shape.width, kernel, stride, padding, shape)?;
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
                                too_large(layer, "conv", "its weights", needed)
                            })?,
                    };
                    PlannedLayer::Conv { spec: spec.clone(), geometry }
                }
                LayerSpec::Dense { units } => {
                    if units == 0 {
                        return Err(zero(layer, "dense", "units"));
                    }
                    bounded(layer, "dense", &[(units, "units")])?;
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
                                too_large(layer, "dense", "its weights", needed)
                            })?,
                    };
                    PlannedLayer::Conv { spec: spec.clone(), geometry }
                }
                LayerSpec::MaxPool { size, stride } => {
                    let stride = stride.unwrap_or(size);
                    if size == 0 {
                        return Err(zero(layer, "maxpool", "size"));
                    }
                    if stride == 0 {
                        return Err(zero(layer, "maxpool", "stride"));
                    }
                    bounded(layer, "maxpool", &[(size, "size"), (stride, "stride")])?;
                    let out_h = window_output(layer, "maxpool", shape.height, size, stride, 0, shape)?;
                    let out_w = window_output(layer, "maxpool", shape.width, size, stride, 0, shape)?;
                    PlannedLayer::MaxPool(PoolGeometry {
                        input: shape,
                        output: Shape::new(shape.channels, out_h, out_w),
                        size,
                        stride,
                    })
                }
                LayerSpec::AvgPool { size, stride, padding } => {
                    let stride = stride.unwrap_or(size);
                    if size == 0 {
                        return Err(zero(layer, "avgpool", "size"));
                    }
                    if stride == 0 {
                        return Err(zero(layer, "avgpool", "stride"));
                    }
                    bounded(layer, "avgpool", &[(size, "size"), (stride, "stride"), (padding, "padding")])?;
                    let out_h = window_output(layer, "avgpool", shape.height, size, stride, padding, shape)?;
                    let out_w = window_output(layer, "avgpool", shape.width, size, stride, padding, shape)?;
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
                LayerSpec::Relu => PlannedLayer::Relu { shape },
                LayerSpec::Tanh => PlannedLayer::Smooth { function: Smooth::Tanh, shape },
                LayerSpec::Sigmoid => PlannedLayer::Smooth { function: Smooth::Sigmoid, shape },
                LayerSpec::Flatten => {
                    PlannedLayer::Flatten { input: shape, output: Shape::new(shape.len(), 1, 1) }
                }
            };
            shape = planned.output();
            len(layer, planned.kind(), shape)?;
            if let PlannedLayer::Conv { geometry, .. } = &planned {
                let end = geometry.bias_offset.checked_add(geometry.output.channels);
                offset = end.filter(|&end| end <= MAX_LEN).ok_or_else(|| {
                    let needed = geometry.bias_offset as u128 + geometry.output.channels as u128;
                    too_large(layer, planned.kind(), "θ up to it", needed)
                })?;
            }
            layers.push(planned);
        }
        Ok(Self { input, specs: specs.to_vec(), layers, param_count: offset })
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

    pub fn layers(&self) -> &[PlannedLayer] {
        &self.layers
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

    /// He initialisation: weights N(0, 2/fan_in), biases 0, from a seed (ChaCha8, so the same
    /// seed gives the same θ on every platform).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut theta = vec![0.0f32; self.param_count];
        for g in self.conv_geometries() {
            let normal = Normal::new(0.0, (2.0 / g.fan_in() as f64).sqrt()).expect("finite std");
            for w in &mut theta[g.weight_offset..g.bias_offset] {
                *w = normal.sample(&mut rng) as f32;
            }
        }
        theta
    }

    /// A table of the layers, one per line.
    pub fn describe(&self) -> String {
        let mut text = format!("input {}\n", self.input);
        for (i, layer) in self.layers.iter().enumerate() {
            text.push_str(&format!("{:>3}  {}\n", i + 1, layer.describe()));
        }
        text.push_str(&format!("parameters: {}", self.param_count));
        text
    }
}

fn conv(kernel: usize, channels: usize) -> [LayerSpec; 2] {
    [LayerSpec::Conv { kernel, channels, stride: 1, padding: kernel / 2 }, LayerSpec::Relu]
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
    specs.push(LayerSpec::Dense { units: classes });
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
    specs.push(LayerSpec::Dense { units: classes });
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
    specs.push(LayerSpec::Dense { units: classes });
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
    specs.push(LayerSpec::Dense { units: classes });
    Network::new(input, &specs)
}

/// The built-in networks' names.
pub const BUILTIN: [&str; 4] = ["cnn4", "cnn7", "cnn4-small", "vgg11"];

/// A built-in network by name (see [`BUILTIN`]); None for other names.
pub fn builtin(name: &str, input: Shape, classes: usize) -> Option<Result<Network, NetworkError>> {
    match name {
        "cnn4" => Some(cnn4(input, classes)),
        "cnn7" => Some(cnn7(input, classes)),
        "cnn4-small" => Some(cnn4_small(input, classes)),
        "vgg11" => Some(vgg11(input, classes)),
        _ => None,
    }
}
