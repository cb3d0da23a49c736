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
    let runtime_dir = give_the_loader_a_runtime_dir();
    let status = match cli::ranks::Ranks::join() {
        Ok(ranks) => match run(cli, &ranks) {
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
                // Across ranks a failure ends the job, named by its rank; the others would
                // wait. A wrong command line is wrong on every rank: rank 0 says so.
                let status = cli::usage::exit_status(&error);
                if status != 2 || ranks.comm().rank() == 0 {
                    cli::usage::report(&ranks.prefix(), &error);
                }
                ranks.fail(status);
                ExitCode::from(status)
            }
        },
        Err(error) => {
            cli::usage::report("", &error);
            ExitCode::from(cli::usage::exit_status(&error))
        }
    };
    if let Some(dir) = runtime_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    status
}

/// The Vulkan loader and Mesa complain ("XDG_RUNTIME_DIR is invalid or not set") on every
/// start where XDG_RUNTIME_DIR names no folder, as on most headless machines; nothing here
/// needs one, so such a run gets a private one in the temporary folder, before any thread
/// starts; it is removed at the end.
fn give_the_loader_a_runtime_dir() -> Option<std::path::PathBuf> {
    let usable = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if usable {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("newton-wgpu-runtime-{}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).ok()?;
    std::env::set_var("XDG_RUNTIME_DIR", &dir);
    Some(dir)
}

fn run(cli: Cli, ranks: &cli::ranks::Ranks) -> Result<()> {
    match cli.command {
        Some(Command::Train(args)) => cli::train::run(&args, ranks),
        Some(Command::Compare(args)) => cli::compare::run(&args, ranks),
        Some(Command::Predict(args)) => {
            ranks.single("predict", "run it as one process")?;
            cli::predict::run(&args)
        }
        Some(Command::Eval(args)) => cli::eval::eval(&args, ranks),
        Some(Command::Tune(args)) => {
            ranks.single("tune", "run it as one process")?;
            cli::tune::run(&args)
        }
        Some(Command::Info) => cli::info(ranks),
        None => cli::train::run(&cli::train::main_job(), ranks),
    }
}
