//! The subcommands of the newton-wgpu program.

pub mod compare;
pub mod eval;
mod plot;
pub mod predict;
pub mod ranks;
pub mod train;
pub mod usage;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use newton_wgpu::data::{self, DataSplit, Normalizer};
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{self, Network, Shape};
use newton_wgpu::{rules, Execution, Problem};

/// Where the bundled data set is looked for, in order, when no --data is given: beside the
/// working directory (a checkout), then beside the program and up to three folders above it
/// (a copied bundle, or target/release/ in a checkout). Nothing is taken from where the
/// program was built.
const BUNDLED_DATA: &str = "data/mnist-sample";

/// The bundled data set's folder (see [`BUNDLED_DATA`]).
pub fn bundled_data() -> Result<PathBuf> {
    let mut tried = vec![PathBuf::from(BUNDLED_DATA)];
    if let Ok(exe) = std::env::current_exe() {
        tried.extend(exe.ancestors().skip(1).take(4).map(|dir| dir.join(BUNDLED_DATA)));
    }
    match tried.iter().find(|dir| dir.is_dir()) {
        Some(dir) => Ok(dir.clone()),
        None => {
            let places: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            bail!("--data: no data folder given, and the bundled sample is in none of {}", places.join(", "))
        }
    }
}

/// The folder `data` names, or the bundled data set.
pub fn data_dir(data: Option<&Path>) -> Result<PathBuf> {
    match data {
        Some(dir) => Ok(dir.to_owned()),
        None => bundled_data(),
    }
}

/// The problem a command works on (data, network, loss, C), the chunk size on the device and
/// the seed.
#[derive(Args, Clone, Debug)]
pub struct ProblemArgs {
    /// Data directory (MNIST IDX files or CIFAR-10 binary batches) [default: the bundled
    /// data/mnist-sample, found beside the working directory or the program].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// cnn4, cnn7, cnn4-small, or a network file (.toml or .json).
    #[arg(long, default_value = "cnn4")]
    pub net: String,
    /// mse (squared error) or ce (softmax cross-entropy).
    #[arg(long, default_value = "mse")]
    pub loss: Loss,
    /// Regularisation constant C: the objective has θᵀθ/(2·C·l).
    #[arg(long, default_value_t = 0.01)]
    pub c: f64,
    /// Samples per chunk on the device (memory, not statistics).
    #[arg(long, default_value_t = 1024)]
    pub bsize: usize,
    /// Seed of the initialisation (and, for training, of the subsamples and shuffles).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training samples.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl ProblemArgs {
    /// Checks C, --bsize and --limit, as the options name them.
    pub fn validate(&self) -> Result<()> {
        rules::positive("c", self.c).map_err(usage::option_error)?;
        rules::count("bsize", self.bsize).map_err(usage::option_error)?;
        if let Some(limit) = self.limit {
            rules::count("limit", limit).map_err(usage::option_error)?;
        }
        Ok(())
    }

    /// Loads and normalises the data (holding out a `validation` fraction of the training
    /// set, chosen by the seed), builds the network and the problem, and says what they are.
    pub fn load(&self, validation: Option<f64>) -> Result<(DataSplit, Normalizer, Problem)> {
        let dir = data_dir(self.data.as_deref())?;
        let (split, normalizer) = load_data(&dir, self.limit, validation, self.seed)?;
        let (train, test) = (&split.train, &split.test);
        let network = network_for(&self.net, train.shape, train.classes)?;
        let held_out =
            split.validation.as_ref().map_or(String::new(), |v| format!(", {} validation", v.len()));
        println!(
            "data: {} training{held_out} and {} test samples of {} from {}",
            train.len(),
            test.len(),
            train.shape,
            dir.display()
        );
        println!("network {}:\n{}", self.net, network.describe());
        Ok((split, normalizer, Problem::new(network, self.loss, self.c)?))
    }

    /// How the commands run on `gpu`: NEWTON_WGPU_CONV's kernels, chunks of --bsize samples.
    pub fn execution<'g>(&self, gpu: &'g Gpu) -> Result<Execution<'g>> {
        Ok(Execution::from_env(gpu)?.with_bsize(self.bsize))
    }
}

/// Says which adapter runs and which convolution kernels run on it.
pub fn announce(execution: &Execution) {
    println!("adapter: {}, {} convolution kernels", execution.gpu.adapter(), execution.conv);
}

/// Loads a data directory, keeps the first `limit` training samples, holds out a `validation`
/// fraction of them (chosen by `seed`), and subtracts the training mean from every set.
pub fn load_data(
    dir: &Path,
    limit: Option<usize>,
    validation: Option<f64>,
    seed: u64,
) -> Result<(DataSplit, Normalizer)> {
    let mut split = load_split(dir)?;
    if let Some(n) = limit {
        split.train = split.train.head(n);
    }
    if let Some(fraction) = validation {
        rules::open_unit("validation", fraction).map_err(usage::option_error)?;
        let count = (fraction * split.train.len() as f64).round() as usize;
        split.hold_out(count, seed)?;
    }
    let normalizer = split.normalize();
    Ok((split, normalizer))
}

/// A data directory's training and test sets, as its files hold them; an empty test set is
/// refused here, before the GPU is opened, since every command scores on it.
pub fn load_split(dir: &Path) -> Result<DataSplit> {
    let split = data::load_dir(dir).with_context(|| format!("loading data from {}", dir.display()))?;
    if split.test.is_empty() {
        return Err(
            newton_wgpu::Error::EmptyData { what: format!("the test set in {}", dir.display()) }.into()
        );
    }
    Ok(split)
}

/// A built-in network by name, or a network file.
pub fn network_for(name: &str, input: Shape, classes: usize) -> Result<Network> {
    Ok(match nn::builtin(name, input, classes) {
        Some(network) => network?,
        None => Network::new(input, &nn::load_network_file(Path::new(name))?)?,
    })
}

/// The adapter and its limits; across ranks, one line per rank on the standard error (only
/// rank 0 prints the rest), each naming the rank's adapter.
pub fn info(ranks: &ranks::Ranks) -> Result<()> {
    let gpu = Gpu::new()?;
    let execution = Execution::from_env(&gpu)?;
    let a = gpu.adapter();
    let l = gpu.limits();
    if ranks.comm().size() > 1 {
        // One write, so that the ranks' lines do not interleave.
        let line = format!("{}adapter {} ({:?}, {:?})\n", ranks.prefix(), a.name, a.backend, a.device_type);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    println!("adapter      {}", a.name);
    println!("backend      {:?}", a.backend);
    println!("device type  {:?}", a.device_type);
    println!("driver       {} {}", a.driver, a.driver_info);
    println!("convolutions {} kernels (NEWTON_WGPU_CONV=windowed|tiled chooses)", execution.conv);
    println!("shader checks {:?} (NEWTON_WGPU_SHADER_CHECKS=all|declared|none chooses)", gpu.shader_checks());
    println!("limits in use:");
    println!("  max_storage_buffer_binding_size     {}", l.max_storage_buffer_binding_size);
    println!("  max_buffer_size                     {}", l.max_buffer_size);
    println!("  max_storage_buffers_per_shader_stage {}", l.max_storage_buffers_per_shader_stage);
    println!("  max_compute_workgroups_per_dimension {}", l.max_compute_workgroups_per_dimension);
    println!("  max_compute_invocations_per_workgroup {}", l.max_compute_invocations_per_workgroup);
    println!("  max_compute_workgroup_storage_size  {}", l.max_compute_workgroup_storage_size);
    println!("  min_uniform_buffer_offset_alignment {}", l.min_uniform_buffer_offset_alignment);
    Ok(())
}
