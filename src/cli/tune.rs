//! `newton-wgpu tune`: picks the convolution kernels of a network's layers on this adapter
//! ahead of a run (timing those the cache lacks, or all of them with --again) and prints the
//! table: shape, candidates, winner, microseconds and GFLOP/s.

use crate::{say, sayln};
use anyhow::Result;
use clap::Args;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::tune::{cache_dir, TuneMode, Tuner};
use newton_wgpu::{ConvPlan, Execution};

use super::ProblemArgs;

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Time every shape again, whatever the cache holds (the new winners replace the old).
    #[arg(long)]
    again: bool,
}

pub fn run(args: &TuneArgs, ranks: &super::ranks::Ranks) -> Result<()> {
    args.problem.validate()?;
    let super::Loaded { split, problem, .. } = args.problem.load(None, ranks)?;
    let gpu = Gpu::new()?;
    // --again: a tuner that reads nothing, then writes every winner to the same cache file.
    let dir = cache_dir();
    let tuner = if args.again {
        Tuner::fresh(&gpu, dir.as_deref())
    } else {
        Tuner::new(&gpu, args.problem.tune.unwrap_or(TuneMode::Full), dir.as_deref())
    };
    let execution = Execution::from_env(&gpu)?.with_bsize(args.problem.bsize).with_tuner(&tuner);
    let batch = execution.bsize.min(split.train.len().max(1));
    super::announce(&execution, &problem.network, batch)?;
    let timed = tuner.timed();
    if timed.is_empty() {
        sayln!("nothing timed: every choice came from the cache (--again times them anew)");
        return Ok(());
    }
    let kernels: Vec<String> = newton_wgpu::ConvKernel::ALL.iter().map(|k| k.to_string()).collect();
    let groups: Vec<String> = ConvPlan::WEIGHT_GROUPS.iter().map(|n| format!("groups of {n}")).collect();
    say!("{:<44}", "shape (pass, kernel, stride, padding, channels, size, batch)");
    kernels.iter().for_each(|n| say!(" {n:>10}"));
    sayln!(" {:>12} {:>10} {:>9}", "winner", "µs", "GFLOP/s");
    sayln!(
        "(weight_grad rows: the one kernel in groups of {:?} samples, in the first columns)",
        ConvPlan::WEIGHT_GROUPS
    );
    for shape in timed {
        say!("{:<44}", shape.key);
        let names = if shape.choice.candidates.contains_key(&kernels[0]) { &kernels } else { &groups };
        for name in names.iter().chain(&kernels[names.len()..]) {
            match shape.choice.candidates.get(name) {
                Some(Some(us)) => say!(" {us:>10.1}"),
                Some(None) => say!(" {:>10}", "dropped"),
                None => say!(" {:>10}", "-"),
            }
        }
        sayln!(" {:>12} {:>10.1} {:>9.1}", shape.choice.kernel, shape.choice.us, shape.gflops);
    }
    Ok(())
}
