use serde::{Deserialize, Serialize};

/// A sample's shape: channels, height, width. A flat vector of d values is (d, 1, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        Self { channels, height, width }
    }

    /// Values per sample.
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// c·h·w, None when it overflows.
    pub fn checked_len(&self) -> Option<usize> {
        self.channels.checked_mul(self.height)?.checked_mul(self.width)
    }

    /// Whether any dimension is zero (asked without multiplying, so it holds for any shape).
    pub const fn is_empty(&self) -> bool {
        self.channels == 0 || self.height == 0 || self.width == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// One layer as a user describes it (in code or in a network file, see [`super::parse_network`];
/// serialised in the same form). A residual block nests two lists of layers; the planner
/// unfolds it into the network's graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LayerSpec {
    /// Square kernel, same stride and zero padding in both directions; with a bias per output
    /// channel unless `bias` is false. Weights start N(0, gain² · 2 / fan-in) (He's, scaled by
    /// `gain`; 0 starts them at zero).
    Conv {
        kernel: usize,
        channels: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        gain: f64,
    },
    /// Square window; the stride defaults to the window size.
    #[serde(rename = "maxpool")]
    MaxPool {
        size: usize,
        stride: Option<usize>,
    },
    /// The mean of each square window, zero padding counted (PyTorch's AvgPool2d); the stride
    /// defaults to the window size.
    #[serde(rename = "avgpool")]
    AvgPool {
        size: usize,
        stride: Option<usize>,
        padding: usize,
    },
    /// The mean of each channel's plane: (c, h, w) → (c, 1, 1).
    #[serde(rename = "global_avgpool")]
    GlobalAvgPool,
    Relu,
    /// tanh, elementwise.
    Tanh,
    /// The logistic function 1/(1 + e^−x), elementwise.
    Sigmoid,
    /// Flattens (c, h, w) into (c·h·w, 1, 1); data in memory is unchanged.
    Flatten,
    /// Fully connected, with bias, on the whole input (flattened in c, h, w order); weights
    /// start as a convolution's, with `gain`.
    Dense {
        units: usize,
        gain: f64,
    },
    /// body(x) + shortcut(x); an empty shortcut is the identity. Both must give the same shape.
    Residual {
        body: Vec<LayerSpec>,
        shortcut: Vec<LayerSpec>,
    },
    /// One learnt scalar added to every value (Fixup's biases); starts at 0.
    Bias,
    /// One learnt scalar that multiplies every value (Fixup's multiplier, SkipInit); starts at 1.
    Scale,
    /// Every `stride`-th row and column, then zero channels appended up to `channels`: the
    /// parameter-free shortcut of a block that halves the plane and widens the channels
    /// (He et al.'s option A, as Fixup's CIFAR ResNets build it).
    Subsample {
        stride: usize,
        channels: usize,
    },
    /// y = scale\[c\] · x + shift\[c\] per channel c, frozen (not trained, not in θ): batch
    /// normalisation as it runs in evaluation mode, for models trained elsewhere
    /// (scale = γ/√(var + ε), shift = β − mean · scale).
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
}

impl LayerSpec {
    /// A convolution with bias and He's initialisation.
    pub fn conv(kernel: usize, channels: usize, stride: usize, padding: usize) -> Self {
        Self::Conv { kernel, channels, stride, padding, bias: true, gain: 1.0 }
    }

    /// A dense layer with He's initialisation.
    pub fn dense(units: usize) -> Self {
        Self::Dense { units, gain: 1.0 }
    }
}

/// The smooth activations: each one's derivative is a function of its output y (tanh: 1 − y²;
/// sigmoid: y(1 − y)), so the backward pass and forward mode read the stored output, as ReLU's do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smooth {
    Tanh,
    Sigmoid,
}

impl Smooth {
    /// The name a network file gives it.
    pub fn name(self) -> &'static str {
        match self {
            Smooth::Tanh => "tanh",
            Smooth::Sigmoid => "sigmoid",
        }
    }
}

/// Where an average pooling reads and writes: a kernel_h × kernel_w window (the whole plane
/// for global pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolGeometry {
    pub input: Shape,
    pub output: Shape,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
}

/// Where a parameter-free shortcut reads and writes: input channels past the output's are
/// impossible (the planner checks), output channels past the input's are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubsampleGeometry {
    pub input: Shape,
    pub output: Shape,
    pub stride: usize,
}

/// Where a convolution (or dense layer) reads, writes and keeps its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub input: Shape,
    pub output: Shape,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    /// Offset of W, [out, in, kh, kw], in θ.
    pub weight_offset: usize,
    /// Offset of the bias, \[out\], in θ (right after W); with no bias, where W ends.
    pub bias_offset: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl ConvGeometry {
    pub fn weights(&self) -> usize {
        self.output.channels * self.input.channels * self.kernel_h * self.kernel_w
    }

    /// Biases: one per output channel, or none.
    pub fn biases(&self) -> usize {
        if self.bias {
            self.output.channels
        } else {
            0
        }
    }

    /// Weights and biases.
    pub fn params(&self) -> usize {
        self.weights() + self.biases()
    }

    /// Fan-in of one output, for He initialisation.
    pub fn fan_in(&self) -> usize {
        self.input.channels * self.kernel_h * self.kernel_w
    }

    /// Multiply-adds of the forward pass for one sample (padding taps included).
    pub fn macs_per_sample(&self) -> u64 {
        (self.output.len() * self.fan_in()) as u64
    }
}

/// Where a max-pool reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub input: Shape,
    pub output: Shape,
    pub size: usize,
    pub stride: usize,
}
