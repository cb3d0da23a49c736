//! Each GPU layer, forward and backward, equals the CPU reference on random inputs,
//! including odd shapes.

mod common;

use common::{assert_close, execution, gpu_pass, random_vec, reference_pass, rng};
use newton_wgpu::nn::{LayerSpec, Network, Shape};
use newton_wgpu::Execution;

/// Sums here have at most a few thousand terms; f32 rounding stays far below this bound
/// relative to the sum of absolute terms.
const RTOL: f64 = 1e-5;

/// Builds `specs` on `input`, runs a random batch through GPU and reference, and compares
/// outputs, the parameter gradient and the input gradient.
fn check(execution: Execution, case: &str, input: Shape, specs: &[LayerSpec], batch: usize, seed: u64) {
    let network = Network::new(input, specs).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut rng = rng(seed);
    let theta = random_vec(&mut rng, network.param_count());
    let x = random_vec(&mut rng, batch * input.len());
    let dy = random_vec(&mut rng, batch * network.outputs());
    let want = reference_pass(&network, &theta, &x, &dy);
    let got = gpu_pass(execution, &network, &theta, &x, &dy);
    assert_close(&format!("{case}: outputs"), &got.outputs, &want.outputs, &want.outputs_scale, RTOL);
    assert_close(&format!("{case}: ∂/∂θ"), &got.grad, &want.grad, &want.grad_scale, RTOL);
    assert_close(&format!("{case}: ∂/∂x"), &got.input_grad, &want.input_grad, &want.input_grad_scale, RTOL);
}

conv_variants!(
    conv_matches_reference_on_odd_shapes,
    dense_matches_reference,
    relu_and_flatten_match_reference,
    smooth_activations_match_reference,
    average_pooling_matches_reference,
    relu_then_maxpool_matches_reference,
    every_layer_kind_in_one_network_matches_reference,
    residual_networks_match_reference,
);

#[test]
fn every_convolution_kernel_is_tested() {
    let mut tested = conv_matches_reference_on_odd_shapes::TESTED.to_vec();
    let mut all: Vec<String> = newton_wgpu::ConvKernel::ALL.iter().map(|k| k.to_string()).collect();
    tested.sort_unstable();
    all.sort_unstable();
    assert_eq!(tested, all, "conv_variants! must name every ConvKernel");
}

fn conv(kernel: usize, channels: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::conv(kernel, channels, stride, padding)
}

fn conv_matches_reference_on_odd_shapes(execution: Execution) {
    let cases = [
        ("1×1 image, kernel 1, batch 1", Shape::new(1, 1, 1), conv(1, 3, 1, 0), 1),
        ("3×5 image, 3 channels in, 5 out", Shape::new(3, 3, 5), conv(3, 5, 1, 1), 2),
        ("stride 2, padding 2", Shape::new(2, 7, 6), conv(3, 6, 2, 2), 3),
        ("kernel 1, 5 channels in", Shape::new(5, 4, 4), conv(1, 4, 1, 0), 2),
        ("kernel 5, stride 3, padding 3", Shape::new(1, 9, 9), conv(5, 7, 3, 3), 1),
        ("kernel wider than the image", Shape::new(6, 5, 3), conv(5, 2, 1, 1), 2),
        ("cnn4's first layer on 28×28", Shape::new(1, 28, 28), conv(5, 32, 1, 2), 2),
        ("9 channels in, 13 out, 6×11", Shape::new(9, 6, 11), conv(3, 13, 1, 1), 3),
        // Rows wider than 8 taps are read 4 at a time, padded with zero taps.
        ("kernel 9 (rows read in steps of 4)", Shape::new(2, 11, 12), conv(9, 5, 1, 4), 2),
        ("kernel 9, stride 2", Shape::new(2, 11, 12), conv(9, 3, 2, 3), 2),
    ];
    for (i, (case, input, layer, batch)) in cases.into_iter().enumerate() {
        check(execution, case, input, &[layer], batch, 100 + i as u64);
    }
}

fn dense_matches_reference(execution: Execution) {
    let cases = [
        ("on a 3×3×5 input", Shape::new(3, 3, 5), 7, 2),
        ("on a single value", Shape::new(1, 1, 1), 3, 1),
        ("to one output", Shape::new(10, 1, 1), 1, 5),
        ("cnn4's last layer", Shape::new(64, 3, 3), 10, 4),
        ("on an 11-wide input (padded rows)", Shape::new(2, 3, 11), 5, 3),
    ];
    for (i, (case, input, units, batch)) in cases.into_iter().enumerate() {
        check(execution, case, input, &[LayerSpec::dense(units)], batch, 200 + i as u64);
    }
}

fn relu_and_flatten_match_reference(execution: Execution) {
    check(execution, "relu", Shape::new(3, 3, 5), &[LayerSpec::Relu], 2, 300);
    check(
        execution,
        "flatten then dense",
        Shape::new(2, 3, 5),
        &[LayerSpec::Flatten, LayerSpec::dense(4)],
        2,
        301,
    );
    check(execution, "flatten alone", Shape::new(2, 3, 5), &[LayerSpec::Flatten], 3, 302);
}

/// tanh and sigmoid, alone and between layers with parameters (inputs of a few units, where
/// both bend).
fn smooth_activations_match_reference(execution: Execution) {
    check(execution, "tanh", Shape::new(3, 3, 5), &[LayerSpec::Tanh], 2, 310);
    check(execution, "sigmoid", Shape::new(3, 3, 5), &[LayerSpec::Sigmoid], 2, 311);
    let specs =
        [conv(3, 4, 1, 1), LayerSpec::Tanh, conv(3, 3, 2, 1), LayerSpec::Sigmoid, LayerSpec::dense(3)];
    check(execution, "conv, tanh, conv, sigmoid, dense", Shape::new(2, 6, 5), &specs, 3, 312);
}

/// Average pooling on odd shapes (windows that do not divide, overlapping, padded) and global
/// pooling, alone and between layers with parameters.
fn average_pooling_matches_reference(execution: Execution) {
    let avg = |size, stride, padding| LayerSpec::AvgPool { size, stride, padding };
    check(execution, "2×2 avgpool on 5×5", Shape::new(2, 5, 5), &[avg(2, None, 0)], 2, 320);
    check(execution, "3×3 stride 1 (overlapping)", Shape::new(3, 4, 6), &[avg(3, Some(1), 0)], 2, 321);
    check(execution, "3×3 stride 2 padded 1", Shape::new(2, 7, 6), &[avg(3, Some(2), 1)], 3, 322);
    check(execution, "global on 5×7", Shape::new(3, 5, 7), &[LayerSpec::GlobalAvgPool], 2, 323);
    let specs = [
        conv(3, 4, 1, 1),
        LayerSpec::Relu,
        avg(2, None, 0),
        conv(3, 5, 1, 1),
        LayerSpec::GlobalAvgPool,
        LayerSpec::dense(3),
    ];
    check(execution, "conv, relu, avgpool, conv, global avgpool, dense", Shape::new(2, 6, 5), &specs, 3, 324);
}

/// The operations of residual networks alone (a convolution without bias, scalar bias and
/// scale, the subsampling shortcut, the frozen affine map) and in blocks: the test residual network, a block at the
/// network's input (whose gradient the input then gathers from both branches), a block whose
/// body is only a flatten (the sum of a value with itself), and the built-in ResNet-8 with
/// random weights.
fn residual_networks_match_reference(execution: Execution) {
    let input = Shape::new(3, 7, 9);
    check(execution, "conv without bias", input, &[common::conv_without_bias(3, 4, 2)], 2, 330);
    check(execution, "scalar bias", input, &[LayerSpec::Bias], 2, 331);
    check(execution, "scalar scale", input, &[LayerSpec::Scale], 2, 332);
    let subsample = |stride, channels| LayerSpec::Subsample { stride, channels };
    check(execution, "subsample 2, pad to 5", input, &[subsample(2, 5)], 2, 333);
    check(execution, "subsample 3, no padding", input, &[subsample(3, 3)], 2, 334);
    let affine = LayerSpec::Affine { scale: vec![2.0, -0.5, 0.25], shift: vec![-1.0, 0.5, 3.0] };
    check(execution, "affine", input, &[affine], 2, 339);
    let network = common::residual_network(input, 4);
    check(execution, "residual network", input, network.specs(), 3, 335);
    let at_input = [
        LayerSpec::Residual { body: vec![LayerSpec::conv(3, 3, 1, 1), LayerSpec::Relu], shortcut: vec![] },
        LayerSpec::Scale,
        LayerSpec::dense(3),
    ];
    check(execution, "block at the input", input, &at_input, 2, 336);
    let doubled = [
        LayerSpec::Residual { body: vec![LayerSpec::Flatten], shortcut: vec![LayerSpec::Flatten] },
        LayerSpec::dense(2),
    ];
    check(execution, "block of flattens (x + x)", input, &doubled, 2, 337);
    let resnet8 = newton_wgpu::nn::resnet8(Shape::new(3, 8, 8), 3).unwrap();
    check(execution, "resnet8 on 8×8", Shape::new(3, 8, 8), resnet8.specs(), 2, 338);
}

#[test]
fn maxpool_matches_reference_on_odd_windows() {
    let cases = [
        ("2×2 on 5×5 (does not divide)", Shape::new(2, 5, 5), 2, None, 2),
        ("3×3 stride 1 (overlapping) on 3×5", Shape::new(3, 3, 5), 3, Some(1), 2),
        ("1×1 on a 1×1 image", Shape::new(1, 1, 1), 1, None, 1),
        ("3×3 stride 2 on 7×6", Shape::new(5, 7, 6), 3, Some(2), 3),
    ];
    for (i, (case, input, size, stride, batch)) in cases.into_iter().enumerate() {
        check(execution(), case, input, &[LayerSpec::MaxPool { size, stride }], batch, 400 + i as u64);
    }
}

/// A ReLU followed by a max-pool runs as one pass (the pool applies the ReLU and its mask).
fn relu_then_maxpool_matches_reference(execution: Execution) {
    let relu_pool = |size, stride| [LayerSpec::Relu, LayerSpec::MaxPool { size, stride }];
    // Most windows of a random input hold a positive value; these hold some without.
    check(execution, "relu, 2×2 pool, as the first layers", Shape::new(3, 6, 6), &relu_pool(2, None), 3, 600);
    check(execution, "relu, overlapping 3×3 pool", Shape::new(2, 5, 7), &relu_pool(3, Some(1)), 2, 601);
    let specs =
        [conv(3, 4, 1, 1), LayerSpec::Relu, LayerSpec::MaxPool { size: 2, stride: None }, LayerSpec::Relu];
    check(execution, "conv, relu, pool, relu", Shape::new(2, 6, 5), &specs, 2, 602);
}

fn every_layer_kind_in_one_network_matches_reference(execution: Execution) {
    let specs = [
        conv(3, 5, 1, 1),
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2, stride: None },
        conv(3, 6, 2, 2),
        LayerSpec::Relu,
        LayerSpec::Flatten,
        LayerSpec::dense(3),
    ];
    check(execution, "mixed network, batch 1", Shape::new(3, 7, 9), &specs, 1, 500);
    check(execution, "mixed network, batch 4", Shape::new(3, 7, 9), &specs, 4, 501);
}

/// The weight gradient in groups of every size the tuner may pick (including groups that do not
/// divide the batch, and more groups than samples) equals a direct CPU sum. The larger cases
/// would pass lavapipe's limit of 65,535 loop iterations per invocation in groups of 64 (and
/// the 64×64 one in groups of 16) if groups were not bounded by it: the driver then silently
/// skipped the rest of the sum.
#[test]
fn weight_gradient_matches_reference_in_every_group_size() {
    use newton_wgpu::kernels::conv::{backward_params, PARTIAL_VALUES};
    use newton_wgpu::ConvPlan;

    let gpu = common::gpu();
    for (case, input, layer, batch) in [
        ("5×5 pad 2, batch 7", Shape::new(2, 9, 8), conv(5, 6, 1, 2), 7),
        ("3×3 stride 2, batch 5", Shape::new(3, 7, 7), conv(3, 5, 2, 1), 5),
        ("cnn4-small's first layer, batch 300", Shape::new(1, 28, 28), conv(5, 8, 1, 2), 300),
        ("64×64 image, batch 20", Shape::new(1, 64, 64), conv(3, 2, 1, 1), 20),
    ] {
        let network = Network::new(input, &[layer]).unwrap();
        let g = *network.conv_geometries().next().unwrap();
        let mut rng = rng(300);
        let x = random_vec(&mut rng, batch * g.input.len());
        let dy = random_vec(&mut rng, batch * g.output.len());
        let (mut want, mut scale) = (vec![0.0f64; g.params()], vec![0.0f64; g.params()]);
        for n in 0..batch {
            for o in 0..g.output.channels {
                for (p, q) in (0..g.output.height).flat_map(|p| (0..g.output.width).map(move |q| (p, q))) {
                    let d =
                        dy[((n * g.output.channels + o) * g.output.height + p) * g.output.width + q] as f64;
                    want[g.weights() + o] += d;
                    scale[g.weights() + o] += d.abs();
                    for c in 0..g.input.channels {
                        for (i, j) in (0..g.kernel_h).flat_map(|i| (0..g.kernel_w).map(move |j| (i, j))) {
                            let (y, xx) = (
                                (p * g.stride + i) as isize - g.padding as isize,
                                (q * g.stride + j) as isize - g.padding as isize,
                            );
                            if y < 0 || xx < 0 || y >= g.input.height as isize || xx >= g.input.width as isize
                            {
                                continue;
                            }
                            let v = x[((n * g.input.channels + c) * g.input.height + y as usize)
                                * g.input.width
                                + xx as usize] as f64;
                            let k = ((o * g.input.channels + c) * g.kernel_h + i) * g.kernel_w + j;
                            want[k] += d * v;
                            scale[k] += (d * v).abs();
                        }
                    }
                }
            }
        }
        let (x_buf, dy_buf) = (gpu.upload(&x, "x").unwrap(), gpu.upload(&dy, "dy").unwrap());
        let partial = gpu.zeros::<f32>(PARTIAL_VALUES.min(batch * g.params()), "partial").unwrap();
        for samples in ConvPlan::WEIGHT_GROUPS {
            let grad = gpu.zeros::<f32>(g.params(), "grad").unwrap();
            let mut rec = gpu.recorder();
            backward_params(&mut rec, &g, batch, samples, &x_buf, &dy_buf, &partial, &grad).unwrap();
            rec.submit().unwrap();
            let got = gpu.read(&grad).unwrap();
            assert_close(&format!("{case}, groups of {samples}"), &got, &want, &scale, RTOL);
        }
    }
}
