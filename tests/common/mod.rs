//! Shared by the integration tests: one device per test binary, seeded random data, and the
//! one tolerance rule used everywhere.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::OnceLock;

use newton_wgpu::gpu::Gpu;
use newton_wgpu::{ConvStrategy, Execution};
use rand::{Rng, SeedableRng};

/// The device for this test binary. A missing adapter fails the test (CI has lavapipe).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new().unwrap_or_else(|e| panic!("tests need a GPU adapter: {e}")))
}

/// Two devices of the test adapter, each its own: one that sums over workgroups by a tree, and
/// one as the library opens it, by subgroups exactly when the adapter has them (both checked).
pub fn tree_and_default_gpus() -> (Gpu, Gpu) {
    use newton_wgpu::gpu::{GpuOptions, Reduction};
    let options = GpuOptions::from_env().unwrap();
    let tree = Gpu::with_options(&GpuOptions { subgroups: false, ..options.clone() }).unwrap();
    let default = Gpu::with_options(&options).unwrap();
    assert_eq!(tree.reduction(), Reduction::Tree);
    let has_subgroups = default.adapter_features().contains(wgpu::Features::SUBGROUP);
    let want = if has_subgroups { Reduction::Subgroups } else { Reduction::Tree };
    assert_eq!(default.reduction(), want, "adapter {}", default.adapter().name);
    eprintln!("{}: workgroup sums by {}", default.adapter().name, default.reduction());
    (tree, default)
}

/// The device with the convolution kernels that suit it.
pub fn execution() -> Execution<'static> {
    Execution::new(gpu())
}

/// The device with every convolution pass by `kernel`.
pub fn execution_with(kernel: &str) -> Execution<'static> {
    execution().with_conv(ConvStrategy::Fixed(kernel.parse().unwrap()))
}

/// One test per convolution kernel, so that a failure names the kernel: for each
/// `fn name(execution: Execution<'static>)` given, the tests `name::windowed`, `name::windowed8`, `name::tiled`,
/// `name::tile4` and `name::direct{8,4,2,1}x4`. None is ever skipped: every adapter, the
/// software one included, runs them all. Each module also gets `TESTED`, the kernels it names,
/// which `every_convolution_kernel_is_tested` checks against `ConvKernel::ALL`.
#[macro_export]
macro_rules! conv_variants {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            $crate::conv_variants!(@kernels $test: windowed, windowed8, tiled, tile4, direct8x4, direct4x4, direct2x4, direct1x4);
        }
    )*};
    (@kernels $test:ident: $($kernel:ident),*) => {
        // Read by one test; the other modules carry it unread.
        #[allow(dead_code)]
        pub const TESTED: &[&str] = &[$(stringify!($kernel)),*];
        $(
            #[test]
            fn $kernel() {
                super::$test($crate::common::execution_with(stringify!($kernel)));
            }
        )*
    };
}

pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// The bundled MNIST sample with the first `train` training digits, both sets normalised by
/// the training mean (which is returned too).
pub fn bundled_mnist(train: usize) -> (newton_wgpu::data::DataSplit, newton_wgpu::data::Normalizer) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let mut split = newton_wgpu::data::load_dir(dir.as_ref()).expect("the bundled data loads");
    split.train = split.train.head(train);
    let normalizer = split.normalize();
    (split, normalizer)
}

/// `len` values uniform in [-1, 1).
pub fn random_vec(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

pub fn abs_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| (v as f64).abs()).collect()
}

/// Asserts |got_i − want_i| ≤ rtol · scale_i for every i, where scale_i is the sum of the
/// absolute values of the terms that make up want_i (so cancellation cannot hide an error,
/// and a tiny result is not held to an impossible relative bound).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], scale: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    assert_eq!(scale.len(), want.len(), "{what}: scale length differs");
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        let bound = rtol * scale[i] + f64::MIN_POSITIVE;
        assert!(
            err.is_finite() && err <= bound,
            "{what}[{i}]: got {} want {} (error {err:.3e} > {rtol:.0e} × {:.3e})",
            got[i],
            want[i],
            scale[i]
        );
    }
}

use ndarray::{Array2, Array4};
use newton_wgpu::nn::device::{Passes, Workspace};
use newton_wgpu::nn::{LayerSpec, Network, PlannedLayer};
use newton_wgpu::reference::{self, Trace};

/// What the GPU computed for one batch: outputs, parameter gradient Jᵀdy, input gradient.
pub struct GpuPass {
    pub outputs: Vec<f32>,
    pub grad: Vec<f32>,
    pub input_grad: Vec<f32>,
}

/// Runs the forward pass of `x` and back-propagates `dy` as `execution` says.
pub fn gpu_pass(execution: Execution, network: &Network, theta: &[f32], x: &[f32], dy: &[f32]) -> GpuPass {
    let gpu = execution.gpu;
    let batch = x.len() / network.input().len();
    let ws = Workspace::new(&execution, network, batch, Passes::Gradient).unwrap();
    let theta_buf = gpu.upload(theta, "θ").unwrap();
    let grad = gpu.zeros::<f32>(network.param_count(), "grad").unwrap();
    let input_grad = gpu.zeros::<f32>(x.len(), "input grad").unwrap();
    gpu.write(ws.inputs(), x).unwrap();
    let mut rec = gpu.recorder();
    ws.record_pack(&mut rec, &theta_buf).unwrap();
    ws.record_forward(&mut rec, &theta_buf, batch).unwrap();
    rec.submit().unwrap();
    let outputs = gpu.read_range(ws.network_outputs(), 0, batch * network.outputs()).unwrap();
    gpu.write(ws.output_grad(), dy).unwrap();
    let mut rec = gpu.recorder();
    ws.record_backward(&mut rec, &theta_buf, batch, &grad, Some(&input_grad)).unwrap();
    rec.submit().unwrap();
    GpuPass { outputs, grad: gpu.read(&grad).unwrap(), input_grad: gpu.read(&input_grad).unwrap() }
}

/// The reference's forward pass and back-propagation of the same batch, with the sums of
/// absolute terms of every result (for [`assert_close`]).
pub struct ReferencePass {
    pub outputs: Vec<f64>,
    pub outputs_scale: Vec<f64>,
    pub grad: Vec<f64>,
    pub grad_scale: Vec<f64>,
    pub input_grad: Vec<f64>,
    pub input_grad_scale: Vec<f64>,
}

pub fn reference_pass(network: &Network, theta: &[f32], x: &[f32], dy: &[f32]) -> ReferencePass {
    let theta64 = to_f64(theta);
    let theta_abs = abs_f64(theta);
    let trace = reference::forward(network, &theta64, reference::batch_of(network, x));
    let batch = x.len() / network.input().len();
    let dy64 = Array2::from_shape_vec((batch, network.outputs()), to_f64(dy)).unwrap();
    let (grad, input_grad) = reference::vjp(network, &theta64, &trace, dy64.view());
    // The same passes on sums of absolute terms, routed through the original masks and
    // arg-maxes: each layer's inputs carry the rounding of the layers below.
    let scales = forward_scales(network, &theta_abs, &trace);
    let abs_trace = Trace { values: scales, argmax: trace.argmax.clone() };
    let (grad_scale, input_grad_scale) =
        reference::vjp(&bounding_network(network), &theta_abs, &abs_trace, dy64.mapv(f64::abs).view());
    ReferencePass {
        outputs: trace.outputs().into_iter().collect(),
        outputs_scale: abs_trace.values.last().unwrap().iter().copied().collect(),
        grad,
        grad_scale,
        input_grad: input_grad.into_iter().collect(),
        input_grad_scale: input_grad_scale.into_iter().collect(),
    }
}

/// Sums of absolute terms of every value of the forward pass: |W|·scale + |b| through each
/// linear layer, the original ReLU masks and pooling arg-maxes, for tanh and sigmoid the
/// input's scale plus the output's magnitude, and a residual block's sum of its branches'.
pub fn forward_scales(network: &Network, theta_abs: &[f64], trace: &Trace) -> Vec<Array4<f64>> {
    let mut scales = vec![trace.values[0].mapv(f64::abs)];
    for (i, layer) in network.layers().iter().enumerate() {
        let sources = network.sources(i);
        let scale = &scales[sources[0]];
        let next = match layer {
            PlannedLayer::Conv { geometry, .. } => reference::conv_forward(geometry, theta_abs, scale),
            PlannedLayer::Relu { .. } => {
                let mut s = scale.clone();
                s.zip_mut_with(&trace.values[i + 1], |v, &y| {
                    if y <= 0.0 {
                        *v = 0.0
                    }
                });
                s
            }
            // |f′| ≤ 1 for tanh and sigmoid: the input's error at most passes on, plus the
            // rounding of f's own value.
            PlannedLayer::Smooth { .. } => scale + &trace.values[i + 1].mapv(f64::abs),
            // A mean of absolute terms bounds the mean's.
            PlannedLayer::AvgPool(g) => reference::avgpool_forward(g, scale),
            PlannedLayer::MaxPool(g) => {
                let index = trace.argmax[i].as_ref().unwrap();
                let mut s = Array4::zeros(index.raw_dim());
                for ((n, c, p, q), &at) in index.indexed_iter() {
                    s[[n, c, p, q]] = scale[[n, c, at / g.input.width, at % g.input.width]];
                }
                s
            }
            PlannedLayer::Flatten { .. } => scale.to_shape(trace.values[i + 1].raw_dim()).unwrap().to_owned(),
            PlannedLayer::Add { .. } => scale + &scales[sources[1]],
            PlannedLayer::Bias { offset, .. } => scale + theta_abs[*offset],
            PlannedLayer::Scale { offset, .. } => scale * theta_abs[*offset],
            PlannedLayer::Subsample(g) => reference::subsample_forward(g, scale),
            PlannedLayer::Affine { scale: a, shift: b, .. } => {
                let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
                reference::affine(scale, &abs(a), Some(&abs(b)))
            }
        };
        scales.push(next);
    }
    scales
}

/// The network that propagates sums of absolute terms backward and in forward mode through a
/// trace of them ([`forward_scales`]): `network` with tanh and sigmoid as ReLUs, whose mask on
/// those positive scales passes every term at slope 1, a bound on |tanh′| and |sigmoid′|, and
/// affine maps by the magnitudes of their constants.
pub fn bounding_network(network: &Network) -> Network {
    fn bounding(specs: &[LayerSpec]) -> Vec<LayerSpec> {
        specs
            .iter()
            .map(|spec| match spec {
                LayerSpec::Tanh | LayerSpec::Sigmoid => LayerSpec::Relu,
                // Its constants are the network's, not θ's: their magnitudes bound the terms.
                LayerSpec::Affine { scale, shift } => LayerSpec::Affine {
                    scale: scale.iter().map(|v| v.abs()).collect(),
                    shift: shift.iter().map(|v| v.abs()).collect(),
                },
                LayerSpec::Residual { body, shortcut } => {
                    LayerSpec::Residual { body: bounding(body), shortcut: bounding(shortcut) }
                }
                other => other.clone(),
            })
            .collect()
    }
    Network::new(network.input(), &bounding(network.specs())).expect("the same shapes")
}

/// A small network with every kind of layer the training tests need: a strided convolution,
/// ReLU, max-pooling and a dense layer of 10 outputs.
pub fn small_network(shape: newton_wgpu::nn::Shape) -> Network {
    Network::new(
        shape,
        &[
            newton_wgpu::nn::LayerSpec::conv(5, 4, 2, 2),
            newton_wgpu::nn::LayerSpec::Relu,
            newton_wgpu::nn::LayerSpec::MaxPool { size: 2, stride: None },
            newton_wgpu::nn::LayerSpec::dense(10),
        ],
    )
    .unwrap()
}

/// A convolution without bias, 'same' padding for odd kernels.
pub fn conv_without_bias(kernel: usize, channels: usize, stride: usize) -> LayerSpec {
    LayerSpec::Conv { kernel, channels, stride, padding: kernel / 2, bias: false, gain: 1.0 }
}

/// A small residual network with every operation residual networks add, in the ways they
/// combine: a frozen affine map (an imported batch normalisation), a Fixup block on the identity, a downsampling block whose shortcut subsamples and
/// pads channels (reading the scalar bias before the block, as its body does), a block whose
/// shortcut is a 1×1 convolution, a block nested in another's body, a ReLU folded into a
/// max-pool after a block, and global pooling. Weights start as He's (no zero gains), so that
/// every product moves every parameter.
pub fn residual_network(input: newton_wgpu::nn::Shape, classes: usize) -> Network {
    let fixup_body = vec![
        LayerSpec::Bias,
        conv_without_bias(3, 4, 1),
        LayerSpec::Bias,
        LayerSpec::Relu,
        LayerSpec::Bias,
        conv_without_bias(3, 4, 1),
        LayerSpec::Scale,
        LayerSpec::Bias,
    ];
    let specs = [
        conv_without_bias(3, 4, 1),
        LayerSpec::Affine { scale: vec![0.5, -1.5, 2.0, 1.0], shift: vec![0.1, -0.2, 0.0, 0.3] },
        LayerSpec::Bias,
        LayerSpec::Relu,
        LayerSpec::Residual { body: fixup_body, shortcut: vec![] },
        LayerSpec::Relu,
        LayerSpec::Bias,
        LayerSpec::Residual {
            body: vec![
                conv_without_bias(3, 6, 2),
                LayerSpec::Bias,
                LayerSpec::Tanh,
                conv_without_bias(3, 6, 1),
                LayerSpec::Scale,
            ],
            shortcut: vec![LayerSpec::Subsample { stride: 2, channels: 6 }],
        },
        LayerSpec::Relu,
        LayerSpec::Residual {
            body: vec![LayerSpec::conv(3, 5, 1, 1)],
            shortcut: vec![conv_without_bias(1, 5, 1)],
        },
        LayerSpec::Residual {
            body: vec![
                LayerSpec::Residual {
                    body: vec![LayerSpec::conv(3, 5, 1, 1), LayerSpec::Sigmoid],
                    shortcut: vec![],
                },
                LayerSpec::Scale,
            ],
            shortcut: vec![],
        },
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2, stride: None },
        LayerSpec::GlobalAvgPool,
        LayerSpec::Bias,
        LayerSpec::dense(classes),
    ];
    Network::new(input, &specs).unwrap()
}
