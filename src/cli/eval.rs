//! `newton-wgpu eval`: f, ‖∇f‖ and one Gauss-Newton product of a fresh network, timed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use newton_wgpu::curvature::{Subsample, SubsampleOptions};
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::objective::Objective;

use super::{load_data, network_for, BUNDLED_DATA};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Data directory (MNIST IDX files or CIFAR-10 binary batches).
    #[arg(long, default_value = BUNDLED_DATA)]
    data: PathBuf,
    /// cnn4, cnn7, or a network file (.toml or .json).
    #[arg(long, default_value = "cnn4")]
    net: String,
    /// mse (squared error) or ce (softmax cross-entropy).
    #[arg(long, default_value = "mse")]
    loss: Loss,
    /// Regularisation constant C (the objective has θᵀθ / (2·C·l)).
    #[arg(long, default_value_t = 0.01)]
    c: f64,
    /// Samples per chunk on the device.
    #[arg(long, default_value_t = 1024)]
    bsize: usize,
    /// Seed of the He initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Subsample size for the Gauss-Newton product (default: 5% of the training samples).
    #[arg(long)]
    gn_size: Option<usize>,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.adapter());
    let (split, _) = load_data(&args.data, args.limit)?;
    let train = split.train;
    let network = network_for(&args.net, train.shape, train.classes)?;
    println!("data: {} training samples of {} from {}", train.len(), train.shape, args.data.display());
    println!("network {}:\n{}", args.net, network.describe());
    let theta = gpu.upload(&network.init_params(args.seed), "θ")?;
    let grad = gpu.zeros::<f32>(network.param_count(), "∇f")?;
    // Multiply-adds of one sample's f + ∇f: the forward pass, the weight gradient (as many as
    // the forward), and the input gradient of every conv but the first (not computed there).
    let layer_macs: Vec<u64> = network.conv_geometries().map(|g| g.macs_per_sample()).collect();
    let macs = 2 * layer_macs.iter().sum::<u64>() + layer_macs.iter().skip(1).sum::<u64>();
    let mut objective =
        Objective::new(&gpu, network.clone(), args.loss, args.c, args.bsize.min(train.len().max(1)))?;
    println!(
        "loss {}, C = {}, chunks of {} samples, {:.1} MiB on the device",
        args.loss,
        args.c,
        objective.chunk_size(),
        objective.bytes() as f64 / (1 << 20) as f64
    );
    // Compile the pipelines on one sample, so that the timing below is of the work alone.
    objective.value_and_grad(&train.head(1), &theta, &grad)?;
    let start = Instant::now();
    let eval = objective.value_and_grad(&train, &theta, &grad)?;
    let seconds = start.elapsed().as_secs_f64();
    let gflops = 2.0 * macs as f64 * train.len() as f64 / seconds / 1e9;
    println!(
        "f(θ)    = {:.6}  (mean loss {:.6} + regularisation {:.6})",
        eval.f, eval.mean_loss, eval.regularization
    );
    println!("‖∇f(θ)‖ = {:.6}", eval.grad_norm);
    println!("one f + ∇f evaluation: {seconds:.3} s (about {gflops:.2} GFLOP/s in the convolutions)");

    // One damped Gauss-Newton product with the gradient, as Newton-CG's first CG step makes.
    let size = args.gn_size.unwrap_or(train.len().div_ceil(20));
    let options = SubsampleOptions { size, seed: args.seed, memory_budget: None, bsize: args.bsize };
    let start = Instant::now();
    let subsample = Subsample::new(&gpu, &network, args.loss, args.c, &train, &theta, &options)?;
    gpu.wait()?;
    let forward_s = start.elapsed().as_secs_f64();
    let product = gpu.zeros::<f32>(network.param_count(), "(G + λI)∇f")?;
    subsample.gauss_newton_product(&grad, 1.0, &product)?; // compiles the remaining pipelines
    gpu.wait()?;
    let start = Instant::now();
    subsample.gauss_newton_product(&grad, 1.0, &product)?;
    gpu.wait()?;
    let product_s = start.elapsed().as_secs_f64();
    println!("subsample: {}; its forward pass took {forward_s:.3} s", subsample.describe());
    println!("one product (G_S + I)·∇f: {product_s:.3} s");
    Ok(())
}
