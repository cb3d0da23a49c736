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
/// serialised in the same form).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LayerSpec {
    /// Square kernel, same stride and zero padding in both directions, with bias.
    Conv {
        kernel: usize,
        channels: usize,
        stride: usize,
        padding: usize,
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
    /// Fully connected, with bias, on the whole input (flattened in c, h, w order).
    Dense {
        units: usize,
    },
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
    /// Offset of the bias, \[out\], in θ (right after W).
    pub bias_offset: usize,
}

impl ConvGeometry {
    pub fn weights(&self) -> usize {
        self.output.channels * self.input.channels * self.kernel_h * self.kernel_w
    }

    /// Weights and biases.
    pub fn params(&self) -> usize {
        self.weights() + self.output.channels
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
