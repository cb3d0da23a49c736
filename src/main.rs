//! The newton-wgpu program: `train` (the default) runs Newton-CG or SGD; `predict` scores a
//! saved model; `eval` times f, ∇f and a Gauss-Newton product; `info` shows the adapter.

mod cli;

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
    /// Train a network by Newton-CG (default) or SGD.
    Train(Box<cli::train::TrainArgs>),
    /// Newton-CG against SGD on the same problem: logs, a CSV, charts and a summary (or, with
    /// --sweep, the robustness study over C, |S| and learning rates).
    Compare(Box<cli::compare::CompareArgs>),
    /// Print a saved model's accuracy on a data set's test images, with per-class counts.
    Predict(cli::predict::PredictArgs),
    /// Time f(θ), ∇f(θ) and one Gauss-Newton product (G_S + λI)∇f of a fresh network.
    Eval(cli::eval::EvalArgs),
    /// Print the adapter in use and its limits.
    Info,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Train(args)) => cli::train::run(&args),
        Some(Command::Compare(args)) => cli::compare::run(&args),
        Some(Command::Predict(args)) => cli::predict::run(&args),
        Some(Command::Eval(args)) => cli::eval::eval(&args),
        Some(Command::Info) => cli::info(),
        None => cli::train::run(&cli::train::main_job()),
    }
}
