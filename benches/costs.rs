//! What each part of training costs on the adapter at hand, in one run: `cargo bench --bench
//! costs`. For software GPUs, `-- --quick` takes fewer runs and a Newton iteration and an SGD
//! epoch over 2,000 samples instead of 8,000. First, the host's share of a CG step on a tiny
//! problem (CPU µs, GPU objects created and blocking waits per step); `-- --one-case` measures
//! only that, in seconds. Then for cnn4 on synthetic 28×28×1 and 32×32×3 inputs with batch (= |S| = SGD mini-batch) 256 and 1024
//! (and, with `-- --networks cnn4,resnet8,resnet20`, the Fixup ResNets on 32×32×3 at 256):
//! forward, gradient, one Gauss-Newton product over S, one CG step, one Newton iteration
//! (CG_STEPS steps), one SGD epoch; the GFLOP/s of the convolution kernels and of the project's
//! tiled matrix product on square matrices; submits, dispatches and read-backs per CG step as
//! counted by the device layer. Times are medians of several runs, GPU time from timestamp
//! queries where the adapter has them (wall time otherwise; both are in the JSON).
//!
//! Writes target/bench/results.json (or `-- --json PATH`): the host case's figures and the 28×28×1, batch-256 case
//! at the top level, every case under "cases" (the host case as "host").

use std::time::Instant;

use newton_wgpu::curvature::{Subsample, SubsampleOptions};
use newton_wgpu::gpu::{Gpu, GpuBuffer, GpuOptions, GpuStats};
use newton_wgpu::kernels::conv::ConvLayer;
use newton_wgpu::kernels::matmul::matmul;
use newton_wgpu::kernels::GemmKernel;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{LayerSpec, Network, Shape};
use newton_wgpu::objective::Objective;
use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings};
use newton_wgpu::optim::newton::{Newton, NewtonOptions};
use newton_wgpu::optim::sgd::{Sgd, SgdOptions};
use newton_wgpu::tune::{TuneMode, Tuner};
use newton_wgpu::{Execution, Problem};
use serde_json::{json, Map, Value};

mod common;
use common::{median, results_path, synthetic, write_results};

const LOSS: Loss = Loss::SquaredError;
const C: f64 = 0.01;
const CG_STEPS: usize = 4;
const GEMM_SIZE: usize = 1024;

/// How much to measure.
struct Plan {
    /// Only the host-overhead case.
    one_case: bool,
    /// (built-in network, input, batch).
    cases: Vec<(String, Shape, usize)>,
    /// Runs of the parts of an iteration (after one that compiles pipelines).
    runs: usize,
    /// Runs of a whole Newton iteration and SGD epoch.
    long_runs: usize,
    /// Training samples of the Newton iteration and the SGD epoch.
    samples: usize,
}

impl Plan {
    fn from_args() -> Self {
        let flag = |name: &str| std::env::args().any(|a| a == name);
        let args: Vec<String> = std::env::args().collect();
        let networks = args.iter().position(|a| a == "--networks").and_then(|i| args.get(i + 1));
        let networks: Vec<&str> = networks.map_or(vec!["cnn4"], |list| list.split(',').collect());
        let mut cases = Vec::new();
        for name in networks {
            let shapes: &[(Shape, usize)] = match name {
                "cnn4" => &[
                    (Shape::new(1, 28, 28), 256),
                    (Shape::new(1, 28, 28), 1024),
                    (Shape::new(3, 32, 32), 256),
                    (Shape::new(3, 32, 32), 1024),
                ],
                "resnet8" | "resnet20" => &[(Shape::new(3, 32, 32), 256)],
                other => panic!("--networks: {other:?} is not one of cnn4, resnet8, resnet20"),
            };
            cases.extend(shapes.iter().map(|&(shape, batch)| (name.to_owned(), shape, batch)));
        }
        let one_case = flag("--one-case");
        if one_case {
            cases.clear();
        }
        if flag("--quick") {
            Self { one_case, cases, runs: 3, long_runs: 1, samples: 2000 }
        } else {
            Self { one_case, cases, runs: 5, long_runs: 3, samples: 8000 }
        }
    }
}

/// GPU and wall seconds of one measurement.
#[derive(Clone, Copy)]
struct Seconds {
    gpu: Option<f64>,
    wall: f64,
}

impl Seconds {
    /// What the tables report: GPU time where measured.
    fn best(&self) -> f64 {
        self.gpu.unwrap_or(self.wall)
    }
}

/// Runs `work` (which submits and waits) and takes both times.
fn timed(gpu: &Gpu, work: impl FnOnce()) -> Seconds {
    gpu.take_gpu_time().unwrap();
    let started = Instant::now();
    work();
    gpu.wait().unwrap();
    let wall = started.elapsed().as_secs_f64();
    Seconds { gpu: gpu.take_gpu_time().unwrap().map(|d| d.as_secs_f64()), wall }
}

/// The medians over `runs` runs, after `warmups` runs that are thrown away.
fn measure(gpu: &Gpu, warmups: usize, runs: usize, mut work: impl FnMut()) -> Seconds {
    for _ in 0..warmups {
        timed(gpu, &mut work);
    }
    let times: Vec<Seconds> = (0..runs).map(|_| timed(gpu, &mut work)).collect();
    let gpu_times: Option<Vec<f64>> = times.iter().map(|t| t.gpu).collect();
    Seconds { gpu: gpu_times.map(|t| median(t.into_iter())), wall: median(times.iter().map(|t| t.wall)) }
}

/// Counts of a CG step: what a solve of 1 + CG_STEPS steps (from `between` to `after`) did
/// beyond one of 1 step (from `before` to `between`), per step.
fn per_step(after: GpuStats, between: GpuStats, before: GpuStats) -> [f64; 3] {
    let per = |a: u64, m: u64, b: u64| ((a - m) as f64 - (m - b) as f64) / CG_STEPS as f64;
    [
        per(after.submits, between.submits, before.submits),
        per(after.dispatches, between.dispatches, before.dispatches),
        per(after.readbacks, between.readbacks, before.readbacks),
    ]
}

/// Every measurement of one (input, batch) case, as JSON keys.
fn bench_case(
    execution: &Execution,
    plan: &Plan,
    name: &str,
    shape: Shape,
    batch: usize,
) -> Map<String, Value> {
    let gpu = execution.gpu;
    let network = newton_wgpu::nn::builtin(name, shape, 10).expect("a built-in network").unwrap();
    let problem = Problem::new(network, LOSS, C).unwrap();
    let network = &problem.network;
    // The tuner picks this case's kernels before anything is timed (from its cache, or timing
    // them now: that time is reported apart, not in any figure below).
    for g in network.conv_geometries() {
        execution.conv_plan(g, batch).unwrap();
    }
    let n = network.param_count();
    let data = synthetic(shape, batch);
    let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
    let grad = gpu.zeros::<f32>(n, "∇f").unwrap();
    let v = gpu.upload(&network.init_params(1), "v").unwrap();
    let gv = gpu.zeros::<f32>(n, "Gv").unwrap();
    let one_chunk = execution.with_bsize(batch);
    let mut objective = Objective::new(&one_chunk, &problem).unwrap();
    let runs = plan.runs;

    let forward = measure(gpu, 1, runs, || {
        objective.value(&data, &theta).unwrap();
    });
    let mut grad_norm = 0.0;
    let gradient = measure(gpu, 1, runs, || {
        grad_norm = objective.value_and_grad(&data, &theta, &grad).unwrap().grad_norm;
    });
    let options = SubsampleOptions { size: batch, seed: 0, memory_budget: Some(u64::MAX) };
    let s = Subsample::new(&one_chunk, &problem, &data, &theta, &options).unwrap();
    let product = measure(gpu, 1, runs, || s.gauss_newton_product(&v, 1.0, &gv).unwrap());

    // A CG step: a solve of 1 + CG_STEPS steps less one of 1 step (ξ = 0: none stops early).
    let mut buffers = CgBuffers::new(gpu, n).unwrap();
    let check_every = NewtonOptions::default().cg_check_every;
    let mut solve = |steps: usize| {
        let settings = CgSettings { xi: 0.0, max_steps: steps, check_every, sums_per_product: 1 };
        let outcome = cg::solve(gpu, &s, 1.0, &grad, grad_norm, &settings, &mut buffers).unwrap();
        assert_eq!(outcome.steps, steps, "CG stopped early: {outcome:?}");
    };
    let (mut short, mut long, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    solve(1);
    for _ in 0..runs {
        let before = gpu.stats();
        short.push(timed(gpu, || solve(1)));
        let between = gpu.stats();
        long.push(timed(gpu, || solve(1 + CG_STEPS)));
        counts.push(per_step(gpu.stats(), between, before));
    }
    let step_of = |pick: fn(&Seconds) -> Option<f64>| -> Option<f64> {
        let differences: Option<Vec<f64>> =
            long.iter().zip(&short).map(|(l, s)| Some((pick(l)? - pick(s)?) / CG_STEPS as f64)).collect();
        differences.map(|d| median(d.into_iter()))
    };
    let cg_step = Seconds { gpu: step_of(|t| t.gpu), wall: step_of(|t| Some(t.wall)).unwrap() };
    drop(s);

    // Conv kernels alone: the forward convolutions of every layer over the batch.
    let geometries: Vec<_> = network.conv_geometries().cloned().collect();
    let conv_macs: u64 = geometries.iter().map(|g| g.macs_per_sample()).sum::<u64>() * batch as u64;
    let conv_buffers: Vec<(ConvLayer, [GpuBuffer<f32>; 2])> = geometries
        .iter()
        .map(|g| {
            let layer = ConvLayer::new(gpu, execution.conv_plan(g, batch).unwrap(), g).unwrap();
            let x = gpu.upload(&vec![0.5; batch * g.input.len()], "x").unwrap();
            (layer, [x, gpu.zeros(batch * g.output.len(), "y").unwrap()])
        })
        .collect();
    // Each layer's filters packed and its forward pass, as the objective runs them.
    let mut rec = gpu.recorder();
    for (layer, [x, y]) in &conv_buffers {
        layer.pack_theta(&mut rec, &theta).unwrap();
        layer.forward(&mut rec, batch, x, &theta, y).unwrap();
    }
    let convs_program = rec.finish().unwrap();
    let convs = measure(gpu, 1, runs, || {
        gpu.submit(&[&convs_program]).unwrap();
    });
    drop(conv_buffers);

    // A Newton iteration and an SGD epoch on `samples` samples; pipelines are compiled by now.
    let train = synthetic(shape, plan.samples);
    let newton_options =
        NewtonOptions { gn_size: Some(batch), cg_max: CG_STEPS, xi: 1e-12, ..NewtonOptions::default() };
    let mut newton = Newton::new(execution, &problem, &train, &newton_options).unwrap();
    let mut cg_steps = Vec::new();
    let newton_iter = measure(gpu, 0, plan.long_runs, || {
        let record = newton.step(&train, &theta).unwrap().expect("the gradient is not zero");
        cg_steps.push(record.cg_iters);
    });
    drop(newton);
    let sgd_options = SgdOptions { batch, lr: 1e-3, momentum: 0.9, ..SgdOptions::default() };
    let mut sgd = Sgd::new(execution, &problem, &train, &sgd_options).unwrap();
    let sgd_epoch = measure(gpu, 0, plan.long_runs, || {
        sgd.steps(&train, &theta).unwrap();
    });

    let [submits, dispatches, readbacks] = [0, 1, 2].map(|i| median(counts.iter().map(|c| c[i])));
    let ms = |s: Seconds| s.best() * 1e3;
    let wall_ms = |s: Seconds| s.wall * 1e3;
    let mut case = Map::new();
    let mut put = |key: &str, value: Value| {
        case.insert(key.into(), value);
    };
    put("network", json!(name));
    put("input", json!(shape.to_string()));
    put("batch", json!(batch));
    put("gn_size", json!(batch));
    put("samples", json!(plan.samples));
    put("cg_steps_per_newton_iter", json!(cg_steps));
    put("forward_ms", json!(ms(forward)));
    put("grad_ms", json!(ms(gradient)));
    put("gv_ms", json!(ms(product)));
    put("gv_grad_ratio", json!(product.best() / gradient.best()));
    put("cg_step_ms", json!(ms(cg_step)));
    put("newton_iter_ms", json!(ms(newton_iter)));
    put("sgd_epoch_ms", json!(ms(sgd_epoch)));
    put("conv_gflops", json!(2.0 * conv_macs as f64 / convs.best() / 1e9));
    put("submits_per_cg_step", json!(submits));
    put("dispatches_per_cg_step", json!(dispatches));
    put("readbacks_per_cg_step", json!(readbacks));
    put(
        "wall",
        json!({
            "forward_ms": wall_ms(forward),
            "grad_ms": wall_ms(gradient),
            "gv_ms": wall_ms(product),
            "cg_step_ms": wall_ms(cg_step),
            "newton_iter_ms": wall_ms(newton_iter),
            "sgd_epoch_ms": wall_ms(sgd_epoch),
        }),
    );
    case
}

/// Seconds of CPU time this thread has used (not wall time: waiting costs nothing here).
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// CG steps the host-overhead case times.
const HOST_STEPS: usize = 32;

/// The host's share of a CG step, on a network and subsample so small that kernel time is
/// negligible: the CPU time this thread spends recording and submitting a step, the GPU
/// objects it creates and the times it blocks, per step (a solve of 1 + HOST_STEPS steps less
/// one of 1 step, medians over `runs`), with the residual checked as Newton-CG checks it on
/// this adapter. A device of its own, without timestamp queries.
fn host_case(runs: usize) -> Map<String, Value> {
    let gpu = Gpu::new().expect("a GPU adapter");
    let execution = Execution::from_env(&gpu).unwrap();
    let shape = Shape::new(1, 8, 8);
    let specs = [
        LayerSpec::conv(3, 4, 1, 1),
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2, stride: None },
        LayerSpec::dense(10),
    ];
    let problem = Problem::new(Network::new(shape, &specs).unwrap(), LOSS, C).unwrap();
    let n = problem.network.param_count();
    let data = synthetic(shape, 64);
    let theta = gpu.upload(&problem.network.init_params(0), "θ").unwrap();
    let grad = gpu.upload(&problem.network.init_params(1), "g").unwrap();
    let options = SubsampleOptions { size: 16, seed: 0, memory_budget: None };
    let s = Subsample::new(&execution, &problem, &data, &theta, &options).unwrap();
    let mut buffers = CgBuffers::new(&gpu, n).unwrap();
    let check_every = NewtonOptions::default().cg_check_every;
    let mut solve = |steps: usize| {
        let settings = CgSettings { xi: 0.0, max_steps: steps, check_every, sums_per_product: 1 };
        let outcome = cg::solve(&gpu, &s, 1.0, &grad, 1.0, &settings, &mut buffers).unwrap();
        assert_eq!(outcome.steps, steps, "CG stopped early: {outcome:?}");
    };
    solve(1 + HOST_STEPS); // compiles every pipeline
    let mut samples: Vec<[f64; 7]> = Vec::new();
    for _ in 0..runs {
        let (s0, c0, w0) = (gpu.stats(), thread_cpu_seconds(), Instant::now());
        solve(1);
        let (s1, c1, w1) = (gpu.stats(), thread_cpu_seconds(), Instant::now());
        solve(1 + HOST_STEPS);
        let (s2, c2, w2) = (gpu.stats(), thread_cpu_seconds(), Instant::now());
        let per = |a: u64, m: u64, b: u64| ((a - m) as f64 - (m - b) as f64) / HOST_STEPS as f64;
        samples.push([
            ((c2 - c1) - (c1 - c0)) / HOST_STEPS as f64 * 1e6,
            per(s2.objects, s1.objects, s0.objects),
            per(s2.waits, s1.waits, s0.waits),
            per(s2.submits, s1.submits, s0.submits),
            per(s2.dispatches, s1.dispatches, s0.dispatches),
            per(s2.paced_waits, s1.paced_waits, s0.paced_waits),
            ((w2 - w1).as_secs_f64() - (w1 - w0).as_secs_f64()) / HOST_STEPS as f64 * 1e6,
        ]);
    }
    let [host_us, objects, waits, submits, dispatches, paced, wall_us] =
        [0, 1, 2, 3, 4, 5, 6].map(|i| median(samples.iter().map(|s| s[i])));
    let mut case = Map::new();
    case.insert("network".into(), json!(problem.network.describe()));
    case.insert("params".into(), json!(n));
    case.insert("gn_size".into(), json!(options.size));
    case.insert("cg_check_every".into(), json!(check_every));
    case.insert("host_us_per_cg_step".into(), json!(host_us));
    // Kernel time is negligible on this problem: the wall time is the dispatches' own cost.
    case.insert("wall_us_per_cg_step".into(), json!(wall_us));
    case.insert("objects_per_cg_step".into(), json!(objects));
    case.insert("blocking_waits_per_cg_step".into(), json!(waits));
    case.insert("submits_per_cg_step".into(), json!(submits));
    case.insert("dispatches_per_cg_step".into(), json!(dispatches));
    case.insert("paced_waits_per_cg_step".into(), json!(paced));
    case
}

/// GFLOP/s of the tiled matrix product on GEMM_SIZE² matrices.
fn gemm_gflops(gpu: &Gpu, runs: usize) -> f64 {
    let len = GEMM_SIZE * GEMM_SIZE;
    let a = gpu.upload(&(0..len).map(|i| (i % 17) as f32 / 17.0).collect::<Vec<_>>(), "A").unwrap();
    let b = gpu.upload(&(0..len).map(|i| (i % 13) as f32 / 13.0).collect::<Vec<_>>(), "B").unwrap();
    let c = gpu.zeros::<f32>(len, "C").unwrap();
    let seconds = measure(gpu, 1, runs, || {
        let mut rec = gpu.recorder();
        matmul(&mut rec, GemmKernel::Tiled, (GEMM_SIZE, GEMM_SIZE, GEMM_SIZE), &a, &b, &c).unwrap();
        rec.submit().unwrap();
    });
    2.0 * (GEMM_SIZE as f64).powi(3) / seconds.best() / 1e9
}

fn main() {
    let plan = Plan::from_args();
    let options = GpuOptions { timestamps: true, ..GpuOptions::from_env().unwrap() };
    let gpu = Gpu::with_options(&options).expect("a GPU adapter");
    let timing = if gpu.timestamps() { "GPU time (timestamp queries)" } else { "wall time" };
    let adapter = gpu.adapter();
    // The kernels a run picks: NEWTON_WGPU_CONV's, else the tuner's (NEWTON_WGPU_TUNE).
    let tuner = Tuner::from_env(&gpu).unwrap();
    let fixed = std::env::var_os("NEWTON_WGPU_CONV").is_some_and(|v| !v.is_empty());
    let execution = Execution::from_env(&gpu).unwrap();
    let execution =
        if fixed || tuner.mode() == TuneMode::Off { execution } else { execution.with_tuner(&tuner) };
    println!("adapter: {adapter}, {} convolution kernels", execution.conv);
    println!(
        "{timing}; median of {} runs ({} for a Newton iteration and an SGD epoch over {} samples)",
        plan.runs, plan.long_runs, plan.samples
    );
    println!("{LOSS} loss, |S| = SGD mini-batch = batch, {CG_STEPS} CG steps per Newton iteration\n");

    let host = host_case(5 * plan.runs);
    let figure = |key: &str| host[key].as_f64().unwrap();
    println!(
        "host share of a CG step ({} parameters, |S| = {}, residual read every {} steps): {:.1} µs of CPU, {:.1} µs of wall time, {} objects created, {} blocking waits, {} paced waits, {} submits, {} dispatches\n",
        host["params"],
        host["gn_size"],
        host["cg_check_every"],
        figure("host_us_per_cg_step"),
        figure("wall_us_per_cg_step"),
        figure("objects_per_cg_step"),
        figure("blocking_waits_per_cg_step"),
        figure("paced_waits_per_cg_step"),
        figure("submits_per_cg_step"),
        figure("dispatches_per_cg_step"),
    );
    let gemm = if plan.one_case { None } else { Some(gemm_gflops(&gpu, plan.runs)) };
    if let Some(gemm) = gemm {
        println!("tiled matrix product {GEMM_SIZE}×{GEMM_SIZE}: {gemm:.2} GFLOP/s\n");
        println!(
            "{:<9} {:<9} {:>5} {:>9} {:>9} {:>9} {:>7} {:>9} {:>11} {:>10} {:>8} {:>9} {:>17}",
            "network",
            "input",
            "batch",
            "fwd ms",
            "grad ms",
            "Gv ms",
            "Gv/grad",
            "CG step",
            "Newton it.",
            "SGD epoch",
            "conv GF",
            "conv/gemm",
            "per CG step s/d/r"
        );
    }
    let mut cases = Map::new();
    for (name, shape, batch) in &plan.cases {
        let (shape, batch) = (*shape, *batch);
        let gemm = gemm.expect("measured when there are cases");
        let mut case = bench_case(&execution, &plan, name, shape, batch);
        let number = |key: &str| case[key].as_f64().unwrap();
        let conv = number("conv_gflops");
        println!(
            "{:<9} {:<9} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>9.1} {:>11.0} {:>10.0} {:>8.2} {:>9.2} {:>7}/{}/{}",
            name,
            shape.to_string(),
            batch,
            number("forward_ms"),
            number("grad_ms"),
            number("gv_ms"),
            number("gv_grad_ratio"),
            number("cg_step_ms"),
            number("newton_iter_ms"),
            number("sgd_epoch_ms"),
            conv,
            conv / gemm,
            number("submits_per_cg_step"),
            number("dispatches_per_cg_step"),
            number("readbacks_per_cg_step"),
        );
        case.insert("conv_gemm_ratio".into(), json!(conv / gemm));
        let key = match name.as_str() {
            "cnn4" => format!("{}x{}x{}_batch{batch}", shape.channels, shape.height, shape.width),
            _ => format!("{name}_{}x{}x{}_batch{batch}", shape.channels, shape.height, shape.width),
        };
        cases.insert(key, Value::Object(case));
    }

    let mut results = Map::new();
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    results.insert(
        "adapter".into(),
        json!({
            "name": adapter.name,
            "backend": format!("{:?}", adapter.backend),
            "device_type": format!("{:?}", adapter.device_type),
            "driver": format!("{} {}", adapter.driver, adapter.driver_info).trim(),
        }),
    );
    results.insert("conv_kernels".into(), json!(execution.conv.to_string()));
    let tuning = tuner.report();
    println!(
        "tuning ({}): {} choices timed in {:.2} s ({:.2} s compiling), {} from the cache",
        tuner.mode(),
        tuning.timed,
        tuning.seconds,
        tuning.compile_seconds,
        tuning.cached
    );
    results.insert(
        "tuning".into(),
        json!({
            "mode": tuner.mode().to_string(),
            "timed": tuning.timed,
            "cached": tuning.cached,
            "seconds": tuning.seconds,
            "compile_seconds": tuning.compile_seconds,
        }),
    );
    results.insert("timing".into(), json!(timing));
    results.insert("unix_time".into(), json!(since_epoch.as_secs()));
    results.insert("runs".into(), json!(plan.runs));
    results.insert("gemm_gflops".into(), json!(gemm));
    results.insert("gemm_size".into(), json!(GEMM_SIZE));
    // The 28×28×1, batch-256 case at the top level, then the host case's figures (its
    // submits per CG step are the tiny case's, the one that shows host overhead).
    if let Some(Value::Object(main_case)) = cases.get("1x28x28_batch256") {
        results.extend(main_case.clone());
    }
    for key in
        ["host_us_per_cg_step", "wall_us_per_cg_step", "objects_per_cg_step", "blocking_waits_per_cg_step"]
    {
        results.insert(key.into(), host[key].clone());
    }
    cases.insert("host".into(), Value::Object(host));
    results.insert("cases".into(), Value::Object(cases));

    let path = results_path("results.json");
    write_results(&path, &Value::Object(results));
    println!("\nwrote {}", path.display());
}
