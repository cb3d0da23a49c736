//! Gradient over S against one Gauss-Newton product over S, for cnn4 on 28×28×1 and 32×32×3
//! synthetic inputs with |S| = 256 and 1024, on the adapter at hand, in one run:
//! `cargo bench --bench curvature`. The forward pass of S is stored once, so a product costs
//! Jv (about two convolutions per layer) and Jᵀ (two per layer): about 4/3 of a gradient.

use std::time::Instant;

use newton_wgpu::curvature::{Subsample, SubsampleOptions};
use newton_wgpu::data::Dataset;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4, Network, Shape};
use newton_wgpu::objective::Objective;

const RUNS: usize = 3;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn synthetic(shape: Shape, len: usize) -> Dataset {
    let images = (0..len * shape.len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let labels = (0..len).map(|i| (i % 10) as u32).collect();
    Dataset::new(shape, 10, images, labels, "synthetic".as_ref()).unwrap()
}

/// Multiply-adds of one sample: (gradient, Gauss-Newton product).
fn macs(network: &Network) -> (f64, f64) {
    let layers: Vec<f64> = network.conv_geometries().map(|g| g.macs_per_sample() as f64).collect();
    let (all, first) = (layers.iter().sum::<f64>(), layers[0]);
    // Gradient: forward, weight gradient, input gradient of all but the first layer.
    // Product: Jv (V·x for every layer, W·R(x) for all but the first), then the same Jᵀ.
    (3.0 * all - first, 4.0 * all - 2.0 * first)
}

fn main() {
    let gpu = Gpu::new().expect("a GPU adapter");
    println!("adapter: {}\n", gpu.adapter());
    println!(
        "{:<10} {:>5}  {:>12} {:>12} {:>8}  {:>9} {:>9}  subsample",
        "input", "|S|", "gradient ms", "Gv ms", "Gv/grad", "grad GF/s", "Gv GF/s"
    );
    for shape in [Shape::new(1, 28, 28), Shape::new(3, 32, 32)] {
        for size in [256, 1024] {
            let data = synthetic(shape, size);
            let network = cnn4(shape, 10).unwrap();
            let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
            let grad = gpu.zeros::<f32>(network.param_count(), "∇f").unwrap();
            let v = gpu.upload(&network.init_params(1), "v").unwrap();
            let gv = gpu.zeros::<f32>(network.param_count(), "Gv").unwrap();
            let mut objective =
                Objective::new(&gpu, network.clone(), Loss::SquaredError, 0.01, size).unwrap();
            let options = SubsampleOptions { size, seed: 0, memory_budget: Some(u64::MAX), bsize: size };
            let s =
                Subsample::new(&gpu, &network, Loss::SquaredError, 0.01, &data, &theta, &options).unwrap();
            let (mut grad_times, mut gv_times) = (Vec::new(), Vec::new());
            for run in 0..=RUNS {
                let start = Instant::now();
                objective.value_and_grad(&data, &theta, &grad).unwrap();
                let grad_s = start.elapsed().as_secs_f64();
                let start = Instant::now();
                s.gauss_newton_product(&v, 1.0, &gv).unwrap();
                gpu.wait().unwrap();
                let gv_s = start.elapsed().as_secs_f64();
                if run > 0 {
                    grad_times.push(grad_s);
                    gv_times.push(gv_s);
                }
            }
            let (grad_s, gv_s) = (median(grad_times), median(gv_times));
            let (grad_macs, gv_macs) = macs(&network);
            println!(
                "{:<10} {:>5}  {:>12.1} {:>12.1} {:>8.2}  {:>9.2} {:>9.2}  {}",
                shape.to_string(),
                size,
                grad_s * 1e3,
                gv_s * 1e3,
                gv_s / grad_s,
                2.0 * grad_macs * size as f64 / grad_s / 1e9,
                2.0 * gv_macs * size as f64 / gv_s / 1e9,
                s.describe()
            );
        }
    }
}
