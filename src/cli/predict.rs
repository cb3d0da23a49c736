//! `newton-wgpu predict`: a saved model's accuracy on a data set's test images.

use crate::sayln;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::model::Model;
use newton_wgpu::objective::Objective;
use newton_wgpu::{rules, Execution, Problem};

use super::ranks::Ranks;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model saved by `train --save`.
    #[arg(long)]
    model: PathBuf,
    /// Data directory; its test set is scored [default: the bundled data/mnist-sample].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Samples per chunk on the device.
    #[arg(long, default_value_t = 1024)]
    bsize: usize,
}

/// Scores the model; across ranks each rank reads and scores its shard of the test set, and
/// the counts are summed (rank 0 prints them).
pub fn run(args: &PredictArgs, ranks: &Ranks) -> Result<()> {
    rules::count_in("bsize", args.bsize, 1, rules::most::SAMPLES).map_err(super::usage::option_error)?;
    let comm = ranks.comm();
    let loaded = Model::read(&args.model)?;
    if let (Some(warning), 0) = (&loaded.warning, comm.rank()) {
        eprintln!("warning: {warning}");
    }
    let model = loaded.value;
    let dir = super::data_dir(args.data.as_deref())?;
    let (mut test, total, files) = super::load_test_part(&dir, comm)?;
    model.network.check_data(test.shape, test.classes)?;
    let theta_bytes: &[u8] = bytemuck::cast_slice(&model.theta);
    ranks.agree(&[
        ("test set", format!("{total} samples of {}, {} classes", test.shape, test.classes)),
        ("data files", files),
        (
            "model",
            format!("{} parameters, θ's CRC-32 {:08x}", model.theta.len(), crc32fast::hash(theta_bytes)),
        ),
    ])?;
    // The model's own input normalisation, fitted on the data it was trained on.
    match &model.normalizer {
        Some(normalizer) => normalizer.apply(&mut test),
        None if comm.rank() == 0 => eprintln!(
            "warning: {}: the model holds no input mean (`input_mean`), so the data is scored as it \
             is, without the normalisation it was trained with (newton-wgpu train saves one)",
            args.model.display()
        ),
        None => {}
    }
    // Accuracy does not depend on C.
    let problem = Problem::new(model.network, model.loss, 1.0)?;
    let gpu = Gpu::new()?;
    problem.check_fits(&gpu)?;
    let execution = Execution::from_env(&gpu)?.with_bsize(args.bsize);
    let theta = gpu.upload(&model.theta, "θ")?;
    let mut objective = Objective::new(&execution, &problem)?;
    let accuracy = objective.accuracy_across(comm, &test, &theta)?;
    sayln!("accuracy {:.2}% on {total} test samples of {}", 100.0 * accuracy.overall(), dir.display());
    if comm.size() > 1 {
        sayln!("      each of the {} ranks scored its part: rank 0 {} samples", comm.size(), test.len());
    }
    sayln!("class  correct  total");
    for (class, (correct, total)) in accuracy.correct.iter().zip(&accuracy.total).enumerate() {
        sayln!("{class:>5} {correct:>8} {total:>6}");
    }
    Ok(())
}
