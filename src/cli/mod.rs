//! The subcommands of the newton-wgpu program.

pub mod compare;
pub mod eval;
mod launch;
pub mod out;
mod plot;
pub mod predict;
pub mod ranks;
pub mod train;
pub mod tune;
pub mod usage;

use crate::sayln;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use newton_wgpu::comm::Communicator;
use newton_wgpu::data::{self, DataFiles, DataSplit, Normalizer, Part, PartPlan};
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{self, Network, Shape};
use newton_wgpu::tune::{cache_dir, TuneMode, Tuner};
use newton_wgpu::{rules, ConvKernel, Execution, Problem};

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
    /// cnn4, cnn7, cnn4-small, vgg11 (samples of at least 32×32), resnet8, resnet20 (Fixup
    /// ResNets), or a network file (.toml or .json).
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
    /// Also divide the inputs by each channel's standard deviation over the training set
    /// (after subtracting the mean, as ResNets are trained); the model keeps both.
    #[arg(long)]
    pub standardize: bool,
    /// When the convolution kernels are timed on this adapter: full (shapes missing from the
    /// cache are timed once and cached), cached (the cache alone), off (windowed kernels)
    /// [default: NEWTON_WGPU_TUNE, else full; off across ranks].
    #[arg(long)]
    pub tune: Option<TuneMode>,
}

impl ProblemArgs {
    /// Checks C, --bsize and --limit, as the options name them.
    pub fn validate(&self) -> Result<()> {
        rules::positive("c", self.c).map_err(usage::option_error)?;
        rules::count_in("bsize", self.bsize, 1, rules::most::SAMPLES).map_err(usage::option_error)?;
        if let Some(limit) = self.limit {
            rules::count_in("limit", limit, 1, rules::most::SAMPLES).map_err(usage::option_error)?;
        }
        Ok(())
    }

    /// Loads what this rank holds of the data (all of it for one process: holding out a
    /// `validation` fraction of the training set, chosen by the seed), normalises it with the
    /// training set's statistics, builds the network and the problem, checks that every rank
    /// opened the same data and network, and says what they are.
    pub fn load(&self, validation: Option<f64>, ranks: &ranks::Ranks) -> Result<Loaded> {
        let dir = data_dir(self.data.as_deref())?;
        let comm = ranks.comm();
        let in_dir = || format!("loading data from {}", dir.display());
        let files = DataFiles::open(&dir).with_context(in_dir)?;
        if files.test_len() == 0 {
            return Err(
                newton_wgpu::Error::EmptyData { what: format!("the test set in {}", dir.display()) }.into()
            );
        }
        let kept = self.limit.map_or(files.train_len(), |limit| limit.min(files.train_len()));
        let held_out = match validation {
            Some(fraction) => {
                rules::open_unit("validation", fraction).map_err(usage::option_error)?;
                Some((fraction * kept as f64).round() as usize)
            }
            None => None,
        };
        let plan = PartPlan {
            limit: self.limit,
            validation: held_out,
            seed: self.seed,
            rank: comm.rank(),
            ranks: comm.size(),
        };
        let part = files.read_part(&plan).with_context(in_dir)?;
        let classes = part.split.train.classes;
        let network = network_for(&self.net, files.shape(), classes)?;
        agree_on_the_problem(ranks, &files, &part, &network)?;
        let Part { mut split, train_total, validation_total, test_total, bytes_read } = part;
        let normalizer = split.normalize_across(comm, train_total, self.standardize)?;
        let held =
            if validation_total > 0 { format!(", {validation_total} validation") } else { String::new() };
        sayln!(
            "data: {train_total} training{held} and {test_total} test samples of {} from {}",
            files.shape(),
            dir.display()
        );
        if comm.size() > 1 {
            sayln!(
                "      each of the {} ranks reads its part: rank 0 holds {} training samples, read {:.1} MiB",
                comm.size(),
                split.train.len(),
                bytes_read as f64 / (1 << 20) as f64
            );
        }
        sayln!("network {}:\n{}", self.net, network.describe());
        Ok(Loaded { split, normalizer, problem: Problem::new(network, self.loss, self.c)?, train_total })
    }

    /// The tuner of `gpu`, in --tune's mode (else NEWTON_WGPU_TUNE's, else full), caching in
    /// the tuner's cache folder. Across ranks it is off: every rank must run the same kernels
    /// to take one process's steps, and ranks tuning apart could pick different ones.
    pub fn tuner(&self, gpu: &Gpu, ranks: &ranks::Ranks) -> Result<Tuner> {
        let mode = match self.tune {
            Some(mode) => mode,
            None => TuneMode::from_env()?.unwrap_or_default(),
        };
        let mode = if ranks.comm().size() > 1 { TuneMode::Off } else { mode };
        Ok(Tuner::new(gpu, mode, cache_dir().as_deref()))
    }

    /// How the commands run on `gpu`: chunks of --bsize samples, every convolution pass by the
    /// kernel NEWTON_WGPU_CONV names, else by `tuner`'s picks.
    pub fn execution<'g>(&self, gpu: &'g Gpu, tuner: &'g Tuner) -> Result<Execution<'g>> {
        let execution = Execution::from_env(gpu)?.with_bsize(self.bsize);
        let fixed = std::env::var_os("NEWTON_WGPU_CONV").is_some_and(|v| !v.is_empty());
        Ok(if fixed || tuner.mode() == TuneMode::Off { execution } else { execution.with_tuner(tuner) })
    }
}

/// Says which adapter runs and how its convolution kernels are chosen; with a tuner, first
/// picks the kernels of `network`'s layers for chunks of `batch` samples (timing those the
/// cache lacks) and says so in one line.
pub fn announce(execution: &Execution, network: &Network, batch: usize) -> Result<()> {
    sayln!("adapter: {}, {} convolution kernels", execution.gpu.adapter(), execution.conv);
    if let Some(tuner) = execution.tuner {
        for g in network.conv_geometries() {
            execution.conv_plan(g, batch)?;
        }
        sayln!("{}", tuning_summary(tuner));
    }
    Ok(())
}

/// One line: what the tuner timed, what it took from its cache, and where that is.
pub fn tuning_summary(tuner: &Tuner) -> String {
    let report = tuner.report();
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let file = tuner
        .file()
        .map_or("no cache folder (set NEWTON_WGPU_CACHE_DIR)".into(), |f| f.display().to_string());
    format!(
        "tuning ({}): {} kernel choices timed in {:.1} s ({:.1} s compiling), {} from the cache, {} left to {}; cache {file}",
        tuner.mode(),
        report.timed,
        report.seconds,
        report.compile_seconds,
        report.cached,
        report.fallback,
        ConvKernel::fallback(),
    )
}

/// What a command works on: this rank's shards of the sets (the whole sets for one process),
/// normalised, and the problem.
pub struct Loaded {
    pub split: DataSplit,
    pub normalizer: Normalizer,
    pub problem: Problem,
    /// l: training samples over every rank.
    pub train_total: usize,
}

/// Refuses to go on unless every rank opened the same data (the sets' sizes, the samples'
/// shape and classes, each file's name and size) and built the same network: the command
/// lines agreed at the start, but the files they name may differ from machine to machine.
/// No rank reads the others' samples, so the samples themselves are not compared.
fn agree_on_the_problem(
    ranks: &ranks::Ranks,
    files: &DataFiles,
    part: &Part,
    network: &Network,
) -> Result<()> {
    ranks.agree(&[
        (
            "data",
            format!(
                "{} training, {} validation and {} test samples of {}, {} classes",
                part.train_total,
                part.validation_total,
                part.test_total,
                files.shape(),
                part.split.train.classes
            ),
        ),
        ("data files", files_fact(files)),
        ("network", network.describe()),
    ])
}

/// The data files' names and sizes, a fact the ranks agree on (no rank reads the others'
/// samples to compare them).
fn files_fact(files: &DataFiles) -> String {
    let sizes: Vec<String> =
        files.file_sizes().iter().map(|(name, bytes)| format!("{name} {bytes}")).collect();
    sizes.join(", ")
}

/// This rank's shard of a data directory's test set (all of it for one process: its
/// training files are opened, not read), the test set's size, and the data files' names and
/// sizes for the ranks to agree on.
pub fn load_test_part(dir: &Path, comm: &dyn Communicator) -> Result<(data::Dataset, usize, String)> {
    let in_dir = || format!("loading data from {}", dir.display());
    let files = DataFiles::open(dir).with_context(in_dir)?;
    if files.test_len() == 0 {
        return Err(
            newton_wgpu::Error::EmptyData { what: format!("the test set in {}", dir.display()) }.into()
        );
    }
    let (test, _) = files.read_test_part(comm.rank(), comm.size()).with_context(in_dir)?;
    Ok((test, files.test_len(), files_fact(&files)))
}

/// A built-in network by name, or a network file, checked against the data's samples and
/// classes (a file's errors name the file).
pub fn network_for(name: &str, input: Shape, classes: usize) -> Result<Network> {
    if let Some(network) = nn::builtin(name, input, classes) {
        return Ok(network?);
    }
    let path = Path::new(name);
    let in_file = |e: nn::NetworkError| anyhow::anyhow!("network file {}: {e}", path.display());
    let network = Network::new(input, &nn::load_network_file(path)?).map_err(in_file)?;
    network.check_data(input, classes).map_err(in_file)?;
    Ok(network)
}

/// Whether this machine has an NVIDIA GPU, as its kernel driver shows it.
fn nvidia_gpu_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidia0").exists()
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
    sayln!("adapter      {}", a.name);
    sayln!("backend      {:?}", a.backend);
    sayln!("device type  {:?}", a.device_type);
    sayln!("driver       {} {}", a.driver, a.driver_info);
    if gpu.is_software() && nvidia_gpu_present() {
        eprintln!(
            "warning: an NVIDIA GPU is present, but the adapter is a software one: no Vulkan or GL \
             driver for the GPU is visible (in a container NVIDIA_DRIVER_CAPABILITIES must include \
             graphics; the Vulkan driver is libGLX_nvidia.so.0, named by an ICD file such as \
             /usr/share/vulkan/icd.d/nvidia_icd.json, and needs the glvnd libraries)"
        );
    }
    sayln!(
        "convolutions {} kernels (NEWTON_WGPU_CONV=windowed|tiled|tile4|direct8x4|... fixes one)",
        execution.conv
    );
    let tuner = Tuner::new(&gpu, TuneMode::from_env()?.unwrap_or_default(), cache_dir().as_deref());
    match tuner.file() {
        Some(file) => {
            let state = if file.is_file() { "" } else { " (not written yet)" };
            sayln!(
                "tuning     {} (NEWTON_WGPU_TUNE=off|cached|full), cache {}{state}",
                tuner.mode(),
                file.display()
            );
            sayln!("             {} cached choices for this adapter and build", tuner.choices().len());
        }
        None => sayln!("tuning     {}, no cache folder (set NEWTON_WGPU_CACHE_DIR or HOME)", tuner.mode()),
    }
    for warning in tuner.report().warnings {
        eprintln!("warning: {warning}");
    }
    sayln!("shader checks {:?} (NEWTON_WGPU_SHADER_CHECKS=all|declared|none chooses)", gpu.shader_checks());
    let why = if gpu.adapter_features().contains(wgpu::Features::SUBGROUP) {
        ""
    } else {
        " (the adapter has no subgroups)"
    };
    sayln!("workgroup sums by {}{why}", gpu.reduction());
    sayln!("limits in use:");
    sayln!("  max_storage_buffer_binding_size     {}", l.max_storage_buffer_binding_size);
    sayln!("  max_buffer_size                     {}", l.max_buffer_size);
    sayln!("  max_storage_buffers_per_shader_stage {}", l.max_storage_buffers_per_shader_stage);
    sayln!("  max_compute_workgroups_per_dimension {}", l.max_compute_workgroups_per_dimension);
    sayln!("  max_compute_invocations_per_workgroup {}", l.max_compute_invocations_per_workgroup);
    sayln!("  max_compute_workgroup_storage_size  {}", l.max_compute_workgroup_storage_size);
    sayln!("  min_uniform_buffer_offset_alignment {}", l.min_uniform_buffer_offset_alignment);
    Ok(())
}
