//! The newton-wgpu program: `train` (the default) runs Newton-CG or SGD; `predict` scores a
//! saved model; `eval` times f, ∇f and a Gauss-Newton product; `info` shows the adapter.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Without a command the program runs the main job: Newton-CG on the bundled MNIST sample
/// with the settings of `cli::train::MAIN_JOB`, printed as it starts.
#[derive(Parser)]
#[command(version, about = "Train CNNs by Newton's method on the GPU (wgpu + WGSL)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network by Newton-CG (default), SGN or SGD.
    #[command(allow_negative_numbers = true)]
    Train(Box<cli::train::TrainArgs>),
    /// Newton-CG, SGN and SGD (any set, SGD tuned first if asked) on the same problem: logs,
    /// a CSV, charts and a summary (or, with --sweep, the robustness study over each method's
    /// settings).
    #[command(allow_negative_numbers = true)]
    Compare(Box<cli::compare::CompareArgs>),
    /// Print a saved model's accuracy on a data set's test images, with per-class counts.
    Predict(cli::predict::PredictArgs),
    /// Time f(θ), ∇f(θ) and one Gauss-Newton product (G_S + λI)∇f of a fresh network.
    Eval(cli::eval::EvalArgs),
    /// Time the convolution kernels of a network's layers on this adapter and cache the
    /// fastest (what every run does for shapes it has not seen), printing the table.
    Tune(cli::tune::TuneArgs),
    /// Print the adapter in use, its limits and the tuning cache.
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime_dir = RuntimeDir::for_the_loader();
    match cli::ranks::Ranks::join() {
        Ok(ranks) => match ranks.agree_on_the_start().and_then(|()| run(cli, &ranks)) {
            Ok(()) if cli::out::finish() => ExitCode::SUCCESS,
            Ok(()) => {
                eprintln!(
                    "{}note: standard output was closed before the end, so part of what this command \
                     printed was not delivered; the command itself finished (exit status {})",
                    ranks.prefix(),
                    cli::out::CLOSED_STATUS
                );
                ExitCode::from(cli::out::CLOSED_STATUS)
            }
            Err(error) => {
                // Every rank that fails says why, named by its rank (a wrong setting may be
                // wrong on one rank only); across ranks the failure then ends the job, which
                // ends this process: the runtime folder goes first. An error that every rank
                // meets (ranks that disagree, a command refused across ranks) ends each by
                // itself, and rank 0 alone says one that reads the same everywhere.
                let status = cli::usage::exit_status(&error);
                let on_every_rank = error.downcast_ref::<cli::ranks::OnEveryRank>();
                if on_every_rank.is_none_or(|e| e.own) || ranks.comm().rank() == 0 {
                    cli::usage::report(&ranks.prefix(), &error);
                }
                drop(runtime_dir);
                if on_every_rank.is_none() {
                    ranks.fail(status);
                }
                ExitCode::from(status)
            }
        },
        Err(error) => {
            cli::usage::report("", &error);
            ExitCode::from(cli::usage::exit_status(&error))
        }
    }
}

/// The Vulkan loader and Mesa complain ("XDG_RUNTIME_DIR is invalid or not set") on every
/// start where XDG_RUNTIME_DIR names no folder, as on most headless machines; nothing here
/// needs one, so such a run gets a private one in the temporary folder, before any thread
/// starts. It is removed when this is dropped: at the end, after an error, and when a panic
/// unwinds.
struct RuntimeDir(Option<std::path::PathBuf>);

impl RuntimeDir {
    fn for_the_loader() -> Self {
        let usable =
            std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
        if usable {
            return Self(None);
        }
        let dir = std::env::temp_dir().join(format!("newton-wgpu-runtime-{}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        if builder.create(&dir).is_err() {
            return Self(None);
        }
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        Self(Some(dir))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn run(cli: Cli, ranks: &cli::ranks::Ranks) -> Result<()> {
    match cli.command {
        Some(Command::Train(args)) => cli::train::run(&args, ranks),
        Some(Command::Compare(args)) => cli::compare::run(&args, ranks),
        Some(Command::Predict(args)) => cli::predict::run(&args, ranks),
        Some(Command::Eval(args)) => cli::eval::eval(&args, ranks),
        Some(Command::Tune(args)) => {
            ranks.single("tune", "run it as one process")?;
            cli::tune::run(&args, ranks)
        }
        Some(Command::Info) => cli::info(ranks),
        None => cli::train::run(&cli::train::main_job(), ranks),
    }
}
