//! Whether summing a CG step's product in pieces hides the sum behind the device's work:
//! `cargo bench --bench overlap`. Two ranks (threads sharing the adapter, as in
//! tests/data_parallel.rs) solve with `cnn4-small` on synthetic 28×28×1 inputs, |S| = 128, over
//! an emulated link: each sum sleeps for its values' share of a chosen time, as a reduce and a
//! broadcast over a slow network would keep the host waiting, plus a fixed latency per sum.
//! The link's time for a whole product is set to 0, ¼, ½ and 1 times the CG step measured
//! without it (the cost model of docs/several-machines.md puts a GPU's sum between 7% and 52%
//! of a step), and each is timed with the product summed in 1, 2 and 4 pieces, in turns. A
//! software GPU computes on the same cores as the host, but a sleeping host leaves them to it,
//! so what the pieces hide shows here as it would on a GPU.
//!
//! Prints ms per CG step (medians) and writes target/bench/overlap.json (or `-- --json PATH`).

use std::time::{Duration, Instant};

use newton_wgpu::comm::{shard_of, CommError, Communicator, ThreadGroup};
use newton_wgpu::curvature::{Subsample, SubsampleOptions};
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4_small, Shape};
use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings};
use newton_wgpu::{Execution, Problem};
use serde_json::json;

mod common;
use common::{median, results_path, synthetic, write_results};

const RANKS: usize = 2;
const SAMPLES: usize = 512;
const GN_SIZE: usize = 128;
const STEPS: usize = 6;
const PIECES: [usize; 3] = [1, 2, 4];
/// The link's time for a whole product, as a share of the CG step without a link.
const LINK_SHARES: [f64; 4] = [0.0, 0.25, 0.5, 1.0];
/// What every sum costs on the emulated link besides its values (a collective's latency).
const LATENCY: Duration = Duration::from_micros(100);

/// A rank's communicator behind a slow link: a sum of f32 values sleeps `per_value` for each
/// of them (and the latency) before it is done.
struct Link<'c> {
    inner: &'c dyn Communicator,
    per_value: Duration,
}

impl Communicator for Link<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), CommError> {
        if !self.per_value.is_zero() {
            std::thread::sleep(LATENCY + self.per_value * values.len() as u32);
        }
        self.inner.sum_f32(values)
    }
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), CommError> {
        self.inner.sum_f64(values)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CommError> {
        self.inner.broadcast(bytes)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = if args.iter().any(|a| a == "--quick") { 3 } else { 5 };
    let gpu = Gpu::new().expect("a GPU adapter");
    let execution = Execution::from_env(&gpu).unwrap();
    let shape = Shape::new(1, 28, 28);
    let problem = Problem::new(cnn4_small(shape, 10).unwrap(), Loss::CrossEntropy, 0.01).unwrap();
    let n = problem.network.param_count();
    let data = synthetic(shape, SAMPLES);
    let init = problem.network.init_params(0);
    println!("adapter: {}, {} convolution kernels", gpu.adapter(), execution.conv);
    println!(
        "{RANKS} ranks (threads), cnn4-small ({n} parameters), |S| = {GN_SIZE}, {STEPS} CG steps a solve, median of {runs}"
    );

    let ranks = ThreadGroup::new(RANKS, Duration::from_secs(600));
    // Per rank: (link share, pieces made, ms per CG step) for every solve.
    let results: Vec<Vec<(f64, usize, f64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranks
            .iter()
            .map(|comm| {
                let (execution, problem, data, init, gpu) = (&execution, &problem, &data, &init, &gpu);
                scope.spawn(move || {
                    let held = shard_of(data, comm);
                    let theta = gpu.upload(init, "θ").unwrap();
                    let grad = gpu.upload(&problem.network.init_params(1), "g").unwrap();
                    let options = SubsampleOptions { size: GN_SIZE, seed: 0, memory_budget: None };
                    let subsample =
                        Subsample::across(execution, problem, comm, &held, SAMPLES, &theta, &options)
                            .unwrap();
                    let mut buffers = CgBuffers::new(gpu, n).unwrap();
                    let mut solve = |per_value: Duration, pieces: usize| {
                        let link = Link { inner: comm, per_value };
                        let settings = CgSettings {
                            xi: 0.0,
                            max_steps: STEPS,
                            check_every: 1,
                            sums_per_product: pieces,
                        };
                        comm.sum_f64(&mut [0.0]).unwrap();
                        let start = Instant::now();
                        let outcome = cg::solve_across(
                            gpu,
                            &link,
                            &subsample,
                            1.0,
                            &grad,
                            1.0,
                            &settings,
                            &mut buffers,
                        )
                        .unwrap();
                        let ms = start.elapsed().as_secs_f64() * 1e3 / STEPS as f64;
                        assert_eq!(outcome.steps, STEPS, "CG stopped early: {outcome:?}");
                        (buffers.sums_per_step().unwrap(), ms)
                    };
                    // Compiles every pipeline, then the step without a link sets the link's pace.
                    solve(Duration::ZERO, 1);
                    let mut plain: Vec<f64> = (0..runs).map(|_| solve(Duration::ZERO, 1).1).collect();
                    // Rank 0's figure on every rank, so that all sleep alike.
                    let mut step_ms = [if comm.rank() == 0 { median(plain.drain(..)) } else { 0.0 }];
                    comm.sum_f64(&mut step_ms).unwrap();
                    let mut timings = Vec::new();
                    for share in LINK_SHARES {
                        let per_value = Duration::from_secs_f64(share * step_ms[0] * 1e-3 / n as f64);
                        for run in 0..runs {
                            // The settings in turns, a different one first each run.
                            for i in 0..PIECES.len() {
                                let pieces = PIECES[(i + run) % PIECES.len()];
                                let (made, ms) = solve(per_value, pieces);
                                timings.push((share, made, ms));
                            }
                        }
                    }
                    timings
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let rank0 = &results[0];
    println!("\n{:>26} {:>12} {:>12} {:>12}", "link time for a product", "1 piece", "2 pieces", "4 pieces");
    let mut rows = Vec::new();
    for share in LINK_SHARES {
        let mut cells = Vec::new();
        for pieces_made in [1, 2, 4] {
            let times: Vec<f64> = rank0
                .iter()
                .filter(|(s, made, _)| *s == share && *made == pieces_made)
                .map(|t| t.2)
                .collect();
            cells.push((!times.is_empty()).then(|| median(times.into_iter())));
        }
        let show = |cell: Option<f64>| cell.map_or("-".to_owned(), |ms| format!("{ms:.1} ms"));
        println!(
            "{:>26} {:>12} {:>12} {:>12}",
            format!("{:.0}% of a CG step", share * 100.0),
            show(cells[0]),
            show(cells[1]),
            show(cells[2])
        );
        rows.push(json!({
            "link_share_of_step": share,
            "ms_per_cg_step": {"1": cells[0], "2": cells[1], "4": cells[2]},
        }));
    }
    let path = results_path("overlap.json");
    let results = json!({
        "adapter": gpu.adapter().to_string(),
        "ranks": RANKS,
        "params": n,
        "gn_size": GN_SIZE,
        "steps": STEPS,
        "latency_us": LATENCY.as_micros() as u64,
        "rows": rows,
    });
    write_results(&path, &results);
    println!("\nwritten to {}", path.display());
}
