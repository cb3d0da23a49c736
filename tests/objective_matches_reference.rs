//! f(θ) and ∇f(θ) of the GPU equal the reference; the reference gradient equals central
//! finite differences; chunking and repetition do not change the result.

mod common;

use common::{assert_close, execution, gpu, reference_pass, rng};
use newton_wgpu::data::Dataset;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4, LayerSpec, Network, Shape};
use newton_wgpu::objective::Objective;
use newton_wgpu::reference;
use newton_wgpu::{Execution, Problem};

const C: f64 = 0.01;

fn mnist_head(n: usize) -> Dataset {
    common::bundled_mnist(n).0.train
}

/// The sum of absolute terms of each gradient entry: Σ_i |terms of J_iᵀ ∂ξ_i/∂z|/l + |θ|/(C·l).
fn gradient_scale(network: &Network, loss: Loss, theta: &[f32], data: &Dataset) -> Vec<f64> {
    let l = data.len() as f64;
    let theta64 = common::to_f64(theta);
    let trace = reference::forward(network, &theta64, reference::batch_of(network, &data.images));
    let (_, dz) = reference::loss_value_and_grad(loss, trace.outputs().view(), &data.labels);
    let dz: Vec<f32> = dz.iter().map(|&v| (v / l) as f32).collect();
    let pass = reference_pass(network, theta, &data.images, &dz);
    pass.grad_scale.iter().zip(theta).map(|(s, t)| s + (*t as f64).abs() / (C * l)).collect()
}

/// GPU f and ∇f over `data` with chunks of `bsize`.
fn gpu_value_and_grad(
    execution: Execution,
    network: &Network,
    loss: Loss,
    theta: &[f32],
    data: &Dataset,
    bsize: usize,
) -> (f64, Vec<f32>) {
    let gpu = execution.gpu;
    let theta_buf = gpu.upload(theta, "θ").unwrap();
    let grad = gpu.zeros::<f32>(theta.len(), "∇f").unwrap();
    let problem = Problem::new(network.clone(), loss, C).unwrap();
    let mut objective = Objective::new(&execution.with_bsize(bsize), &problem).unwrap();
    let eval = objective.value_and_grad(data, &theta_buf, &grad).unwrap();
    let grad = gpu.read(&grad).unwrap();
    let norm = grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt();
    assert!(
        (eval.grad_norm - norm).abs() <= 1e-5 * norm,
        "‖∇f‖ {} vs {norm} from the read-back",
        eval.grad_norm
    );
    (eval.f, grad)
}

conv_variants!(cnn4_value_and_gradient_match_reference_for_both_losses);

fn cnn4_value_and_gradient_match_reference_for_both_losses(execution: Execution) {
    let data = mnist_head(6);
    let network = cnn4(data.shape, data.classes).unwrap();
    let theta = network.init_params(7);
    let theta64 = common::to_f64(&theta);
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let (f, grad) = gpu_value_and_grad(execution, &network, loss, &theta, &data, 1024);
        let (want_f, want_grad) = reference::objective(&network, loss, C, &theta64, &data);
        // Every term of f is non-negative, so f is its own sum of absolute terms.
        assert!((f - want_f).abs() <= 1e-5 * want_f, "{loss}: f = {f}, reference {want_f}");
        // Up to ~5,000 f32 terms per sum through ten layers; errors measured ~1.4e-6.
        let scale = gradient_scale(&network, loss, &theta, &data);
        assert_close(&format!("{loss}: ∇f"), &grad, &want_grad, &scale, 1e-5);
    }
}

#[test]
fn chunked_evaluation_equals_one_chunk() {
    let data = mnist_head(10);
    let network = Network::new(
        data.shape,
        &[
            LayerSpec::conv(5, 6, 2, 2),
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: 2, stride: None },
            LayerSpec::dense(10),
        ],
    )
    .unwrap();
    let theta = network.init_params(3);
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let (f_one, grad_one) = gpu_value_and_grad(execution(), &network, loss, &theta, &data, 10);
        let (f_chunked, grad_chunked) = gpu_value_and_grad(execution(), &network, loss, &theta, &data, 3);
        assert!(
            (f_one - f_chunked).abs() <= 1e-6 * f_one,
            "{loss}: f {f_one} in one chunk, {f_chunked} in four"
        );
        let scale = gradient_scale(&network, loss, &theta, &data);
        let one: Vec<f64> = common::to_f64(&grad_one);
        assert_close(&format!("{loss}: chunked ∇f"), &grad_chunked, &one, &scale, 1e-5);
    }
}

#[test]
fn evaluation_repeats_bit_for_bit_and_value_agrees_with_value_and_grad() {
    let gpu = gpu();
    let data = mnist_head(5);
    let network = cnn4(data.shape, data.classes).unwrap();
    let theta = gpu.upload(&network.init_params(1), "θ").unwrap();
    let grad = gpu.zeros::<f32>(network.param_count(), "∇f").unwrap();
    let problem = Problem::new(network, Loss::CrossEntropy, C).unwrap();
    let mut objective = Objective::new(&execution().with_bsize(2), &problem).unwrap();
    let first = objective.value_and_grad(&data, &theta, &grad).unwrap();
    let first_grad = gpu.read(&grad).unwrap();
    let second = objective.value_and_grad(&data, &theta, &grad).unwrap();
    assert_eq!(first, second);
    let second_grad = gpu.read(&grad).unwrap();
    assert!(first_grad.iter().zip(&second_grad).all(|(a, b)| a.to_bits() == b.to_bits()));
    let value_only = objective.value(&data, &theta).unwrap();
    assert_eq!(value_only.f, first.f);
    assert_eq!(value_only.grad_norm, 0.0);
}

#[test]
fn reference_gradient_equals_central_finite_differences() {
    let shape = Shape::new(2, 6, 5);
    let conv = |kernel, channels, padding| LayerSpec::conv(kernel, channels, 1, padding);
    let relus = [conv(3, 3, 1), LayerSpec::Relu, LayerSpec::MaxPool { size: 2, stride: None }, conv(2, 4, 0)];
    let smooth =
        [conv(3, 3, 1), LayerSpec::Tanh, LayerSpec::MaxPool { size: 2, stride: None }, conv(2, 4, 0)];
    let averaged = [
        conv(3, 3, 1),
        LayerSpec::Tanh,
        LayerSpec::AvgPool { size: 3, stride: Some(2), padding: 1 },
        conv(2, 4, 0),
    ];
    for (first, last) in
        [(&relus, LayerSpec::Relu), (&smooth, LayerSpec::Sigmoid), (&averaged, LayerSpec::GlobalAvgPool)]
    {
        let specs: Vec<LayerSpec> =
            first.iter().cloned().chain([last, LayerSpec::Flatten, LayerSpec::dense(3)]).collect();
        gradient_equals_finite_differences(&Network::new(shape, &specs).unwrap(), 1.0);
    }
    // Weights uniform in [-1, 1) through five residual blocks make outputs of hundreds; a
    // quarter as large keeps them near 1, as training does.
    gradient_equals_finite_differences(&common::residual_network(shape, 3), 0.25);
}

/// Central differences of the reference's f against its ∇f, at weights uniform in
/// [-theta_range, theta_range).
fn gradient_equals_finite_differences(network: &Network, theta_range: f64) {
    let shape = network.input();
    let mut rng = rng(11);
    let images = common::random_vec(&mut rng, 4 * shape.len());
    let data = Dataset::new(shape, 3, images, vec![0, 2, 1, 2], "synthetic".as_ref()).unwrap();
    let theta: Vec<f64> =
        common::random_vec(&mut rng, network.param_count()).iter().map(|&t| t as f64 * theta_range).collect();
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let (f, grad) = reference::objective(network, loss, C, &theta, &data);
        let largest = grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        let h = 1e-6;
        for i in 0..theta.len() {
            let mut plus = theta.clone();
            plus[i] += h;
            let mut minus = theta.clone();
            minus[i] -= h;
            let fd = (reference::objective(network, loss, C, &plus, &data).0
                - reference::objective(network, loss, C, &minus, &data).0)
                / (2.0 * h);
            // f64 central differences: truncation O(h²) stays below 1e-6 of the entry (or of
            // 1e-3 of the largest entry, for entries near zero); rounding adds a few ulps of
            // f over h (f holds θᵀθ/(2Cl), hundreds for a thousand weights).
            let bound = 1e-6 * grad[i].abs().max(1e-3 * largest) + 4.0 * f64::EPSILON * f.abs() / h;
            assert!(
                (fd - grad[i]).abs() <= bound,
                "{loss}: ∂f/∂θ[{i}] = {} but finite differences give {fd}",
                grad[i]
            );
        }
    }
}

/// Fixup's ResNet-8 as it starts (zero last convolutions and dense layer) and after weights
/// have moved, on digits in chunks: f and ∇f as the reference computes them.
#[test]
fn resnet8_value_and_gradient_match_reference() {
    let data = mnist_head(12);
    let network = newton_wgpu::nn::resnet8(data.shape, data.classes).unwrap();
    let fixup = network.init_params(3);
    let mut moved = fixup.clone();
    let mut rng = rng(5);
    for (t, r) in moved.iter_mut().zip(common::random_vec(&mut rng, network.param_count())) {
        *t += 0.05 * r;
    }
    for theta in [fixup, moved] {
        let theta64 = common::to_f64(&theta);
        for loss in [Loss::SquaredError, Loss::CrossEntropy] {
            let (f, grad) = gpu_value_and_grad(execution(), &network, loss, &theta, &data, 5);
            let (want_f, want_grad) = reference::objective(&network, loss, C, &theta64, &data);
            assert!((f - want_f).abs() <= 1e-5 * want_f, "{loss}: f = {f}, reference {want_f}");
            let scale = gradient_scale(&network, loss, &theta, &data);
            assert_close(&format!("resnet8 {loss}: ∇f"), &grad, &want_grad, &scale, 1e-5);
        }
    }
}
