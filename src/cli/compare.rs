//! `newton-wgpu compare`: any set of Newton-CG, SGN and SGD (each second-order method with or
//! without the preconditioner) on the same data, network, loss, C and seed, on one adapter,
//! side by side. The report folder gets each run's JSON lines (as `train --log-json` writes
//! them, line by line, so an interrupted comparison keeps what finished), a CSV of every
//! record, charts of test accuracy and f against training seconds (SVG and PNG), and the
//! summary table that is also printed. `--tune-sgd S` first runs SGD over lr ∈ {0.003, 0.01,
//! 0.03, 0.1} × momentum ∈ {0, 0.9} for S training seconds each and races the best of them.
//!
//! `--sweep` is the robustness study of Wang, Tan and Lin: Newton-CG over C ∈ {0.01, 0.1, 1}
//! × |S| ∈ {1%, 5%, 10%} of l, SGN over its batch × CG steps, SGD over lr ∈ {0.001, 0.003,
//! 0.01, 0.03, 0.1}, with each run's final accuracy, the spread (max − min) for each method,
//! and a chart.

use crate::{say, sayln};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use newton_wgpu::comm::Communicator;
use newton_wgpu::data::Dataset;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::optim::{newton, sgd, sgn, Record};
use newton_wgpu::output::{self, LineFile};
use newton_wgpu::rules;
use newton_wgpu::{Execution, Problem};

use plotters::chart::SeriesLabelPosition;

use super::plot::{self, BarChart, Chart, LineChart, Scale, Series};
use super::train::{NewtonArgs, Settings, SgdArgs, SgnArgs};
use super::usage::{option_error, usage, Usage};
use super::{Loaded, ProblemArgs};

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    settings: Settings,
    /// The report folder (created if needed; its files are replaced).
    #[arg(long, default_value = "compare-report")]
    out: PathBuf,
    /// The methods to race, in order: newton, newton-pcg, sgn, sgn-pcg, sgd (-pcg:
    /// preconditioned CG); with --sweep, the methods whose grids are swept [default:
    /// newton,sgd; with --sweep newton,sgn,sgd].
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<MethodName>>,
    /// The summary gives each method's training seconds to reach these test accuracies.
    #[arg(long, value_delimiter = ',', default_value = "0.95")]
    target: Vec<f64>,
    /// Tune SGD first: lr ∈ {0.003, 0.01, 0.03, 0.1} × momentum ∈ {0, 0.9}, each for this
    /// many training seconds; the race's SGD takes the best (the first to reach the first
    /// target, else the most accurate).
    #[arg(long)]
    tune_sgd: Option<f64>,
    /// Run the robustness sweep instead of one run of each method.
    #[arg(long)]
    sweep: bool,
}

impl CompareArgs {
    /// The methods --methods names, or the default of a race or of the sweep.
    fn methods(&self) -> Vec<MethodName> {
        let default: &[MethodName] = if self.sweep {
            &[MethodName::Newton, MethodName::Sgn, MethodName::Sgd]
        } else {
            &[MethodName::Newton, MethodName::Sgd]
        };
        self.methods.clone().unwrap_or_else(|| default.to_vec())
    }
}

/// A method as `--methods` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MethodName {
    Newton,
    NewtonPcg,
    Sgn,
    SgnPcg,
    Sgd,
}

/// The report's table and its CSV of every record.
const SUMMARY: &str = "summary.txt";
const RECORDS: &str = "records.csv";

/// Newton-CG's sweep: C × |S| as a fraction of l.
const SWEEP_C: [f64; 3] = [0.01, 0.1, 1.0];
const SWEEP_GN_FRACTION: [f64; 3] = [0.01, 0.05, 0.10];
/// SGN's sweep: the mini-batch × the CG steps per step.
const SWEEP_SGN_BATCH: [usize; 3] = [250, 500, 1000];
const SWEEP_SGN_CG: [usize; 2] = [5, 20];
/// SGD's sweep: the initial learning rate.
const SWEEP_LR: [f64; 5] = [0.001, 0.003, 0.01, 0.03, 0.1];
/// SGD's tuning grid: the learning rate × the momentum, batch 128.
const TUNE_LR: [f64; 4] = [0.003, 0.01, 0.03, 0.1];
const TUNE_MOMENTUM: [f64; 2] = [0.0, 0.9];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Newton,
    Sgn,
    Sgd,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Newton => "Newton-CG",
            Method::Sgn => "SGN",
            Method::Sgd => "SGD",
        }
    }
}

/// One training run to make: a method with its settings.
struct Run {
    method: Method,
    /// A name for files, e.g. "newton" or "sgd-lr0.01".
    name: String,
    /// A name for tables and legends, e.g. "Newton-CG, preconditioned" or "SGD lr 0.03 μ 0.9".
    label: String,
    color: plotters::style::RGBColor,
    settings: Settings,
}

impl Run {
    /// A run of `name` with `settings` (--precondition set by the name).
    fn of(name: MethodName, settings: &Settings) -> Self {
        let mut settings = settings.clone();
        settings.newton.precondition = matches!(name, MethodName::NewtonPcg | MethodName::SgnPcg);
        let (method, file, label, color) = match name {
            MethodName::Newton => (Method::Newton, "newton", "Newton-CG", plot::NEWTON),
            MethodName::NewtonPcg => {
                (Method::Newton, "newton-pcg", "Newton-CG, preconditioned", plot::NEWTON_PCG)
            }
            MethodName::Sgn => (Method::Sgn, "sgn", "SGN", plot::SGN),
            MethodName::SgnPcg => (Method::Sgn, "sgn-pcg", "SGN, preconditioned", plot::SGN_PCG),
            MethodName::Sgd => (Method::Sgd, "sgd", "SGD", plot::SGD),
        };
        Self { method, name: file.to_owned(), label: label.to_owned(), color, settings }
    }

    /// The run's settings in one line, as used on `l` training samples.
    fn describe(&self, l: usize) -> Result<String> {
        let settings = &self.settings;
        Ok(match self.method {
            Method::Newton => {
                settings.newton.describe(&settings.problem, settings.newton_options()?.gn_size_for(l))
            }
            Method::Sgn => settings.describe_sgn(l)?,
            Method::Sgd => settings.sgd.describe(&settings.problem, l),
        })
    }
}

/// What a run left: its records, and whether it diverged before its last one.
struct Outcome {
    records: Vec<Record>,
    diverged: bool,
}

impl Outcome {
    fn final_acc(&self) -> Option<f64> {
        self.records.last().and_then(Record::test_acc)
    }

    fn best_acc(&self) -> Option<f64> {
        self.records.iter().filter_map(Record::test_acc).reduce(f64::max)
    }

    /// Training seconds until the test accuracy first reached `target`.
    fn time_to(&self, target: f64) -> Option<f64> {
        self.records.iter().find(|r| r.test_acc().is_some_and(|a| a >= target)).map(Record::elapsed_s)
    }

    fn seconds(&self) -> f64 {
        self.records.last().map_or(0.0, Record::elapsed_s)
    }
}

/// The sets a run trains and scores on: this rank's shards of the training and test sets
/// (the whole sets for one process), and the training set's size over every rank.
struct Sets<'d> {
    train: &'d Dataset,
    total: usize,
    test: &'d Dataset,
}

pub fn run(args: &CompareArgs, ranks: &super::ranks::Ranks) -> Result<()> {
    let comm = ranks.comm();
    // Across ranks, rank 0 alone writes the report.
    let writes = comm.rank() == 0;
    for &target in &args.target {
        rules::unit_to_one("target", target).map_err(option_error)?;
    }
    if let Some(seconds) = args.tune_sgd {
        rules::seconds("tune_sgd", seconds).map_err(option_error)?;
        if args.sweep {
            return Err(Usage(
                "--tune-sgd: the sweep runs SGD over its own grid of learning rates; leave \
                 --tune-sgd out, or race the methods without --sweep"
                    .into(),
            )
            .into());
        }
    }
    let methods = args.methods();
    if methods.is_empty() {
        return Err(
            Usage("--methods: name at least one of newton, newton-pcg, sgn, sgn-pcg, sgd".into()).into()
        );
    }
    if let Some(twice) = methods.iter().enumerate().find_map(|(i, m)| methods[..i].contains(m).then_some(m)) {
        let name =
            clap::ValueEnum::to_possible_value(twice).map_or(String::new(), |v| v.get_name().to_owned());
        return Err(Usage(format!("--methods: {name} is named twice; each method runs once")).into());
    }
    args.settings.problem.validate()?;
    let Loaded { split, problem, train_total: total, .. } = args.settings.problem.load(None, ranks)?;
    let tuning = match args.tune_sgd {
        Some(seconds) => tuning_runs(args, seconds),
        None => Vec::new(),
    };
    let mut runs = if args.sweep {
        sayln!("the sweep sets C, --gn-size, --sgn-batch, --sgn-cg-steps and --lr itself; the other options apply to every run");
        sweep_runs(args, &methods, total)
    } else {
        methods.iter().map(|&name| Run::of(name, &args.settings)).collect()
    };
    // Every run's settings, before the first runs.
    for run in runs.iter().chain(&tuning) {
        run.settings.validate(total).with_context(|| format!("run {}", run.name))?;
        match run.method {
            Method::Newton => run.settings.check_subsample_across(total, comm.size())?,
            Method::Sgn if comm.size() > 1 => run.settings.check_sgn_across(total, comm.size())?,
            _ => {}
        }
    }
    if writes {
        report_folder(&args.out)?;
        for path in report_files(args, runs.iter().chain(&tuning)) {
            usage(output::check_writable(&path), "--out")?;
        }
    }
    let sets = Sets { train: &split.train, total, test: &split.test };
    let gpu = Gpu::new()?;
    problem.check_fits(&gpu)?;
    let tuner = args.settings.problem.tuner(&gpu, ranks)?;
    let execution = args.settings.problem.execution(&gpu, &tuner)?;
    super::announce(&execution, &problem.network, execution.bsize)?;
    sayln!("{} runs; the report goes to {}", runs.len() + tuning.len(), args.out.display());

    let progress = Progress::new(runs.len() + tuning.len());
    let mut tuned = Vec::new();
    for run in &tuning {
        tuned.push(train(&execution, &problem, comm, &sets, run, args, &progress)?);
        progress.finish_run();
    }
    if let Some(best) = best_sgd(&tuned, args.target[0]) {
        let chosen = &tuning[best].settings.sgd;
        progress.println(format!(
            "SGD tuned: {} is the best of {} settings",
            tuning[best].label,
            tuning.len()
        ));
        for run in runs.iter_mut().filter(|run| run.method == Method::Sgd) {
            run.settings.sgd =
                SgdArgs { lr: chosen.lr, momentum: chosen.momentum, ..run.settings.sgd.clone() };
            run.label = format!("SGD, tuned: {}", sgd_label(&run.settings.sgd));
        }
    }
    let mut outcomes = Vec::new();
    for run in &runs {
        let outcome = train(&execution, &problem, comm, &sets, run, args, &progress)?;
        outcomes.push(outcome);
        if writes {
            let all: Vec<&Run> = tuning.iter().chain(&runs).collect();
            let done: Vec<&Outcome> = tuned.iter().chain(&outcomes).collect();
            write_csv(&args.out.join(RECORDS), &all, &done)?;
        }
        progress.finish_run();
    }
    progress.clear();
    if !writes {
        return Ok(());
    }

    let charts = if args.sweep {
        let table = sweep_table(&runs, &outcomes);
        say!("{table}");
        output::write(&args.out.join(SUMMARY), table.as_bytes())?;
        sweep_charts(&args.out, &runs, &outcomes)?
    } else {
        let mut table = race_table(&runs, &outcomes, &args.target);
        if !tuning.is_empty() {
            table.push_str(&format!(
                "\nSGD's tuning, {} training seconds each:{}",
                args.tune_sgd.unwrap_or_default(),
                race_table(&tuning, &tuned, &args.target)
            ));
        }
        say!("{table}");
        output::write(&args.out.join(SUMMARY), table.as_bytes())?;
        pair_charts(&args.out, &runs, &outcomes, args.settings.problem.loss.to_string())?
    };
    for path in charts {
        sayln!("wrote {}", path.display());
    }
    Ok(())
}

/// Every file of the report, so that each can be checked before the first run.
fn report_files<'r>(args: &CompareArgs, runs: impl Iterator<Item = &'r Run>) -> Vec<PathBuf> {
    let charts: &[&str] = if args.sweep { &["sweep", "sweep-curves"] } else { &["accuracy", "objective"] };
    let mut files: Vec<PathBuf> = runs.map(|run| args.out.join(format!("{}.jsonl", run.name))).collect();
    files.extend([RECORDS, SUMMARY].map(|name| args.out.join(name)));
    for chart in charts {
        files.extend(["svg", "png"].map(|ext| args.out.join(chart).with_extension(ext)));
    }
    files
}

fn sgd_label(sgd: &SgdArgs) -> String {
    format!("lr {} μ {}", sgd.lr, sgd.momentum)
}

/// SGD over the tuning grid, each for `seconds` of training.
fn tuning_runs(args: &CompareArgs, seconds: f64) -> Vec<Run> {
    let mut runs = Vec::new();
    for momentum in TUNE_MOMENTUM {
        for lr in TUNE_LR {
            let sgd = SgdArgs { lr, momentum, ..args.settings.sgd.clone() };
            let label = format!("SGD {}", sgd_label(&sgd));
            runs.push(Run {
                method: Method::Sgd,
                name: format!("tune-sgd-lr{lr}-m{momentum}"),
                label,
                color: plot::SGD_TUNING,
                settings: Settings { sgd, time_budget: Some(seconds), ..args.settings.clone() },
            });
        }
    }
    runs
}

/// The tuning run to race: the first to reach `target`, else the most accurate at the end;
/// runs that diverged are out.
fn best_sgd(outcomes: &[Outcome], target: f64) -> Option<usize> {
    let candidates = || outcomes.iter().enumerate().filter(|(_, o)| !o.diverged);
    let fastest = candidates()
        .filter_map(|(i, o)| o.time_to(target).map(|t| (i, t)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    fastest.or_else(|| {
        candidates().max_by(|a, b| final_or_chance(a.1).total_cmp(&final_or_chance(b.1))).map(|(i, _)| i)
    })
}

/// Makes the report folder `out` unless it is one already: a path that is something else, or
/// a symbolic link that leads nowhere (dangling, or a loop), is refused saying so.
fn report_folder(out: &Path) -> Result<()> {
    let is_link = std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink());
    match std::fs::metadata(out) {
        Ok(found) if found.is_dir() => return Ok(()),
        Ok(_) => return Err(Usage(format!("--out: {} is not a folder", out.display())).into()),
        Err(error) if is_link => {
            let target = std::fs::read_link(out).map_or("?".into(), |t| t.display().to_string());
            return Err(Usage(format!(
                "--out: {} is a symbolic link to {target}, which leads to no folder ({error}): \
                 create the folder it names, or give another --out",
                out.display()
            ))
            .into());
        }
        Err(_) => {}
    }
    usage(std::fs::create_dir_all(out), &format!("--out: creating {}", out.display()))
}

/// The sweep's runs: each of `methods`' grid in turn (a -pcg name sweeps its method's grid
/// with CG preconditioned), labelled by the settings each run uses on `train_len` samples.
fn sweep_runs(args: &CompareArgs, methods: &[MethodName], train_len: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    for &name in methods {
        let Run { method, name: base, color, settings: method_settings, .. } = Run::of(name, &args.settings);
        let mut push = |settings: Settings, grid_point: String| {
            let name = format!("{base}-{grid_point}");
            runs.push(Run { method, label: name.clone(), name, color, settings });
        };
        match method {
            Method::Newton => {
                for c in SWEEP_C {
                    for fraction in SWEEP_GN_FRACTION {
                        let gn_size = ((fraction * train_len as f64).ceil() as usize).max(1);
                        let settings = Settings {
                            problem: ProblemArgs { c, ..method_settings.problem.clone() },
                            newton: NewtonArgs { gn_size: Some(gn_size), ..method_settings.newton.clone() },
                            ..method_settings.clone()
                        };
                        push(settings, format!("C{c}-S{}%", (fraction * 100.0).round()));
                    }
                }
            }
            Method::Sgn => {
                // A batch past the training set is all of it: each size used is run once.
                let mut batches: Vec<usize> = SWEEP_SGN_BATCH.iter().map(|&b| b.min(train_len)).collect();
                batches.dedup();
                for batch in batches {
                    for cg in SWEEP_SGN_CG {
                        let sgn = SgnArgs {
                            sgn_batch: batch,
                            sgn_gn_size: None,
                            sgn_cg_steps: cg,
                            ..method_settings.sgn.clone()
                        };
                        push(Settings { sgn, ..method_settings.clone() }, format!("B{batch}-cg{cg}"));
                    }
                }
            }
            Method::Sgd => {
                for lr in SWEEP_LR {
                    let sgd = SgdArgs { lr, ..method_settings.sgd.clone() };
                    push(Settings { sgd, ..method_settings.clone() }, format!("lr{lr}"));
                }
            }
        }
    }
    runs
}

/// Trains a fresh network (same seed, same initial θ for every run) and logs each record.
fn train(
    execution: &Execution,
    problem: &Problem,
    comm: &dyn Communicator,
    sets: &Sets,
    run: &Run,
    args: &CompareArgs,
    progress: &Progress,
) -> Result<Outcome> {
    let path = args.out.join(format!("{}.jsonl", run.name));
    let mut log = if comm.rank() == 0 { Some(LineFile::create(&path)?) } else { None };
    let Sets { train, total, test } = *sets;
    // The sweep varies C: each run has its own problem.
    let problem = Problem { c: run.settings.problem.c, ..problem.clone() };
    let theta = execution.gpu.upload(&problem.network.init_params(run.settings.problem.seed), "θ")?;
    let newton_options = run.settings.newton_options()?;
    let steps = match run.method {
        Method::Newton => run.settings.newton.iters,
        Method::Sgn | Method::Sgd => run.settings.sgd.epochs * run.settings.evals_per_epoch,
    };
    let settings = run.describe(total)?;
    // θ0's record, then one per iteration, epoch or part of one.
    progress.start_run(&run.name, steps + 1, &settings);
    let mut records = Vec::new();
    let mut log_error = None;
    let mut observe = |record: &Record| {
        let line = serde_json::to_string(record).expect("records serialise");
        if let Err(e) = log.as_mut().map_or(Ok(()), |log| log.push(&line)) {
            log_error.get_or_insert(e);
        }
        progress.record(&run.name, record);
        records.push(record.clone());
    };
    let result = match run.method {
        Method::Newton => newton::train_across(
            execution,
            &problem,
            comm,
            train,
            total,
            Some(test),
            &theta,
            &newton_options,
            &mut observe,
        )
        .map(|_| ()),
        Method::Sgn => {
            let options = run.settings.sgn_options()?;
            sgn::train_across(
                execution,
                &problem,
                comm,
                train,
                total,
                Some(test),
                &theta,
                &options,
                &mut observe,
            )
            .map(|_| ())
        }
        Method::Sgd => {
            let options = run.settings.sgd_options()?;
            sgd::train_across(
                execution,
                &problem,
                comm,
                train,
                total,
                Some(test),
                &theta,
                &options,
                &mut observe,
            )
            .map(|_| ())
        }
    };
    if let Some(e) = log_error {
        return Err(e.into());
    }
    // A run that diverges is a result of the comparison (SGD with a large learning rate does),
    // not a reason to stop it; anything else (the device, the data) is.
    let diverged = match result {
        Ok(()) => false,
        Err(e @ newton_wgpu::Error::Diverged { .. }) => {
            progress.println(format!("{}: {e}", run.name));
            true
        }
        Err(e) => return Err(option_error(e)).with_context(|| format!("run {}", run.name)),
    };
    Ok(Outcome { records, diverged })
}

/// Every record of every finished run, one per line, rewritten after each run (f is empty
/// where it was not evaluated: inside an epoch).
fn write_csv(path: &Path, runs: &[&Run], outcomes: &[&Outcome]) -> Result<()> {
    let mut csv = String::from("run,method,index,f,test_acc,elapsed_s\n");
    for (run, outcome) in runs.iter().zip(outcomes) {
        for r in &outcome.records {
            let acc = r.test_acc().map_or(String::new(), |a| a.to_string());
            let f = r.f().map_or(String::new(), |f| f.to_string());
            // Labels hold commas: quoted (they hold no quotes).
            writeln!(csv, "{},\"{}\",{},{f},{acc},{}", run.name, run.label, r.index(), r.elapsed_s())?;
        }
    }
    Ok(output::write(path, csv.as_bytes())?)
}

fn percent(a: Option<f64>) -> String {
    a.map_or("-".to_owned(), |a| format!("{:.2}%", 100.0 * a))
}

/// Each run's final and best accuracy, training seconds to each target and in all.
fn race_table(runs: &[Run], outcomes: &[Outcome], targets: &[f64]) -> String {
    let width = runs.iter().map(|run| run.label.chars().count()).max().unwrap_or(6).max(6);
    let mut table = format!("\n{:<width$} {:>10} {:>10}", "method", "final acc", "best acc");
    for target in targets {
        let _ = write!(table, " {:>12}", format!("s to {:.1}%", 100.0 * target));
    }
    let _ = writeln!(table, " {:>10}", "total s");
    for (run, outcome) in runs.iter().zip(outcomes) {
        let _ = write!(
            table,
            "{:<width$} {:>10} {:>10}",
            run.label,
            percent(outcome.final_acc()),
            percent(outcome.best_acc())
        );
        for &target in targets {
            let reached = outcome.time_to(target).map_or("not reached".to_owned(), |s| format!("{s:.1}"));
            let _ = write!(table, " {reached:>12}");
        }
        let diverged = if outcome.diverged { "  (diverged)" } else { "" };
        let _ = writeln!(table, " {:>10.1}{diverged}", outcome.seconds());
    }
    table
}

fn sweep_table(runs: &[Run], outcomes: &[Outcome]) -> String {
    let mut table = format!("\n{:<22} {:>10} {:>10} {:>10}\n", "run", "final acc", "best acc", "seconds");
    for (run, outcome) in runs.iter().zip(outcomes) {
        let _ = writeln!(
            table,
            "{:<22} {:>10} {:>10} {:>10.1}{}",
            run.name,
            percent(outcome.final_acc()),
            percent(outcome.best_acc()),
            outcome.seconds(),
            if outcome.diverged { "  (diverged)" } else { "" }
        );
    }
    for method in [Method::Newton, Method::Sgn, Method::Sgd] {
        let finals: Vec<f64> = runs
            .iter()
            .zip(outcomes)
            .filter(|(run, _)| run.method == method)
            .map(|(_, o)| final_or_chance(o))
            .collect();
        if let (Some(lo), Some(hi)) =
            (finals.iter().copied().reduce(f64::min), finals.iter().copied().reduce(f64::max))
        {
            let _ = writeln!(
                table,
                "{}: final accuracy {:.2}% to {:.2}%, spread {:.2} points over {} runs",
                method.name(),
                100.0 * lo,
                100.0 * hi,
                100.0 * (hi - lo),
                finals.len()
            );
        }
    }
    table
}

/// A run's final test accuracy; a run that diverged before its first record counts as 0.
fn final_or_chance(outcome: &Outcome) -> f64 {
    outcome.final_acc().unwrap_or(0.0)
}

fn pair_charts(out: &Path, runs: &[Run], outcomes: &[Outcome], loss: String) -> Result<Vec<PathBuf>> {
    let series = |value: fn(&Record) -> Option<f64>| -> Vec<Series> {
        runs.iter()
            .zip(outcomes)
            .map(|(run, outcome)| Series {
                name: run.label.clone(),
                color: run.color,
                points: outcome.records.iter().filter_map(|r| value(r).map(|v| (r.elapsed_s(), v))).collect(),
            })
            .collect()
    };
    let accuracy = series(|r| r.test_acc().map(|a| 100.0 * a));
    let objective = series(Record::f);
    let mut paths = LineChart {
        title: "Test accuracy",
        x_label: "training seconds",
        y_label: "test accuracy (%)",
        series: &accuracy,
        scale: Scale::Linear,
        legend: SeriesLabelPosition::LowerRight,
    }
    .write(&out.join("accuracy"))?;
    let title = format!("Objective f ({loss} loss + regularisation)");
    paths.extend(
        LineChart {
            title: &title,
            x_label: "training seconds",
            y_label: "f",
            series: &objective,
            scale: Scale::Log,
            legend: SeriesLabelPosition::UpperRight,
        }
        .write(&out.join("objective"))?,
    );
    Ok(paths)
}

fn sweep_charts(out: &Path, runs: &[Run], outcomes: &[Outcome]) -> Result<Vec<PathBuf>> {
    let bars: Vec<(String, f64, plotters::style::RGBColor)> = runs
        .iter()
        .zip(outcomes)
        .map(|(run, outcome)| (run.name.clone(), 100.0 * final_or_chance(outcome), run.color))
        .collect();
    let mut paths = BarChart {
        title: "Final test accuracy of each setting",
        value_label: "test accuracy (%)",
        bars: &bars,
    }
    .write(&out.join("sweep"))?;
    let curves: Vec<Series> = runs
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (run, outcome))| Series {
            // One legend entry per method.
            name: if i == 0 || runs[i - 1].method != run.method {
                run.method.name().to_owned()
            } else {
                String::new()
            },
            color: run.color,
            points: outcome
                .records
                .iter()
                .filter_map(|r| r.test_acc().map(|a| (r.elapsed_s(), 100.0 * a)))
                .collect(),
        })
        .collect();
    paths.extend(
        LineChart {
            title: "Test accuracy of every setting",
            x_label: "training seconds",
            y_label: "test accuracy (%)",
            series: &curves,
            scale: Scale::Linear,
            legend: SeriesLabelPosition::LowerRight,
        }
        .write(&out.join("sweep-curves"))?,
    );
    Ok(paths)
}

/// Progress bars on a terminal (the runs overall and the current run's iterations or epochs);
/// one line per record elsewhere.
struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

impl Progress {
    fn new(runs: usize) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self { bars: None };
        }
        let multi = MultiProgress::new();
        let style = |template| ProgressStyle::with_template(template).expect("a valid template");
        let overall = multi.add(ProgressBar::new(runs as u64));
        overall.set_style(style("runs    [{bar:30}] {pos}/{len}, {elapsed}"));
        let current = multi.add(ProgressBar::new(0));
        current.set_style(style("{msg:<22} [{bar:30}] {pos}/{len}, {elapsed}"));
        Self { bars: Some((multi, overall, current)) }
    }

    fn start_run(&self, name: &str, steps: usize, settings: &str) {
        self.println(format!("{name}: {settings}"));
        if let Some((_, _, current)) = &self.bars {
            current.reset();
            current.set_length(steps as u64);
            current.set_message(name.to_owned());
        }
    }

    fn record(&self, name: &str, record: &Record) {
        match &self.bars {
            Some((_, _, current)) => current.inc(1),
            None => sayln!(
                "{name:<22} {} f {} test acc {} at {:.1} s",
                record.label(),
                record.f().map_or("-".to_owned(), |f| format!("{f:.6}")),
                percent(record.test_acc()),
                record.elapsed_s()
            ),
        }
    }

    fn finish_run(&self) {
        if let Some((_, overall, _)) = &self.bars {
            overall.inc(1);
        }
    }

    fn println(&self, line: String) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => sayln!("{line}"),
        }
    }

    fn clear(&self) {
        if let Some((multi, _, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}
