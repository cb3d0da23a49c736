//! Curvature products on the GPU: Jv, Jᵀu, B·u and (G_S + λI)v against the reference, the
//! reference Jv and B·u against finite differences, and the identities they must satisfy.

mod common;

use common::{assert_close, execution, forward_scales, gpu, random_vec, rng, to_f64};
use ndarray::{Array2, ArrayView2};
use newton_wgpu::curvature::{pick_subsample, Subsample, SubsampleOptions};
use newton_wgpu::data::Dataset;
use newton_wgpu::gpu::GpuBuffer;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4, LayerSpec, Network, Shape};
use newton_wgpu::reference::{self, Trace};
use newton_wgpu::{Execution, Problem};

const C: f64 = 0.01;
const LAMBDA: f64 = 0.5;

fn mnist_head(n: usize) -> Dataset {
    common::bundled_mnist(n).0.train
}

fn mixed_network(input: Shape, classes: usize) -> Network {
    let specs = [
        LayerSpec::conv(3, 5, 1, 1),
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2, stride: None },
        LayerSpec::conv(3, 6, 2, 2),
        LayerSpec::Relu,
        LayerSpec::Flatten,
        LayerSpec::dense(classes),
    ];
    Network::new(input, &specs).unwrap()
}

/// tanh and sigmoid between the layers with parameters (and a pool after tanh, which does not
/// fold into it as a ReLU does), average and global average pooling.
fn smooth_network(input: Shape, classes: usize) -> Network {
    let specs = [
        LayerSpec::conv(3, 4, 1, 1),
        LayerSpec::Tanh,
        LayerSpec::MaxPool { size: 2, stride: None },
        LayerSpec::conv(3, 5, 2, 1),
        LayerSpec::Sigmoid,
        LayerSpec::AvgPool { size: 2, stride: Some(1), padding: 1 },
        LayerSpec::conv(1, 6, 1, 0),
        LayerSpec::GlobalAvgPool,
        LayerSpec::Flatten,
        LayerSpec::dense(classes),
    ];
    Network::new(input, &specs).unwrap()
}

fn synthetic(shape: Shape, classes: usize, len: usize, seed: u64) -> Dataset {
    let mut rng = rng(seed);
    let labels = (0..len).map(|i| (i * 7 % classes) as u32).collect();
    Dataset::new(shape, classes, random_vec(&mut rng, len * shape.len()), labels, "synthetic".as_ref())
        .unwrap()
}

fn options(size: usize, seed: u64) -> SubsampleOptions {
    SubsampleOptions { size, seed, memory_budget: None }
}

fn problem(network: &Network, loss: Loss) -> Problem {
    Problem::new(network.clone(), loss, C).unwrap()
}

fn images_of(data: &Dataset, indices: &[usize]) -> Vec<f32> {
    indices.iter().flat_map(|&i| data.images_of(i..i + 1).to_vec()).collect()
}

fn read(buffer: &GpuBuffer<f32>) -> Vec<f32> {
    gpu().read(buffer).unwrap()
}

/// B applied to sums of absolute terms: 2s for squared error, p ⊙ s + p·(pᵀs) for softmax.
fn hessian_scale(loss: Loss, z: ArrayView2<f64>, s: ArrayView2<f64>) -> Array2<f64> {
    match loss {
        Loss::SquaredError => s.mapv(|x| 2.0 * x),
        Loss::CrossEntropy => {
            // p ⊙ s + p (pᵀ s): the same as the product with the sign of the second term flipped.
            let minus = reference::loss_hessian_product(loss, z, s);
            let twice_p_s = &s.mapv(|x| 2.0 * x) * &softmax(z);
            twice_p_s - minus
        }
    }
}

fn softmax(z: ArrayView2<f64>) -> Array2<f64> {
    let mut p = z.to_owned();
    for mut row in p.rows_mut() {
        let top = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - top).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

/// Every curvature product of the GPU against the reference on one subsample: Jv, Jᵀu, B·u
/// and (G + λI)v.
fn check_products(
    execution: Execution,
    case: &str,
    problem: &Problem,
    data: &Dataset,
    size: usize,
    seed: u64,
) {
    let (gpu, network, loss) = (execution.gpu, &problem.network, problem.loss);
    let (n, k) = (network.param_count(), network.outputs());
    let mut rng = rng(seed);
    let theta = network.init_params(seed);
    let theta_buf = gpu.upload(&theta, "θ").unwrap();
    let s = Subsample::new(&execution, problem, data, &theta_buf, &options(size, seed)).unwrap();
    let images = images_of(data, s.indices());
    let v = random_vec(&mut rng, n);
    let u = random_vec(&mut rng, size * k);
    let (v_buf, u_buf) = (gpu.upload(&v, "v").unwrap(), gpu.upload(&u, "u").unwrap());
    let jv_buf = gpu.zeros::<f32>(size * k, "Jv").unwrap();
    let jtu_buf = gpu.zeros::<f32>(n, "Jᵀu").unwrap();
    let bu_buf = gpu.zeros::<f32>(size * k, "Bu").unwrap();
    let gv_buf = gpu.zeros::<f32>(n, "Gv").unwrap();
    let mut rec = gpu.recorder();
    s.record_jvp(&mut rec, &v_buf, &jv_buf).unwrap();
    s.record_vjp(&mut rec, &u_buf, &jtu_buf).unwrap();
    s.record_loss_hessian(&mut rec, &u_buf, &bu_buf).unwrap();
    rec.submit().unwrap();
    s.gauss_newton_product(&v_buf, LAMBDA, &gv_buf).unwrap();

    let (theta64, v64) = (to_f64(&theta), to_f64(&v));
    let theta_abs: Vec<f64> = theta64.iter().map(|t| t.abs()).collect();
    let v_abs: Vec<f64> = v64.iter().map(|t| t.abs()).collect();
    let trace = reference::forward(network, &theta64, reference::batch_of(network, &images));
    let abs_trace =
        Trace { values: forward_scales(network, &theta_abs, &trace), argmax: trace.argmax.clone() };
    let z = trace.outputs();
    let u64_ = Array2::from_shape_vec((size, k), to_f64(&u)).unwrap();

    let jv = reference::jvp(network, &theta64, &trace, &v64);
    // Scales through tanh and sigmoid at their steepest (see bounding_network).
    let bounding = common::bounding_network(network);
    let jv_scale = reference::jvp(&bounding, &theta_abs, &abs_trace, &v_abs);
    let flat = |a: &Array2<f64>| a.iter().copied().collect::<Vec<f64>>();
    assert_close(&format!("{case}: Jv"), &read(&jv_buf), &flat(&jv), &flat(&jv_scale), 1e-5);

    let (jtu, _) = reference::vjp(network, &theta64, &trace, u64_.view());
    let (jtu_scale, _) = reference::vjp(&bounding, &theta_abs, &abs_trace, u64_.mapv(f64::abs).view());
    assert_close(&format!("{case}: Jᵀu"), &read(&jtu_buf), &jtu, &jtu_scale, 1e-5);

    let bu = reference::loss_hessian_product(loss, z.view(), u64_.view());
    let bu_scale = hessian_scale(loss, z.view(), u64_.mapv(f64::abs).view());
    assert_close(&format!("{case}: B·u"), &read(&bu_buf), &flat(&bu), &flat(&bu_scale), 1e-5);

    let l = data.len();
    let gv = reference::gauss_newton_product(network, loss, C, l, LAMBDA, &theta64, &images, &v64);
    let b_scale = hessian_scale(loss, z.view(), jv_scale.view());
    let (jtb_scale, _) = reference::vjp(&bounding, &theta_abs, &abs_trace, b_scale.view());
    let damping = LAMBDA + 1.0 / (C * l as f64);
    let gv_scale: Vec<f64> =
        v_abs.iter().zip(&jtb_scale).map(|(v, g)| damping * v + g / size as f64).collect();
    assert_close(&format!("{case}: (G + λI)v"), &read(&gv_buf), &gv, &gv_scale, 1e-5);
}

conv_variants!(
    cnn4_products_match_reference_for_both_losses_and_batch_sizes,
    every_layer_kind_products_match_reference_for_both_losses,
);

/// With the tuner's picks (a plan that mixes kernels from pass to pass, timed here without a
/// cache) the products equal the reference as with any one kernel.
#[test]
fn tuned_products_match_reference() {
    let tuner = newton_wgpu::tune::Tuner::new(common::gpu(), newton_wgpu::tune::TuneMode::Full, None);
    let tuner: &'static newton_wgpu::tune::Tuner = Box::leak(Box::new(tuner));
    let execution = common::execution().with_tuner(tuner);
    cnn4_products_match_reference_for_both_losses_and_batch_sizes(execution);
    every_layer_kind_products_match_reference_for_both_losses(execution);
    assert!(tuner.report().timed > 0, "the tuner timed nothing");
}

fn cnn4_products_match_reference_for_both_losses_and_batch_sizes(execution: Execution) {
    let data = mnist_head(12);
    let network = cnn4(data.shape, data.classes).unwrap();
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let problem = problem(&network, loss);
        check_products(execution, &format!("cnn4 {loss} |S|=1"), &problem, &data, 1, 1);
        check_products(execution, &format!("cnn4 {loss} |S|=5"), &problem, &data, 5, 2);
    }
}

fn every_layer_kind_products_match_reference_for_both_losses(execution: Execution) {
    let data = synthetic(Shape::new(3, 7, 9), 4, 20, 5);
    for (name, network) in [
        ("mixed", mixed_network(data.shape, data.classes)),
        ("smooth", smooth_network(data.shape, data.classes)),
        ("residual", common::residual_network(data.shape, data.classes)),
    ] {
        for loss in [Loss::SquaredError, Loss::CrossEntropy] {
            let problem = problem(&network, loss);
            check_products(execution, &format!("{name} {loss} |S|=1"), &problem, &data, 1, 3);
            check_products(execution, &format!("{name} {loss} |S|=7"), &problem, &data, 7, 4);
        }
    }
}

#[test]
fn reference_jvp_equals_central_finite_differences_of_the_outputs() {
    let data = synthetic(Shape::new(2, 6, 6), 3, 3, 9);
    jvp_equals_finite_differences(&data, &mixed_network(data.shape, data.classes));
    jvp_equals_finite_differences(&data, &smooth_network(data.shape, data.classes));
    jvp_equals_finite_differences(&data, &common::residual_network(data.shape, data.classes));
}

fn jvp_equals_finite_differences(data: &Dataset, network: &Network) {
    let network = network.clone();
    let mut rng = rng(8);
    let theta = to_f64(&random_vec(&mut rng, network.param_count()));
    let v = to_f64(&random_vec(&mut rng, network.param_count()));
    let x = reference::batch_of(&network, &data.images);
    let outputs = |t: &[f64]| reference::forward(&network, t, x.clone()).outputs();
    let jv = reference::jvp(&network, &theta, &reference::forward(&network, &theta, x.clone()), &v);
    let h = 1e-6;
    let shifted = |sign: f64| theta.iter().zip(&v).map(|(t, d)| t + sign * h * d).collect::<Vec<f64>>();
    let fd = (outputs(&shifted(1.0)) - outputs(&shifted(-1.0))) / (2.0 * h);
    let largest = jv.fold(0.0f64, |a, b| a.max(b.abs()));
    for ((i, &want), &got) in fd.indexed_iter().zip(jv.iter()) {
        let bound = 1e-6 * got.abs().max(1e-3 * largest);
        assert!((got - want).abs() <= bound, "Jv{i:?} = {got}, finite differences {want}");
    }
}

#[test]
fn softmax_hessian_product_equals_finite_differences_of_the_gradient() {
    let mut rng = rng(21);
    let z = Array2::from_shape_vec((3, 5), to_f64(&random_vec(&mut rng, 15))).unwrap() * 3.0;
    let u = Array2::from_shape_vec((3, 5), to_f64(&random_vec(&mut rng, 15))).unwrap();
    let labels = [4, 0, 2];
    let grad = |z: &Array2<f64>| reference::loss_value_and_grad(Loss::CrossEntropy, z.view(), &labels).1;
    let h = 1e-6;
    let fd = (grad(&(&z + &(&u * h))) - grad(&(&z - &(&u * h)))) / (2.0 * h);
    let bu = reference::loss_hessian_product(Loss::CrossEntropy, z.view(), u.view());
    for (got, want) in bu.iter().zip(fd.iter()) {
        assert!((got - want).abs() <= 1e-8 * (1.0 + want.abs()), "B·u {got} vs finite differences {want}");
    }
}

fn dot64(a: &[f32], b: &[f32]) -> (f64, f64) {
    let terms = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64);
    terms.clone().fold((0.0, 0.0), |(s, abs), t| (s + t, abs + t.abs()))
}

#[test]
fn adjoint_identity_and_symmetry_hold_on_the_gpu() {
    let data = mnist_head(8);
    adjoint_and_symmetry(&data, &cnn4(data.shape, data.classes).unwrap());
    adjoint_and_symmetry(&data, &smooth_network(data.shape, data.classes));
    adjoint_and_symmetry(&data, &common::residual_network(data.shape, data.classes));
}

fn adjoint_and_symmetry(data: &Dataset, network: &Network) {
    let gpu = gpu();
    let (n, k, size) = (network.param_count(), network.outputs(), 6);
    let theta = gpu.upload(&network.init_params(4), "θ").unwrap();
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let problem = problem(network, loss);
        let s = Subsample::new(&execution(), &problem, data, &theta, &options(size, 6)).unwrap();
        let mut rng = rng(31);
        let (v, w, u) = (random_vec(&mut rng, n), random_vec(&mut rng, n), random_vec(&mut rng, size * k));
        let (v_buf, w_buf, u_buf) =
            (gpu.upload(&v, "v").unwrap(), gpu.upload(&w, "w").unwrap(), gpu.upload(&u, "u").unwrap());
        let jv = gpu.zeros::<f32>(size * k, "Jv").unwrap();
        let jtu = gpu.zeros::<f32>(n, "Jᵀu").unwrap();
        let mut rec = gpu.recorder();
        s.record_jvp(&mut rec, &v_buf, &jv).unwrap();
        s.record_vjp(&mut rec, &u_buf, &jtu).unwrap();
        rec.submit().unwrap();
        let (left, left_abs) = dot64(&read(&jv), &u);
        let (right, right_abs) = dot64(&v, &read(&jtu));
        assert!(
            (left - right).abs() <= 1e-5 * (left_abs + right_abs),
            "{loss}: ⟨Jv, u⟩ = {left}, ⟨v, Jᵀu⟩ = {right}"
        );

        let (gv, gw) = (gpu.zeros::<f32>(n, "Gv").unwrap(), gpu.zeros::<f32>(n, "Gw").unwrap());
        for lambda in [0.0, LAMBDA] {
            s.gauss_newton_product(&v_buf, lambda, &gv).unwrap();
            s.gauss_newton_product(&w_buf, lambda, &gw).unwrap();
            let (w_gv, w_gv_abs) = dot64(&w, &read(&gv));
            let (v_gw, v_gw_abs) = dot64(&v, &read(&gw));
            assert!(
                (w_gv - v_gw).abs() <= 1e-5 * (w_gv_abs + v_gw_abs),
                "{loss}: wᵀGv = {w_gv}, vᵀGw = {v_gw}"
            );
            let (v_gv, _) = dot64(&v, &read(&gv));
            let (w_gw, _) = dot64(&w, &read(&gw));
            // G_S is positive semi-definite and the damping adds at least 1/(C·l) > 0.
            let floor = 1.0 / (C * data.len() as f64);
            assert!(v_gv >= floor * dot64(&v, &v).0 * 0.999, "{loss}: vᵀ(G+λI)v = {v_gv}");
            assert!(w_gw >= floor * dot64(&w, &w).0 * 0.999, "{loss}: wᵀ(G+λI)w = {w_gw}");
        }
    }
}

#[test]
fn single_dense_layer_with_squared_loss_has_the_closed_form() {
    let gpu = gpu();
    let (d, k, size) = (6, 3, 4);
    let data = synthetic(Shape::new(d, 1, 1), k, 10, 12);
    let network = Network::new(data.shape, &[LayerSpec::dense(k)]).unwrap();
    let mut rng = rng(13);
    let theta = gpu.upload(&random_vec(&mut rng, network.param_count()), "θ").unwrap();
    let v = random_vec(&mut rng, network.param_count());
    let problem = problem(&network, Loss::SquaredError);
    let s = Subsample::new(&execution(), &problem, &data, &theta, &options(size, 14)).unwrap();
    let gv = gpu.zeros::<f32>(v.len(), "Gv").unwrap();
    s.gauss_newton_product(&gpu.upload(&v, "v").unwrap(), LAMBDA, &gv).unwrap();

    // With x̃ = [x; 1] and V = [V_W, V_b] per output k: (G v)_k = (2/|S|) Σ_i (V_k · x̃_i) x̃_i.
    let x = images_of(&data, s.indices());
    let damping = LAMBDA + 1.0 / (C * data.len() as f64);
    let (mut want, mut scale) = (vec![0.0f64; v.len()], vec![0.0f64; v.len()]);
    for out in 0..k {
        for i in 0..size {
            let xi: Vec<f64> = x[i * d..(i + 1) * d].iter().map(|&t| t as f64).chain([1.0]).collect();
            let vk: Vec<f64> =
                v[out * d..(out + 1) * d].iter().chain([&v[k * d + out]]).map(|&t| t as f64).collect();
            let dot: f64 = vk.iter().zip(&xi).map(|(a, b)| a * b).sum();
            let dot_abs: f64 = vk.iter().zip(&xi).map(|(a, b)| (a * b).abs()).sum();
            for (j, xij) in xi.iter().enumerate() {
                let at = if j < d { out * d + j } else { k * d + out };
                want[at] += 2.0 / size as f64 * dot * xij;
                scale[at] += 2.0 / size as f64 * dot_abs * xij.abs();
            }
        }
    }
    for (j, vj) in v.iter().enumerate() {
        want[j] += damping * *vj as f64;
        scale[j] += damping * (*vj as f64).abs();
    }
    assert_close("closed-form Gv", &read(&gv), &want, &scale, 1e-5);
}

#[test]
fn chunked_and_stored_subsamples_give_the_same_product() {
    let gpu = gpu();
    let data = synthetic(Shape::new(3, 7, 9), 4, 30, 15);
    let network = mixed_network(data.shape, data.classes);
    let theta_host = network.init_params(5);
    let theta = gpu.upload(&theta_host, "θ").unwrap();
    let v = random_vec(&mut rng(16), network.param_count());
    let v_buf = gpu.upload(&v, "v").unwrap();
    for loss in [Loss::SquaredError, Loss::CrossEntropy] {
        let problem = problem(&network, loss);
        let stored = Subsample::new(&execution(), &problem, &data, &theta, &options(11, 17)).unwrap();
        let tight = newton_wgpu::nn::device::Workspace::bytes_for(
            &network,
            3,
            newton_wgpu::nn::device::Passes::Curvature,
        );
        let chunked_options =
            SubsampleOptions { memory_budget: Some(tight + 4 * 11 * 189), ..options(11, 17) };
        let chunks_of_4 = execution().with_bsize(4);
        let chunked = Subsample::new(&chunks_of_4, &problem, &data, &theta, &chunked_options).unwrap();
        assert!(!stored.is_chunked() && chunked.is_chunked());
        assert_eq!(stored.chunk_size(), 11);
        assert!(chunked.chunk_size() < 4, "chunks of {} should fit the budget", chunked.chunk_size());
        assert!(chunked.bytes() < stored.bytes());
        assert_eq!(stored.indices(), chunked.indices());
        let (a, b) = (gpu.zeros::<f32>(v.len(), "a").unwrap(), gpu.zeros::<f32>(v.len(), "b").unwrap());
        stored.gauss_newton_product(&v_buf, LAMBDA, &a).unwrap();
        chunked.gauss_newton_product(&v_buf, LAMBDA, &b).unwrap();
        let a64 = to_f64(&read(&a));
        let scale: Vec<f64> =
            a64.iter().map(|x| x.abs() + 1e-3 * a64.iter().fold(0.0f64, |m, y| m.max(y.abs()))).collect();
        assert_close(&format!("{loss}: chunked Gv"), &read(&b), &a64, &scale, 1e-5);
    }
}

#[test]
fn the_same_seed_gives_the_same_subsample_and_product() {
    let gpu = gpu();
    assert_eq!(pick_subsample(1000, 50, 3), pick_subsample(1000, 50, 3));
    assert_ne!(pick_subsample(1000, 50, 3), pick_subsample(1000, 50, 4));
    let picked = pick_subsample(1000, 50, 3);
    assert!(picked.windows(2).all(|w| w[0] < w[1]) && picked.iter().all(|&i| i < 1000));

    let data = mnist_head(20);
    let network = cnn4(data.shape, data.classes).unwrap();
    let theta = gpu.upload(&network.init_params(2), "θ").unwrap();
    let v = gpu.upload(&random_vec(&mut rng(3), network.param_count()), "v").unwrap();
    let products: Vec<Vec<f32>> = (0..2)
        .map(|_| {
            let problem = problem(&network, Loss::CrossEntropy);
            let s = Subsample::new(&execution(), &problem, &data, &theta, &options(4, 77)).unwrap();
            let out = gpu.zeros::<f32>(network.param_count(), "Gv").unwrap();
            s.gauss_newton_product(&v, LAMBDA, &out).unwrap();
            read(&out)
        })
        .collect();
    assert!(products[0].iter().zip(&products[1]).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn a_product_is_one_submit_without_read_back() {
    // A device of its own, so that other tests running in parallel do not touch its counters.
    let gpu = newton_wgpu::gpu::Gpu::new().unwrap();
    let data = synthetic(Shape::new(3, 7, 9), 4, 30, 18);
    let network = mixed_network(data.shape, data.classes);
    let theta = gpu.upload(&network.init_params(1), "θ").unwrap();
    let v = gpu.upload(&random_vec(&mut rng(19), network.param_count()), "v").unwrap();
    let out = gpu.zeros::<f32>(network.param_count(), "Gv").unwrap();
    let (problem, chunks_of_4) = (problem(&network, Loss::CrossEntropy), Execution::new(&gpu).with_bsize(4));
    for budget in [None, Some(1)] {
        let options = SubsampleOptions { memory_budget: budget, ..options(10, 20) };
        let s = Subsample::new(&chunks_of_4, &problem, &data, &theta, &options).unwrap();
        let before = gpu.stats();
        s.gauss_newton_product(&v, LAMBDA, &out).unwrap();
        let after = gpu.stats();
        assert_eq!(after.submits - before.submits, 1, "chunked: {}", s.is_chunked());
        assert_eq!(after.readbacks, before.readbacks);
        assert!(after.dispatches - before.dispatches >= 10, "Jv, B, Jᵀ and the damping are dispatches");
    }
}
