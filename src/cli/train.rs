//! `newton-wgpu train`: Newton-CG or SGD from the command line, with a log line per iteration
//! or epoch, JSON lines, the best model saved, and checkpoints to resume from.

use crate::sayln;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, ValueEnum};
use newton_wgpu::comm::Communicator;
use newton_wgpu::data::{Augment, Normalizer};
use newton_wgpu::gpu::{Gpu, GpuBuffer};
use newton_wgpu::loss::Loss;
use newton_wgpu::model::{BestValidation, Checkpoint, Model, TrainedOn};
use newton_wgpu::nn::Network;
use newton_wgpu::optim::cg::PreconditionerOptions;
use newton_wgpu::optim::newton::{Newton, NewtonOptions, NewtonState};
use newton_wgpu::optim::sgd::{Sgd, SgdOptions, SgdState};
use newton_wgpu::optim::sgn::{Sgn, SgnOptions, SgnState};
use newton_wgpu::optim::{Record, Run, Sets, Stepper, StopReason};
use newton_wgpu::output::{self, LineFile};
use newton_wgpu::rules;

use super::ranks::OnEveryRank;
use super::usage::{option_error, usage, Usage};
use super::ProblemArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Optim {
    Newton,
    Sgd,
    /// Stochastic Gauss-Newton on mini-batches.
    Sgn,
}

/// The main job: `newton-wgpu` with no arguments. cnn4 at a quarter of its width,
/// cross-entropy and a smaller initial damping than simpleNN's (λ0 = 0.1 takes the first
/// iterations twice as far), so that a 2-core machine with the software GPU passes 96% test
/// accuracy on the bundled sample in about 4 minutes of training (see README); everything else
/// is simpleNN's default. The model is saved in the working directory.
pub const MAIN_JOB: &[&str] =
    &["--net", "cnn4-small", "--loss", "ce", "--lambda", "0.1", "--iters", "10", "--save", MAIN_JOB_MODEL];

/// Where the main job saves its model.
pub const MAIN_JOB_MODEL: &str = "main-job.safetensors";

#[derive(Parser)]
struct MainJob {
    #[command(flatten)]
    args: TrainArgs,
}

/// The main job's arguments.
pub fn main_job() -> Box<TrainArgs> {
    sayln!("main job: newton-wgpu train {}", MAIN_JOB.join(" "));
    Box::new(MainJob::parse_from(std::iter::once("newton-wgpu").chain(MAIN_JOB.iter().copied())).args)
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    settings: Settings,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = Optim::Newton)]
    optim: Optim,
    /// Hold out this fraction of the training set (chosen by --seed) as a validation set,
    /// evaluated after every iteration or epoch.
    #[arg(long)]
    validation: Option<f64>,
    /// Save the model here (safetensors): the one with the best validation accuracy when
    /// --validation is given, else the last.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Write one JSON object per iteration or epoch to this file.
    #[arg(long)]
    log_json: Option<PathBuf>,
    /// Write θ and the optimiser state here after every iteration or epoch (atomically).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from this checkpoint (same data, network and options).
    #[arg(long)]
    resume: Option<PathBuf>,
}

/// What `train` and `compare` share: the problem, both methods' settings and the time budget.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    #[command(flatten)]
    pub problem: ProblemArgs,
    #[command(flatten)]
    pub newton: NewtonArgs,
    #[command(flatten)]
    pub sgd: SgdArgs,
    #[command(flatten)]
    pub sgn: SgnArgs,
    /// Stop after the iteration or epoch that passes this many training seconds.
    #[arg(long)]
    pub time_budget: Option<f64>,
    /// SGD and SGN: records (with the test accuracy) per epoch, evenly through it; f on the
    /// training set is evaluated at the end of each epoch.
    #[arg(long, default_value_t = 1)]
    pub evals_per_epoch: usize,
    /// crop (random, after zero padding of 4), flip (horizontal, at random; refused for data
    /// a mirror image changes, digits included), crop,flip, or none. Seeded by --seed:
    /// Newton-CG draws one augmented copy of the training set per iteration, SGD and SGN one
    /// per mini-batch.
    #[arg(long, default_value = "none")]
    pub augment: Augment,
}

impl Settings {
    /// Every setting of both methods checked, as the options name them, for `l` training
    /// samples: one pass, before anything runs.
    pub fn validate(&self, l: usize) -> Result<()> {
        self.newton_options()?.validate(l).map_err(option_error)?;
        self.sgd_options()?.validate(l).map_err(option_error)?;
        self.sgn_options()?.validate(l).map_err(option_error)
    }

    /// Across ranks every rank holds a part of each SGN mini-batch and of its S: both must
    /// have at least one member per rank (exit 2 on every rank alike, before the GPU opens).
    pub fn check_sgn_across(&self, l: usize, ranks: usize) -> Result<()> {
        let Err(newton_wgpu::Error::Setting { field, found, .. }) = self.sgn_options()?.check_ranks(l, ranks)
        else {
            return Ok(());
        };
        let option = format!("--{}", field.replace('_', "-"));
        Err(OnEveryRank::alike(format!(
            "{option}: {found} is fewer than the {ranks} ranks, each of which holds a part of every \
             SGN mini-batch and of its S: give {option} {ranks} or more, or start {found} ranks or fewer"
        ))
        .into())
    }

    /// Across `ranks` ranks each holds a part of Newton-CG's subsample S: refuses an |S|
    /// smaller than the ranks on `l` training samples, saying how to mend it (on every rank
    /// alike, before the GPU opens).
    pub fn check_subsample_across(&self, l: usize, ranks: usize) -> Result<()> {
        let options = self.newton_options()?;
        if options.check_ranks(l, ranks).is_ok() {
            return Ok(());
        }
        let size = options.gn_size_for(l);
        let limit = match self.newton.gn_size {
            // The default |S| is ⌈l/20⌉, at least the ranks from l = 20·(ranks − 1) + 1.
            None => format!(", train on at least {} samples (--limit)", 20 * (ranks - 1) + 1),
            Some(_) => String::new(),
        };
        Err(OnEveryRank::alike(format!(
            "--gn-size: |S| = {size} of {l} training samples is fewer than the {ranks} ranks, each of \
             which holds a part of S: give --gn-size {ranks} or more{limit}, or start {size} ranks \
             or fewer (mpirun -np {size})"
        ))
        .into())
    }

    fn time_budget(&self) -> Result<Option<Duration>> {
        let budget = self.time_budget.map(|s| rules::seconds("time_budget", s)).transpose();
        budget.map_err(option_error)
    }

    pub fn newton_options(&self) -> Result<NewtonOptions> {
        let options = self.newton.options(self.problem.seed, self.time_budget()?);
        Ok(NewtonOptions { augment: self.augment, ..options })
    }

    pub fn sgd_options(&self) -> Result<SgdOptions> {
        let options = self.sgd.options(self.problem.seed, self.time_budget()?);
        Ok(SgdOptions { evals_per_epoch: self.evals_per_epoch, augment: self.augment, ..options })
    }

    pub fn sgn_options(&self) -> Result<SgnOptions> {
        Ok(SgnOptions {
            epochs: self.sgd.epochs,
            batch: self.sgn.sgn_batch,
            gn_size: self.sgn.sgn_gn_size,
            cg_steps: self.sgn.sgn_cg_steps,
            xi: self.newton.xi,
            lambda: self.sgn.sgn_lambda,
            drop: self.newton.drop,
            boost: self.newton.boost,
            cg_check_every: self.newton.cg_check_every,
            cg_sums_per_product: self.newton.cg_sums_per_product,
            time_budget: self.time_budget()?,
            seed: self.problem.seed,
            evals_per_epoch: self.evals_per_epoch,
            precondition: self.newton.preconditioner(),
            augment: self.augment,
        })
    }

    /// SGN's settings in one line, as used on `l` training samples (a batch larger than the
    /// set is all of it).
    pub fn describe_sgn(&self, l: usize) -> Result<String> {
        let options = self.sgn_options()?;
        Ok(format!(
            "SGN: loss {}, C = {}, batch = {}, |S| = {}, CG steps ≤ {}, xi = {}, λ0 = {}, drop = {:.4}, boost = {}, epochs = {}{}",
            self.problem.loss,
            self.problem.c,
            options.batch_for(l),
            options.gn_size_for(l),
            self.sgn.sgn_cg_steps,
            self.newton.xi,
            self.sgn.sgn_lambda,
            self.newton.drop,
            self.newton.boost,
            self.sgd.epochs,
            self.newton.describe_preconditioner()
        ))
    }
}

/// Newton-CG's settings; the defaults are simpleNN's.
#[derive(Args, Clone, Debug)]
pub struct NewtonArgs {
    /// Newton iterations (iter_max).
    #[arg(long, default_value_t = 100)]
    pub iters: usize,
    /// Subsample size |S| for the Gauss-Newton products (default: ⌈5% of l⌉).
    #[arg(long)]
    pub gn_size: Option<usize>,
    /// CG stops when ‖r‖ ≤ xi·‖∇f‖.
    #[arg(long, default_value_t = 0.1)]
    pub xi: f64,
    /// Most CG steps per iteration.
    #[arg(long, default_value_t = 250)]
    pub cg_max: usize,
    /// Initial Levenberg-Marquardt damping λ.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// λ ← λ·drop when the step predicted well (ρ ≥ 0.75).
    #[arg(long, default_value_t = 2.0 / 3.0)]
    pub drop: f64,
    /// λ ← λ·boost when it predicted badly (ρ < 0.25) or the line search failed.
    #[arg(long, default_value_t = 1.5)]
    pub boost: f64,
    /// Armijo constant of the line search.
    #[arg(long, default_value_t = 1e-4)]
    pub eta: f64,
    /// Read the CG residual back every this many CG steps (CG stops on the device by itself;
    /// this is how soon the host notices).
    #[arg(long, default_value_t = 4)]
    pub cg_check_every: usize,
    /// Across ranks, the most pieces a CG step's product is summed in, each summed while the
    /// device computes the next (cut where the backward pass finishes a layer; 1: the whole
    /// product once it is done).
    #[arg(long, default_value_t = newton_wgpu::optim::cg::DEFAULT_SUMS_PER_PRODUCT)]
    pub cg_sums_per_product: usize,
    /// Stop once ‖∇f‖ falls to this.
    #[arg(long)]
    pub grad_tol: Option<f64>,
    /// Precondition CG (Newton-CG and SGN) with M = (diag(G_S) + λ + 1/(C·l))^0.75, diag(G_S)
    /// estimated from random sign probes before every solve.
    #[arg(long)]
    pub precondition: bool,
    /// Probes of diag(G_S) per solve with --precondition (one product each).
    #[arg(long, default_value_t = PreconditionerOptions::default().probes)]
    pub probes: usize,
}

/// SGN's own settings (it shares --epochs with SGD, and --xi, --drop, --boost,
/// --cg-check-every, --precondition and --probes with Newton-CG).
#[derive(Args, Clone, Debug)]
pub struct SgnArgs {
    /// SGN mini-batch size, which is also its Gauss-Newton subsample.
    #[arg(long, default_value_t = SgnOptions::default().batch)]
    pub sgn_batch: usize,
    /// SGN's Gauss-Newton subsample: the first N of each mini-batch (default: ⌈10% of it⌉).
    #[arg(long)]
    pub sgn_gn_size: Option<usize>,
    /// Most CG steps per SGN step.
    #[arg(long, default_value_t = SgnOptions::default().cg_steps)]
    pub sgn_cg_steps: usize,
    /// SGN's initial Levenberg-Marquardt damping λ.
    #[arg(long, default_value_t = SgnOptions::default().lambda)]
    pub sgn_lambda: f64,
}

/// SGD's settings; the defaults are simpleNN's.
#[derive(Args, Clone, Debug)]
pub struct SgdArgs {
    /// SGD and SGN epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// SGD learning rate lr0.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// SGD momentum μ.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// SGD learning-rate decay: lr = lr0/(1 + decay·step).
    #[arg(long, default_value_t = 0.0)]
    pub decay: f64,
    /// SGD mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
}

impl NewtonArgs {
    /// The preconditioner --precondition and --probes ask for.
    pub fn preconditioner(&self) -> Option<PreconditionerOptions> {
        self.precondition.then(|| PreconditionerOptions { probes: self.probes, ..Default::default() })
    }

    pub fn options(&self, seed: u64, time_budget: Option<Duration>) -> NewtonOptions {
        NewtonOptions {
            gn_size: self.gn_size,
            iter_max: self.iters,
            xi: self.xi,
            cg_max: self.cg_max,
            lambda: self.lambda,
            drop: self.drop,
            boost: self.boost,
            eta: self.eta,
            max_halvings: 20,
            cg_check_every: self.cg_check_every,
            cg_sums_per_product: self.cg_sums_per_product,
            grad_tol: self.grad_tol,
            time_budget,
            seed,
            precondition: self.preconditioner(),
            augment: Augment::NONE,
        }
    }

    /// The settings in one line, with |S| as the solver resolved it.
    pub fn describe(&self, problem: &ProblemArgs, gn_size: usize) -> String {
        format!(
            "Newton-CG: loss {}, C = {}, |S| = {gn_size}, xi = {}, CGmax = {}, λ0 = {}, drop = {:.4}, boost = {}, eta = {}, iterations = {}{}",
            problem.loss, problem.c, self.xi, self.cg_max, self.lambda, self.drop, self.boost, self.eta, self.iters,
            self.describe_preconditioner()
        )
    }

    /// ", CG preconditioned by diag(G_S) from 2 probes per solve", or nothing.
    pub fn describe_preconditioner(&self) -> String {
        match self.preconditioner() {
            Some(pc) => format!(", CG preconditioned by diag(G_S) from {} probes per solve", pc.probes),
            None => String::new(),
        }
    }
}

impl SgdArgs {
    pub fn options(&self, seed: u64, time_budget: Option<Duration>) -> SgdOptions {
        SgdOptions {
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            decay: self.decay,
            time_budget,
            seed,
            evals_per_epoch: 1,
            augment: Augment::NONE,
        }
    }

    /// The settings in one line, as used on `l` training samples (a batch larger than the set
    /// is all of it).
    pub fn describe(&self, problem: &ProblemArgs, l: usize) -> String {
        format!(
            "SGD: loss {}, C = {}, lr = {}, momentum = {}, decay = {}, batch = {}, epochs = {}",
            problem.loss,
            problem.c,
            self.lr,
            self.momentum,
            self.decay,
            self.batch.min(l),
            self.epochs
        )
    }
}

/// Writes the log lines and the JSON lines.
struct Reporter {
    json: Option<LineFile>,
}

impl Reporter {
    fn new(args: &TrainArgs) -> Result<Self> {
        let json = match &args.log_json {
            // A resumed run continues its log; a new one replaces what is there.
            Some(path) if args.resume.is_some() => Some(LineFile::append(path)?),
            Some(path) => Some(LineFile::create(path)?),
            None => None,
        };
        Ok(Self { json })
    }

    fn report(&mut self, record: &Record) -> Result<()> {
        let acc = |a: Option<f64>| a.map_or("-".to_owned(), |a| format!("{:.2}%", 100.0 * a));
        let val = |a: Option<f64>| a.map_or(String::new(), |a| format!(" {:>8.2}%", 100.0 * a));
        let or_dash = |v: Option<f64>, show: fn(f64) -> String| v.map_or("-".to_owned(), show);
        match record {
            Record::Newton(r) => sayln!(
                "{:>4} {:>12.6} {:>11} {:>9.4} {:>8.3} {:>10.4e} {:>5} {:>8.1} {:>8}{}{}",
                r.iter,
                r.f,
                or_dash(r.grad_norm, |g| format!("{g:.4e}")),
                r.alpha,
                r.rho,
                r.lambda,
                r.cg_iters,
                r.elapsed_s,
                acc(r.test_acc),
                val(r.val_acc),
                if r.accepted { "" } else { "  (line search failed: no step, λ raised)" }
            ),
            Record::Epoch(r) => match (r.lambda, r.cg_iters) {
                (Some(lambda), Some(cg)) => sayln!(
                    "{:>5} {:>6} {:>12} {:>12} {:>10.4e} {:>5} {:>4} {:>8.1} {:>8}{}",
                    r.epoch,
                    r.step,
                    or_dash(r.f, |f| format!("{f:.6}")),
                    or_dash(r.running_loss, |l| format!("{l:.6}")),
                    lambda,
                    cg,
                    r.rejected.unwrap_or(0),
                    r.elapsed_s,
                    acc(r.test_acc),
                    val(r.val_acc)
                ),
                _ => sayln!(
                    "{:>5} {:>6} {:>12} {:>12} {:>8.1} {:>8}{}",
                    r.epoch,
                    r.step,
                    or_dash(r.f, |f| format!("{f:.6}")),
                    or_dash(r.running_loss, |l| format!("{l:.6}")),
                    r.elapsed_s,
                    acc(r.test_acc),
                    val(r.val_acc)
                ),
            },
        }
        if let Some(file) = &mut self.json {
            file.push(&serde_json::to_string(record)?)?;
        }
        Ok(())
    }
}

/// A progress bar over the chunks of one evaluation, drawn afresh for each evaluation and
/// cleared when it ends.
fn progress_bar(message: &'static str) -> Box<dyn FnMut(usize, usize)> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    Box::new(move |done, total| {
        let current = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks, {elapsed}")
                    .expect("a valid template"),
            );
            bar.set_message(message);
            bar
        });
        current.set_position(done as u64);
        if done >= total {
            current.finish_and_clear();
            bar = None;
        }
    })
}

fn model_of(
    gpu: &Gpu,
    network: &Network,
    theta: &GpuBuffer<f32>,
    normalizer: &Normalizer,
    loss: Loss,
) -> Result<Model> {
    Ok(Model {
        network: network.clone(),
        theta: gpu.read(theta)?,
        normalizer: Some(normalizer.clone()),
        loss,
    })
}

impl TrainArgs {
    /// Every file this run will write, with the option that names it.
    fn outputs(&self) -> Vec<(&'static str, &Path)> {
        let named =
            [("--save", &self.save), ("--log-json", &self.log_json), ("--checkpoint", &self.checkpoint)];
        named.into_iter().filter_map(|(option, path)| path.as_deref().map(|p| (option, p))).collect()
    }
}

/// "10 iterations", "1 epoch", "3 epochs and 20 steps": what a run has done by `record`.
fn steps_done(record: &Record, batches_per_epoch: usize) -> String {
    let plural = |n: usize, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match record {
        Record::Newton(r) => plural(r.iter, "iteration"),
        Record::Epoch(r) if r.f.is_some() => plural(r.epoch, "epoch"),
        Record::Epoch(r) => {
            let steps = r.step - r.epoch * batches_per_epoch;
            format!("{} and {}", plural(r.epoch, "epoch"), plural(steps, "step"))
        }
    }
}

/// A checkpoint continues only the problem it was trained on: the same loss, C and training
/// samples, normalised alike (the architecture was checked as it loaded), by the same
/// optimiser counting its steps in the same mini-batches (where the checkpoint records them).
fn check_resumable(
    path: &Path,
    checkpoint: &Checkpoint,
    loss: Loss,
    now: &TrainedOn,
    now_standardized: bool,
) -> Result<()> {
    let standardized = |model: &Model| model.normalizer.as_ref().is_some_and(Normalizer::is_standard);
    let then = &checkpoint.trained_on;
    let limit = |l: Option<usize>| l.map_or("no --limit".to_owned(), |l| format!("--limit {l}"));
    let batch_option = if now.optimizer.as_deref() == Some("sgn") { "--sgn-batch" } else { "--batch" };
    let differs = if then.optimizer.is_some() && then.optimizer != now.optimizer {
        let name = |o: &Option<String>| o.clone().unwrap_or_default();
        Some(format!("--optim {}, this run --optim {}", name(&then.optimizer), name(&now.optimizer)))
    } else if then.batch.is_some() && then.batch != now.batch {
        let size = |b: Option<usize>| b.map_or("none".to_owned(), |b| b.to_string());
        Some(format!(
            "{batch_option} {} (as used), this run {batch_option} {} (its steps and epochs count \
             mini-batches of that size)",
            size(then.batch),
            size(now.batch)
        ))
    } else if then.augment.is_some() && then.augment != now.augment {
        let name = |a: &Option<String>| a.clone().unwrap_or_default();
        Some(format!("--augment {}, this run --augment {}", name(&then.augment), name(&now.augment)))
    } else if standardized(&checkpoint.model) != now_standardized {
        let name = |on: bool| if on { "--standardize" } else { "no --standardize" };
        Some(format!("{}, this run {}", name(standardized(&checkpoint.model)), name(now_standardized)))
    } else if checkpoint.model.loss != loss {
        Some(format!("--loss {}, this run --loss {loss}", checkpoint.model.loss))
    } else if then.c != now.c {
        Some(format!("--c {}, this run --c {}", then.c, now.c))
    } else if then.limit != now.limit {
        Some(format!("{}, this run {}", limit(then.limit), limit(now.limit)))
    } else if then.samples != now.samples {
        Some(format!(
            "{} training samples, this run {} (another data set or --validation)",
            then.samples, now.samples
        ))
    } else {
        None
    };
    match differs {
        Some(what) => Err(anyhow::Error::new(super::usage::Usage(format!(
            "--resume {}: the checkpoint was trained with {what}: resume with its settings, or start afresh",
            path.display()
        )))),
        None => Ok(()),
    }
}

/// A failure injected for the tests of a job across ranks: NEWTON_WGPU_FAIL_AT=RANK:EPOCH makes
/// that rank fail as that SGD epoch ends; RANK:EPOCH:crash makes its process die there
/// (SIGABRT), as a killed one would, without a word to the other ranks.
fn injected_failure(rank: usize, epoch: usize) -> Result<()> {
    let wanted = std::env::var("NEWTON_WGPU_FAIL_AT").unwrap_or_default();
    let here = format!("{rank}:{epoch}");
    if wanted == format!("{here}:crash") {
        std::process::abort();
    }
    if wanted == here {
        bail!("a failure injected by NEWTON_WGPU_FAIL_AT at epoch {epoch}");
    }
    Ok(())
}

/// Reads a checkpoint on rank 0 and sends it to every rank (one process: just reads it); rank
/// 0 warns of a file without checksums.
fn read_checkpoint(path: &Path, network: &Network, comm: &dyn Communicator) -> Result<Checkpoint> {
    let mut bytes = Vec::new();
    if comm.rank() == 0 {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    if comm.size() > 1 {
        comm.broadcast(&mut bytes)?;
    }
    let loaded = Checkpoint::from_bytes_for(path, &bytes, network)?;
    if let Some(warning) = loaded.warning.filter(|_| comm.rank() == 0) {
        eprintln!("warning: {warning}");
    }
    Ok(loaded.value)
}

pub fn run(args: &TrainArgs, ranks: &super::ranks::Ranks) -> Result<()> {
    let started = std::time::Instant::now();
    let comm = ranks.comm();
    // Across ranks, rank 0 alone prints and writes files.
    let writes = comm.rank() == 0;
    if writes {
        let mut files = Vec::new();
        for (option, path) in args.outputs() {
            files.push((option, usage(output::check_writable(path), option)?));
        }
        if let Some((first, second, file)) = output::same_file(&files) {
            let message = format!(
                "{first} and {second} both name {}: each output needs a file of its own (one would \
                 overwrite the other)",
                file.display()
            );
            return Err(Usage(message).into());
        }
    }
    args.settings.problem.validate()?;
    if let Some(fraction) = args.validation {
        rules::open_unit("validation", fraction).map_err(option_error)?;
    }
    // This rank's shards of the sets (the whole sets for one process).
    let super::Loaded { split, normalizer, problem, train_total: total } =
        args.settings.problem.load(args.validation, ranks)?;
    args.settings.validate(total)?;
    match args.optim {
        Optim::Newton => args.settings.check_subsample_across(total, comm.size())?,
        Optim::Sgn if comm.size() > 1 => args.settings.check_sgn_across(total, comm.size())?,
        _ => {}
    }
    let (train, test, validation) = (&split.train, &split.test, split.validation.as_ref());
    let network = &problem.network;
    // A checkpoint is read, and checked against this run, before the GPU is opened.
    let (optimizer, batch) = match args.optim {
        Optim::Newton => ("newton", None),
        Optim::Sgd => ("sgd", Some(args.settings.sgd.batch.min(total))),
        Optim::Sgn => ("sgn", Some(args.settings.sgn_options()?.batch_for(total))),
    };
    let mut trained_on = TrainedOn {
        c: problem.c,
        samples: total,
        limit: args.settings.problem.limit,
        optimizer: Some(optimizer.into()),
        batch,
        best_validation: None,
        augment: Some(args.settings.augment.to_string()),
    };
    let mut theta_host = network.init_params(args.settings.problem.seed);
    let mut resumed = None;
    // A fresh run reports θ0 first (iteration or epoch 0); a resumed one continues its log.
    let fresh = args.resume.is_none();
    if let Some(path) = &args.resume {
        let checkpoint = read_checkpoint(path, network, comm)?;
        check_resumable(path, &checkpoint, problem.loss, &trained_on, normalizer.is_standard())?;
        // The best model so far is kept unless this run finds a better one.
        trained_on.best_validation = checkpoint.trained_on.best_validation;
        theta_host = checkpoint.model.theta;
        resumed = Some((checkpoint.state, checkpoint.velocity, path));
    }
    let gpu = Gpu::new()?;
    problem.check_fits(&gpu)?;
    let tuner = args.settings.problem.tuner(&gpu, ranks)?;
    let execution = args.settings.problem.execution(&gpu, &tuner)?;
    super::announce(&execution, &problem.network, execution.bsize)?;
    let theta = gpu.upload(&theta_host, "θ")?;
    let mut reporter = if writes { Reporter::new(args)? } else { Reporter { json: None } };
    let model = || model_of(&gpu, network, &theta, &normalizer, problem.loss);
    let mut last: Option<Record> = None;
    // The best model is saved before the checkpoint that records it, so that a resumed run
    // never counts as saved a model that is not.
    // The optimiser's state (SGD's velocity read from the device) only where a checkpoint is
    // written.
    let mut finish = |record: &Record, stepper: &dyn Stepper| -> Result<()> {
        reporter.report(record)?;
        last = Some(record.clone());
        if !writes {
            return Ok(());
        }
        if let Some(accuracy) = record.val_acc() {
            if trained_on.best_validation.as_ref().is_none_or(|best| accuracy > best.accuracy) {
                trained_on.best_validation = Some(BestValidation { accuracy, after: record.label() });
                if let Some(path) = &args.save {
                    model()?.save(path)?;
                }
            }
        }
        if let Some(path) = &args.checkpoint {
            let (state, velocity) = (stepper.state_json(), stepper.velocity()?);
            Checkpoint { model: model()?, state, velocity, trained_on: trained_on.clone() }.save(path)?;
        }
        Ok(())
    };
    let validation_header = if validation.is_some() { "   val acc" } else { "" };
    // For the summary of a run that ends inside an epoch.
    let mut batches_per_epoch = 0;

    // Each optimiser made, resumed and described; then one loop for all (optim::Run).
    let mut stepper: Box<dyn Stepper> = match args.optim {
        Optim::Newton => {
            let options = args.settings.newton_options()?;
            // Newton-CG draws each S by position in the whole training set, each rank
            // computing its part of it; f and ∇f are summed over the ranks' shards.
            let mut newton =
                Newton::across(&execution, &problem, comm, train, total, &options).map_err(option_error)?;
            if std::io::stdout().is_terminal() {
                newton.set_progress(Some(progress_bar("evaluating f and ∇f")));
            }
            if let Some((state, _, path)) = resumed {
                let state = serde_json::from_str::<NewtonState>(&state)
                    .with_context(|| format!("{}: the checkpoint's Newton state", path.display()))?;
                newton.resume(state).with_context(|| format!("resuming from {}", path.display()))?;
                sayln!("resumed from {} after iteration {}", path.display(), newton.state.iteration);
            }
            sayln!("{}", args.settings.newton.describe(&args.settings.problem, newton.gn_size()));
            sayln!(
                "iter  f after step        ‖∇f‖     alpha      rho     lambda    CG  seconds  test acc{validation_header}"
            );
            Box::new(newton)
        }
        Optim::Sgd => {
            let options = args.settings.sgd_options()?;
            let mut sgd =
                Sgd::across(&execution, &problem, comm, train, total, &options).map_err(option_error)?;
            batches_per_epoch = sgd.batches_per_epoch();
            if std::io::stdout().is_terminal() {
                sgd.set_progress(Some(progress_bar("evaluating f")));
            }
            if let Some((state, velocity, path)) = resumed {
                let state = serde_json::from_str::<SgdState>(&state)
                    .with_context(|| format!("{}: the checkpoint's SGD state", path.display()))?;
                let Some(velocity) = velocity else {
                    bail!(
                        "{}: the checkpoint has no SGD velocity: was it written by Newton-CG?",
                        path.display()
                    )
                };
                sgd.resume(state, &velocity).with_context(|| format!("resuming from {}", path.display()))?;
                sayln!("resumed from {} after epoch {}", path.display(), sgd.state.epoch);
            }
            sayln!("{}", args.settings.sgd.describe(&args.settings.problem, total));
            sayln!("epoch   step            f  running loss  seconds  test acc{validation_header}");
            Box::new(sgd)
        }
        Optim::Sgn => {
            let options = args.settings.sgn_options()?;
            // SGN draws each mini-batch by position in the whole training set, every rank
            // computing over its part; f is summed over the ranks' shards.
            let mut sgn =
                Sgn::across(&execution, &problem, comm, train, total, &options).map_err(option_error)?;
            batches_per_epoch = sgn.batches_per_epoch();
            if std::io::stdout().is_terminal() {
                sgn.set_progress(Some(progress_bar("evaluating f")));
            }
            if let Some((state, _, path)) = resumed {
                let state = serde_json::from_str::<SgnState>(&state)
                    .with_context(|| format!("{}: the checkpoint's SGN state", path.display()))?;
                sgn.resume(state).with_context(|| format!("resuming from {}", path.display()))?;
                sayln!("resumed from {} after step {}", path.display(), sgn.state.step);
            }
            sayln!("{}", args.settings.describe_sgn(total)?);
            sayln!(
                "epoch   step            f  running loss     lambda    CG  rej  seconds  test acc{validation_header}"
            );
            Box::new(sgn)
        }
    };
    let sets = Sets { train, test: Some(test), validation };
    let mut run = Run::new(stepper.as_mut(), sets, &theta, fresh);
    while let Some(record) = run.next_record()? {
        if let Record::Epoch(epoch) = &record {
            injected_failure(comm.rank(), epoch.epoch)?;
        }
        finish(&record, run.stepper())?;
    }
    if run.ending() == Some(StopReason::GradTol) {
        sayln!("‖∇f‖ is within --grad-tol: stopping");
    }
    if let Some(path) = args.save.as_ref().filter(|_| writes) {
        match trained_on.best_validation.as_ref().filter(|_| validation.is_some()) {
            // Resumed, and nothing beat the checkpoint's best, which another path holds.
            Some(best) if !path.exists() => eprintln!(
                "warning: no model saved to {}: no validation accuracy of this run passed the \
                 checkpoint's best, {:.2}% (after {}), which the run that reached it saved",
                path.display(),
                100.0 * best.accuracy,
                best.after
            ),
            Some(best) => sayln!(
                "saved the model with the best validation accuracy, {:.2}% (after {}), to {}",
                100.0 * best.accuracy,
                best.after,
                path.display()
            ),
            None => {
                model()?.save(path)?;
                sayln!("saved the model to {}", path.display());
            }
        }
        sayln!("score it again with: newton-wgpu predict --model {}", path.display());
    }
    if let Some(last) = last {
        let accuracy = last.test_acc().map_or("-".to_owned(), |a| format!("{:.2}%", 100.0 * a));
        sayln!(
            "done: test accuracy {accuracy} after {}, {:.1} s of training, {:.1} s in all",
            steps_done(&last, batches_per_epoch),
            last.elapsed_s(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
