//! `newton-wgpu compare`: Newton-CG and SGD on the same data, network, loss, C and seed, on
//! one adapter, side by side. The report folder gets each run's JSON lines (as `train
//! --log-json` writes them, line by line, so an interrupted comparison keeps what finished),
//! a CSV of every record, charts of test accuracy and f against training seconds (SVG and
//! PNG), and the summary table that is also printed.
//!
//! `--sweep` is the robustness study of Wang, Tan and Lin: Newton-CG over C ∈ {0.01, 0.1, 1}
//! × |S| ∈ {1%, 5%, 10%} of l, SGD over lr ∈ {0.001, 0.003, 0.01, 0.03, 0.1}, with each run's
//! final accuracy, the spread (max − min) for each method, and a chart.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use newton_wgpu::comm::{shard_of, Communicator};
use newton_wgpu::data::Dataset;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::optim::{newton, sgd, Record};
use newton_wgpu::output::{self, LineFile};
use newton_wgpu::rules;
use newton_wgpu::{Execution, Problem};

use plotters::chart::SeriesLabelPosition;

use super::plot::{self, BarChart, Chart, LineChart, Scale, Series};
use super::train::{NewtonArgs, Settings, SgdArgs};
use super::usage::{option_error, usage, Usage};
use super::ProblemArgs;

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    settings: Settings,
    /// The report folder (created if needed; its files are replaced).
    #[arg(long, default_value = "compare-report")]
    out: PathBuf,
    /// The summary gives each method's training seconds to reach this test accuracy.
    #[arg(long, default_value_t = 0.95)]
    target: f64,
    /// Run the robustness sweep instead of one run of each method.
    #[arg(long)]
    sweep: bool,
}

/// The report's table and its CSV of every record.
const SUMMARY: &str = "summary.txt";
const RECORDS: &str = "records.csv";

/// Newton-CG's sweep: C × |S| as a fraction of l.
const SWEEP_C: [f64; 3] = [0.01, 0.1, 1.0];
const SWEEP_GN_FRACTION: [f64; 3] = [0.01, 0.05, 0.10];
/// SGD's sweep: the initial learning rate.
const SWEEP_LR: [f64; 5] = [0.001, 0.003, 0.01, 0.03, 0.1];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Newton,
    Sgd,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Newton => "Newton-CG",
            Method::Sgd => "SGD",
        }
    }

    fn color(self) -> plotters::style::RGBColor {
        match self {
            Method::Newton => plot::NEWTON,
            Method::Sgd => plot::SGD,
        }
    }
}

/// One training run to make: a method with its settings.
struct Run {
    method: Method,
    /// A name for files and tables, e.g. "newton" or "sgd-lr0.01".
    name: String,
    settings: Settings,
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

/// The sets a run trains and scores on: the whole training set (Newton-CG draws S from it),
/// and this rank's shards of the training and test sets (the whole sets for one process).
struct Sets<'d> {
    whole: &'d Dataset,
    train: &'d Dataset,
    test: &'d Dataset,
}

pub fn run(args: &CompareArgs, ranks: &super::ranks::Ranks) -> Result<()> {
    let comm = ranks.comm();
    // Across ranks, rank 0 alone writes the report.
    let writes = comm.rank() == 0;
    rules::unit_to_one("target", args.target).map_err(option_error)?;
    args.settings.problem.validate()?;
    let (split, _, problem) = args.settings.problem.load(None)?;
    let runs = if args.sweep {
        println!("the sweep sets C, --gn-size and --lr itself; the other options apply to every run");
        sweep_runs(args, split.train.len())
    } else {
        pair_runs(args)
    };
    // Every run's settings, before the first runs.
    for run in &runs {
        run.settings.validate(split.train.len()).with_context(|| format!("run {}", run.name))?;
    }
    if writes {
        if args.out.exists() && !args.out.is_dir() {
            return Err(Usage(format!("--out: {} is not a folder", args.out.display())).into());
        }
        usage(std::fs::create_dir_all(&args.out), &format!("--out: creating {}", args.out.display()))?;
        for path in report_files(args, &runs) {
            usage(output::check(&path), "--out")?;
        }
    }
    let (train_shard, test_shard) = (shard_of(&split.train, comm), shard_of(&split.test, comm));
    let sets = Sets { whole: &split.train, train: &train_shard, test: &test_shard };
    let gpu = Gpu::new()?;
    let execution = args.settings.problem.execution(&gpu)?;
    super::announce(&execution);
    println!("{} runs; the report goes to {}", runs.len(), args.out.display());

    let progress = Progress::new(runs.len());
    let mut outcomes = Vec::new();
    for run in &runs {
        let outcome = train(&execution, &problem, comm, &sets, run, args, &progress)?;
        outcomes.push(outcome);
        if writes {
            write_csv(&args.out.join(RECORDS), &runs, &outcomes)?;
        }
        progress.finish_run();
    }
    progress.clear();
    if !writes {
        return Ok(());
    }

    let charts = if args.sweep {
        print!("{}", sweep_table(&runs, &outcomes));
        output::write(&args.out.join(SUMMARY), sweep_table(&runs, &outcomes).as_bytes())?;
        sweep_charts(&args.out, &runs, &outcomes)?
    } else {
        print!("{}", pair_table(&runs, &outcomes, args.target));
        output::write(&args.out.join(SUMMARY), pair_table(&runs, &outcomes, args.target).as_bytes())?;
        pair_charts(&args.out, &runs, &outcomes, args.settings.problem.loss.to_string())?
    };
    for path in charts {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Every file of the report, so that each can be checked before the first run.
fn report_files(args: &CompareArgs, runs: &[Run]) -> Vec<PathBuf> {
    let charts: &[&str] = if args.sweep { &["sweep", "sweep-curves"] } else { &["accuracy", "objective"] };
    let mut files: Vec<PathBuf> =
        runs.iter().map(|run| args.out.join(format!("{}.jsonl", run.name))).collect();
    files.extend([RECORDS, SUMMARY].map(|name| args.out.join(name)));
    for chart in charts {
        files.extend(["svg", "png"].map(|ext| args.out.join(chart).with_extension(ext)));
    }
    files
}

fn pair_runs(args: &CompareArgs) -> Vec<Run> {
    let run = |method, name: &str| Run { method, name: name.to_owned(), settings: args.settings.clone() };
    vec![run(Method::Newton, "newton"), run(Method::Sgd, "sgd")]
}

fn sweep_runs(args: &CompareArgs, train_len: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    for c in SWEEP_C {
        for fraction in SWEEP_GN_FRACTION {
            let gn_size = ((fraction * train_len as f64).ceil() as usize).max(1);
            runs.push(Run {
                method: Method::Newton,
                name: format!("newton-C{c}-S{}%", (fraction * 100.0).round()),
                settings: Settings {
                    problem: ProblemArgs { c, ..args.settings.problem.clone() },
                    newton: NewtonArgs { gn_size: Some(gn_size), ..args.settings.newton.clone() },
                    ..args.settings.clone()
                },
            });
        }
    }
    for lr in SWEEP_LR {
        runs.push(Run {
            method: Method::Sgd,
            name: format!("sgd-lr{lr}"),
            settings: Settings { sgd: SgdArgs { lr, ..args.settings.sgd.clone() }, ..args.settings.clone() },
        });
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
    let (train, test) = (sets.whole, sets.test);
    // The sweep varies C: each run has its own problem.
    let problem = Problem { c: run.settings.problem.c, ..problem.clone() };
    let theta = execution.gpu.upload(&problem.network.init_params(run.settings.problem.seed), "θ")?;
    let newton_options = run.settings.newton_options()?;
    let (steps, settings) = match run.method {
        Method::Newton => (
            run.settings.newton.iters,
            run.settings.newton.describe(&run.settings.problem, newton_options.gn_size_for(train.len())),
        ),
        Method::Sgd => (run.settings.sgd.epochs, run.settings.sgd.describe(&run.settings.problem)),
    };
    // θ0's record, then one per iteration or epoch.
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
            Some(test),
            &theta,
            &newton_options,
            &mut observe,
        )
        .map(|_| ()),
        Method::Sgd => {
            let options = run.settings.sgd_options()?;
            let (shard, total) = (sets.train, train.len());
            sgd::train_across(
                execution,
                &problem,
                comm,
                shard,
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
        Err(e) => return Err(e).with_context(|| format!("run {}", run.name)),
    };
    Ok(Outcome { records, diverged })
}

/// Every record of every finished run, one per line, rewritten after each run.
fn write_csv(path: &Path, runs: &[Run], outcomes: &[Outcome]) -> Result<()> {
    let mut csv = String::from("run,method,index,f,test_acc,elapsed_s\n");
    for (run, outcome) in runs.iter().zip(outcomes) {
        for r in &outcome.records {
            let acc = r.test_acc().map_or(String::new(), |a| a.to_string());
            writeln!(
                csv,
                "{},{},{},{},{acc},{}",
                run.name,
                run.method.name(),
                r.index(),
                r.f(),
                r.elapsed_s()
            )?;
        }
    }
    Ok(output::write(path, csv.as_bytes())?)
}

fn percent(a: Option<f64>) -> String {
    a.map_or("-".to_owned(), |a| format!("{:.2}%", 100.0 * a))
}

fn pair_table(runs: &[Run], outcomes: &[Outcome], target: f64) -> String {
    let mut table = format!(
        "\n{:<10} {:>10} {:>10} {:>14} {:>10}\n",
        "method",
        "final acc",
        "best acc",
        format!("s to {:.1}%", 100.0 * target),
        "total s"
    );
    for (run, outcome) in runs.iter().zip(outcomes) {
        let reached = outcome.time_to(target).map_or("not reached".to_owned(), |s| format!("{s:.1}"));
        let _ = writeln!(
            table,
            "{:<10} {:>10} {:>10} {:>14} {:>10.1}{}",
            run.method.name(),
            percent(outcome.final_acc()),
            percent(outcome.best_acc()),
            reached,
            outcome.seconds(),
            if outcome.diverged { "  (diverged)" } else { "" }
        );
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
    for method in [Method::Newton, Method::Sgd] {
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
                name: run.method.name().to_owned(),
                color: run.method.color(),
                points: outcome.records.iter().filter_map(|r| value(r).map(|v| (r.elapsed_s(), v))).collect(),
            })
            .collect()
    };
    let accuracy = series(|r| r.test_acc().map(|a| 100.0 * a));
    let objective: Vec<Series> = runs
        .iter()
        .zip(outcomes)
        .map(|(run, outcome)| Series {
            name: run.method.name().to_owned(),
            color: run.method.color(),
            points: outcome.records.iter().map(|r| (r.elapsed_s(), r.f())).collect(),
        })
        .collect();
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
        .map(|(run, outcome)| (run.name.clone(), 100.0 * final_or_chance(outcome), run.method.color()))
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
            color: run.method.color(),
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
            None => println!(
                "{name:<22} {} f {:.6} test acc {} at {:.1} s",
                record.label(),
                record.f(),
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
            None => println!("{line}"),
        }
    }

    fn clear(&self) {
        if let Some((multi, _, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}
