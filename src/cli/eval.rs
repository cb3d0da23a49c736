//! `newton-wgpu eval`: f, ‖∇f‖ and one Gauss-Newton product of a fresh network, timed.

use crate::sayln;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use newton_wgpu::comm;
use newton_wgpu::curvature::{Damping, Subsample, SubsampleOptions};
use newton_wgpu::gpu::Gpu;
use newton_wgpu::objective::Objective;
use newton_wgpu::rules;

use super::usage::option_error;
use super::ProblemArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Subsample size for the Gauss-Newton product (default: 5% of the training samples).
    #[arg(long)]
    gn_size: Option<usize>,
}

pub fn eval(args: &EvalArgs, ranks: &super::ranks::Ranks) -> Result<()> {
    args.problem.validate()?;
    let super::Loaded { split, problem, train_total: total, .. } = args.problem.load(None, ranks)?;
    let comm = ranks.comm();
    let train = split.train;
    let size = args.gn_size.unwrap_or(total.div_ceil(20));
    rules::count_up_to("gn_size", size, total, "from 1 to the number of training samples")
        .map_err(option_error)?;
    let gpu = Gpu::new()?;
    problem.check_fits(&gpu)?;
    let tuner = args.problem.tuner(&gpu, ranks)?;
    let execution = args.problem.execution(&gpu, &tuner)?;
    super::announce(&execution, &problem.network, execution.bsize)?;
    let network = &problem.network;
    let theta = gpu.upload(&network.init_params(args.problem.seed), "θ")?;
    let grad = gpu.zeros::<f32>(network.param_count(), "∇f")?;
    // Multiply-adds of one sample's f + ∇f: the forward pass, the weight gradient (as many as
    // the forward), and the input gradient of every conv but the first (not computed there).
    let layer_macs: Vec<u64> = network.conv_geometries().map(|g| g.macs_per_sample()).collect();
    let macs = 2 * layer_macs.iter().sum::<u64>() + layer_macs.iter().skip(1).sum::<u64>();
    let chunks = execution.with_bsize(execution.bsize.min(train.len().max(1)));
    let mut objective = Objective::new(&chunks, &problem)?;
    sayln!(
        "loss {}, C = {}, chunks of {} samples, {:.1} MiB on the device",
        args.problem.loss,
        args.problem.c,
        objective.chunk_size(),
        objective.bytes() as f64 / (1 << 20) as f64
    );
    // Compile the pipelines on one sample, so that the timing below is of the work alone.
    objective.value_and_grad(&train.head(1), &theta, &grad)?;
    let start = Instant::now();
    let eval = objective.value_and_grad_across(comm, &train, total, &theta, &grad)?;
    let seconds = start.elapsed().as_secs_f64();
    let gflops = 2.0 * macs as f64 * total as f64 / seconds / 1e9;
    sayln!(
        "f(θ)    = {:.6}  (mean loss {:.6} + regularisation {:.6})",
        eval.f,
        eval.mean_loss,
        eval.regularization
    );
    sayln!("‖∇f(θ)‖ = {:.6}", eval.grad_norm);
    sayln!("one f + ∇f evaluation: {seconds:.3} s (about {gflops:.2} GFLOP/s in the convolutions)");

    // One damped Gauss-Newton product with the gradient, as Newton-CG's first CG step makes:
    // across ranks each computes its part of S's, rank 0 adding the damping, and the parts
    // are summed.
    let options = SubsampleOptions { size, seed: args.problem.seed, memory_budget: None };
    let start = Instant::now();
    let subsample = Subsample::across(&execution, &problem, comm, &train, total, &theta, &options)?;
    gpu.wait()?;
    let forward_s = start.elapsed().as_secs_f64();
    let product = gpu.zeros::<f32>(network.param_count(), "(G + λI)∇f")?;
    let damping = if comm.rank() == 0 { Damping::Lambda(1.0) } else { Damping::Undamped };
    let mut rec = gpu.recorder();
    subsample.record_gauss_newton(&mut rec, &grad, damping, &product)?;
    let program = rec.finish()?;
    gpu.submit(&[&program])?; // compiles the remaining pipelines
    gpu.wait()?;
    let start = Instant::now();
    gpu.submit(&[&program])?;
    comm::sum_on_device(&gpu, comm, &product)?;
    gpu.wait()?;
    let product_s = start.elapsed().as_secs_f64();
    let norm = gpu.read(&product)?.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    sayln!("subsample: {}; its forward pass took {forward_s:.3} s", subsample.describe());
    let summed = if comm.size() > 1 {
        format!(" (its parts summed over {} ranks)", comm.size())
    } else {
        String::new()
    };
    sayln!("one product (G_S + I)·∇f: {product_s:.3} s{summed}");
    sayln!("‖(G_S + I)·∇f‖ = {norm:.6}");
    Ok(())
}
