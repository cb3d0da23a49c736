//! Per-layer cost of every convolution kernel of cnn4 and cnn4-small side by side on the
//! adapter at hand (windowed: register windows; tiled, tile4: workgroup-memory implicit matrix
//! products, scalar and vec4; direct{8,4,2,1}x4: vec4 register blocks): the forward pass,
//! forward mode (Jv), the backward pass to the input and the weight gradient (θ's filters
//! packed once beforehand, as training packs them once per θ; forward mode packs its
//! direction's). Median GPU time of several runs (wall time where the adapter has no timestamp
//! queries), the GFLOP/s of the fastest kernel and of the one the adapter's type chose before
//! the tuner, and the fraction of the FP32 peak of the machine's CPU when the adapter is a
//! software one; beside them PyTorch's CPU time for the same layer and pass, timed by
//! scripts/torch_layers.py in the same run right after ours (`torch.set_num_threads` = this
//! machine's cores; `BENCH_PYTHON` names the interpreter, default python3), and our time over
//! PyTorch's. Then every product kernel on 1024 × 1024 matrices.
//!
//! `cargo bench --bench kernels [-- --runs N] [-- --dump DIR]`; `BENCH_ONLY=cnn4-small` runs
//! one network (`BENCH_ONLY=gemm` the products alone). `-- --checks` times the windowed and
//! tiled kernels with wgpu's runtime checks and without them instead (two devices of the
//! adapter, alternately). With `--dump DIR` every kernel's output on the bench's fixed inputs is written
//! to DIR as raw little-endian f32 (`{network}-{c}x{h}x{w}-layer{i}-{pass}-{kind}.f32`), so that
//! two builds can be compared bit for bit (`cmp`).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use newton_wgpu::gpu::{Gpu, GpuBuffer, GpuOptions, Recorder, ShaderChecks};
use newton_wgpu::kernels::conv::{ConvLayer, PARTIAL_VALUES};
use newton_wgpu::kernels::matmul::matmul;
use newton_wgpu::kernels::GemmKernel;
use newton_wgpu::nn::{cnn4, cnn4_small, ConvGeometry, Network, NetworkError, Shape};
use newton_wgpu::{ConvKernel, ConvPlan};

const BATCH: usize = 256;

/// The passes of a convolution layer.
const PASSES: [&str; 4] = ["forward", "jvp", "backward_input", "weight_grad"];

struct Settings {
    runs: usize,
    dump: Option<PathBuf>,
    /// Time each kernel with and without wgpu's runtime checks instead.
    checks: bool,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
        Self {
            runs: value("--runs").map_or(3, |v| v.parse().expect("--runs takes a number")),
            dump: value("--dump").map(PathBuf::from),
            checks: args.iter().any(|a| a == "--checks"),
        }
    }
}

/// Seconds of one recorded pass (GPU time where the adapter has timestamp queries).
fn seconds(gpu: &Gpu, record: &mut impl FnMut(&mut Recorder)) -> f64 {
    let start = Instant::now();
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit().unwrap();
    gpu.wait().unwrap();
    let wall = start.elapsed().as_secs_f64();
    gpu.take_gpu_time().unwrap().map_or(wall, |d| d.as_secs_f64())
}

/// Median seconds of one recorded pass over `runs` runs, after a run that compiles pipelines.
fn median_seconds(gpu: &Gpu, runs: usize, mut record: impl FnMut(&mut Recorder)) -> f64 {
    seconds(gpu, &mut record);
    let mut times: Vec<f64> = (0..runs).map(|_| seconds(gpu, &mut record)).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Values in [-0.5, 0.5) in a fixed pattern that differs by `salt`.
fn buffer(gpu: &Gpu, len: usize, salt: usize) -> GpuBuffer<f32> {
    let values: Vec<f32> = (0..len).map(|i| (((i + salt) * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    gpu.upload(&values, "bench").unwrap()
}

/// The buffers of one layer's passes.
struct Layer {
    layer: ConvLayer,
    theta: GpuBuffer<f32>,
    v: GpuBuffer<f32>,
    x: GpuBuffer<f32>,
    rx: GpuBuffer<f32>,
    y: GpuBuffer<f32>,
    dy: GpuBuffer<f32>,
    dx: GpuBuffer<f32>,
    grad: GpuBuffer<f32>,
    partial: GpuBuffer<f32>,
}

impl Layer {
    fn new(gpu: &Gpu, g: &ConvGeometry, plan: ConvPlan, network: &Network) -> Self {
        let (input, output) = (BATCH * g.input.len(), BATCH * g.output.len());
        let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
        // θ's filters are packed once per θ, as training packs them.
        let layer = ConvLayer::new(gpu, plan, g).unwrap();
        let mut rec = gpu.recorder();
        layer.pack_theta(&mut rec, &theta).unwrap();
        rec.submit().unwrap();
        Self {
            layer,
            theta,
            v: gpu.upload(&network.init_params(1), "v").unwrap(),
            x: buffer(gpu, input, 0),
            rx: buffer(gpu, input, 1),
            y: gpu.zeros(output, "y").unwrap(),
            dy: buffer(gpu, output, 2),
            dx: gpu.zeros(input, "dx").unwrap(),
            grad: gpu.zeros(network.param_count(), "grad").unwrap(),
            partial: gpu.zeros(PARTIAL_VALUES.max(g.params()), "partial").unwrap(),
        }
    }

    /// Records `pass` and returns the buffer it writes.
    fn record(&self, rec: &mut Recorder, pass: &str) -> &GpuBuffer<f32> {
        let (layer, s) = (&self.layer, self);
        match pass {
            "forward" => layer.forward(rec, BATCH, &s.x, &s.theta, &s.y).map(|_| &s.y),
            "jvp" => layer.jvp(rec, BATCH, &s.x, Some(&s.rx), &s.theta, &s.v, &s.y).map(|_| &s.y),
            "backward_input" => layer.backward_input(rec, BATCH, &s.dy, &s.theta, &s.dx).map(|_| &s.dx),
            "weight_grad" => {
                layer.backward_params(rec, BATCH, &s.x, &s.dy, &s.partial, &s.grad).map(|_| &s.grad)
            }
            _ => unreachable!("a pass of PASSES"),
        }
        .unwrap()
    }

    /// Runs `pass` once on cleared outputs and writes what it wrote to `path`.
    fn dump(&self, gpu: &Gpu, pass: &str, path: &Path) {
        for out in [&self.y, &self.dx, &self.grad] {
            gpu.write(out, &vec![0.0; out.len()]).unwrap();
        }
        let mut rec = gpu.recorder();
        let out = self.record(&mut rec, pass);
        rec.submit().unwrap();
        let bytes: Vec<u8> = gpu.read(out).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).unwrap();
    }
}

type Builder = fn(Shape, usize) -> Result<Network, NetworkError>;
const CASES: [(&str, Builder, Shape); 4] = [
    ("cnn4", cnn4, Shape::new(1, 28, 28)),
    ("cnn4", cnn4, Shape::new(3, 32, 32)),
    ("cnn4-small", cnn4_small, Shape::new(1, 28, 28)),
    ("cnn4-small", cnn4_small, Shape::new(3, 32, 32)),
];

/// Seconds by layer (its index, as text) and pass.
type LayerSeconds = HashMap<String, HashMap<String, f64>>;

/// PyTorch's median seconds per layer (by index) and pass of `network`, timed now by
/// scripts/torch_layers.py on this machine's cores, with its version; or why there are none.
fn torch_seconds(network: &Network, runs: usize) -> Result<(String, LayerSeconds), String> {
    let layers: Vec<serde_json::Value> = network
        .conv_geometries()
        .enumerate()
        .map(|(index, g)| {
            serde_json::json!({
                "id": index.to_string(), "c": g.input.channels, "h": g.input.height, "w": g.input.width,
                "out": g.output.channels, "kh": g.kernel_h, "kw": g.kernel_w,
                "stride": g.stride, "padding": g.padding,
            })
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec =
        serde_json::json!({ "batch": BATCH, "runs": runs.max(3), "threads": threads, "layers": layers });
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/torch_layers.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python} could not run: {e}"))?;
    child.stdin.take().expect("piped").write_all(spec.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{script} answered {:?}: {e}", String::from_utf8_lossy(&output.stdout)))?;
    if let Some(error) = answer["error"].as_str() {
        return Err(error.to_owned());
    }
    let seconds = serde_json::from_value(answer["seconds"].clone()).map_err(|e| e.to_string())?;
    let version = format!("PyTorch {} on {} threads", answer["torch"], answer["threads"]);
    Ok((version, seconds))
}

/// The passes training runs on layer `index` (never Jv nor the backward pass to the input in
/// the first layer: R(x) = 0 there, and the data needs no gradient).
fn passes(index: usize) -> impl Iterator<Item = &'static str> {
    PASSES.into_iter().filter(move |pass| index > 0 || !matches!(*pass, "jvp" | "backward_input"))
}

/// `--checks`: every kernel with wgpu's runtime checks and without them, on two devices of
/// the same adapter, timed alternately run by run; the median of the ratios.
fn compare_checks(settings: &Settings) {
    let open = |shader_checks| {
        let options = GpuOptions { timestamps: true, shader_checks, ..GpuOptions::from_env().unwrap() };
        Gpu::with_options(&options).expect("a GPU adapter")
    };
    let [checked, unchecked] = [ShaderChecks::All, ShaderChecks::None].map(open);
    println!("adapter: {}", checked.adapter());
    println!(
        "median of {} alternate runs of each, batch {BATCH}: with wgpu's runtime checks and without",
        settings.runs
    );
    let only = std::env::var("BENCH_ONLY").ok();
    for (name, build, input) in CASES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let network = build(input, 10).unwrap();
        println!("\n{name} on {input}");
        println!(
            "{:<18} {:<15} {:<9} {:>11} {:>13} {:>17}",
            "layer", "pass", "kind", "checked ms", "unchecked ms", "unchecked/checked"
        );
        for (index, g) in network.conv_geometries().enumerate() {
            for pass in passes(index) {
                for kind in [ConvKernel::Windowed, ConvKernel::Gemm(GemmKernel::Tiled)] {
                    let layers =
                        [&checked, &unchecked].map(|gpu| Layer::new(gpu, g, ConvPlan::all(kind), &network));
                    let layers = &layers;
                    let record = |k: usize| {
                        move |rec: &mut Recorder| {
                            layers[k].record(rec, pass);
                        }
                    };
                    let gpus = [&checked, &unchecked];
                    // A first run of each compiles its pipelines.
                    for (k, gpu) in gpus.iter().enumerate() {
                        seconds(gpu, &mut record(k));
                    }
                    let (mut times, mut ratios) = ([Vec::new(), Vec::new()], Vec::new());
                    for run in 0..settings.runs {
                        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
                        let mut t = [0.0; 2];
                        for k in order {
                            t[k] = seconds(gpus[k], &mut record(k));
                            times[k].push(t[k]);
                        }
                        ratios.push(t[1] / t[0]);
                    }
                    let median = |mut v: Vec<f64>| {
                        v.sort_by(f64::total_cmp);
                        v[v.len() / 2]
                    };
                    let [c, u] = times.map(median);
                    println!(
                        "{:<18} {:<15} {:<9} {:>11.2} {:>13.2} {:>17.3}",
                        format!("{}→{}", g.input, g.output),
                        pass,
                        kind.to_string(),
                        c * 1e3,
                        u * 1e3,
                        median(ratios)
                    );
                }
            }
        }
    }
}

/// The FP32 peak of this machine's CPU for 256-bit code, from /proc/cpuinfo: cores × the
/// clock × flops per cycle (32 with AVX2 and FMA: two 8-wide FMA units), and how it was read.
/// llvmpipe compiles for 256-bit vectors ("256 bits" in its name), so AVX-512 adds nothing.
fn cpu_peak_gflops() -> Option<(f64, String)> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        info.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map(str::trim)
    };
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    let flags = field("flags")?;
    let per_cycle = if flags.contains("avx2") && flags.contains("fma") { 32.0 } else { 16.0 };
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    let peak = cores * mhz / 1e3 * per_cycle;
    Some((peak, format!("{cores} cores × {:.2} GHz × {per_cycle} flop/cycle = {peak:.0} GFLOP/s", mhz / 1e3)))
}

/// Every product kernel on GEMM_SIZE² matrices: milliseconds and GFLOP/s.
fn bench_gemm(gpu: &Gpu, runs: usize, peak: Option<f64>) {
    const GEMM_SIZE: usize = 1024;
    let len = GEMM_SIZE * GEMM_SIZE;
    let (a, b, c) = (buffer(gpu, len, 3), buffer(gpu, len, 4), gpu.zeros::<f32>(len, "C").unwrap());
    println!("\nmatrix product {GEMM_SIZE}×{GEMM_SIZE}×{GEMM_SIZE}");
    println!("{:<12} {:>10} {:>10} {:>8}", "kernel", "ms", "GFLOP/s", "of peak");
    for kernel in GemmKernel::ALL {
        let shape = (GEMM_SIZE, GEMM_SIZE, GEMM_SIZE);
        let t = median_seconds(gpu, runs, |rec| matmul(rec, kernel, shape, &a, &b, &c).unwrap());
        let gflops = 2.0 * (GEMM_SIZE as f64).powi(3) / t / 1e9;
        let share = peak.map_or("-".into(), |p| format!("{:.1}%", 100.0 * gflops / p));
        println!("{:<12} {:>10.2} {:>10.2} {:>8}", kernel.to_string(), t * 1e3, gflops, share);
    }
}

fn main() {
    let settings = Settings::from_args();
    if settings.checks {
        return compare_checks(&settings);
    }
    let options = GpuOptions { timestamps: true, ..GpuOptions::from_env().unwrap() };
    let gpu = Gpu::with_options(&options).expect("a GPU adapter");
    let timing = if gpu.timestamps() { "GPU time (timestamp queries)" } else { "wall time" };
    // What ran before the tuner: windowed kernels on software adapters, tiled ones elsewhere.
    let before = if gpu.is_software() { ConvKernel::Windowed } else { ConvKernel::Gemm(GemmKernel::Tiled) };
    println!("adapter: {}", gpu.adapter());
    println!(
        "{timing}, median of {} runs, batch {BATCH}; before the tuner this adapter ran {before}",
        settings.runs
    );
    let peak = gpu.is_software().then(cpu_peak_gflops).flatten();
    if let Some((_, how)) = &peak {
        println!("the CPU under the software adapter: FP32 peak {how}");
    }
    let peak = peak.map(|(p, _)| p);
    if let Some(dir) = &settings.dump {
        std::fs::create_dir_all(dir).unwrap();
    }
    let only = std::env::var("BENCH_ONLY").ok();
    for (name, build, input) in CASES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let network = build(input, 10).unwrap();
        println!("\n{name} on {input}: ms per kernel; the fastest; its GFLOP/s and {before}'s");
        println!("(weight_grad: the one kernel in groups of 16, 4, 1 and 64 samples, in the first columns)");
        let names: Vec<String> = ConvKernel::ALL.iter().map(|k| k.to_string()).collect();
        let mut rows = Vec::new();
        let mut header = format!("{:<18} {:<15}", "layer", "pass");
        names.iter().for_each(|n| header += &format!(" {n:>9}"));
        header += &format!(" {:>10} {:>9} {:>9} {:>8} {:>8}", "fastest", "GF/s", "before", "gain", "of peak");
        for (index, g) in network.conv_geometries().enumerate() {
            let flops = 2.0 * g.macs_per_sample() as f64 * BATCH as f64;
            for pass in passes(index) {
                // The weight gradient has one kernel whatever the plan, and a choice of groups.
                let candidates: Vec<(String, ConvPlan)> = if pass == "weight_grad" {
                    let plan = ConvPlan::all(ConvKernel::fallback());
                    let group = |n: usize| (format!("groups{n}"), ConvPlan { weight_group: n, ..plan });
                    ConvPlan::WEIGHT_GROUPS.into_iter().map(group).collect()
                } else {
                    ConvKernel::ALL.into_iter().map(|k| (k.to_string(), ConvPlan::all(k))).collect()
                };
                let old = if pass == "weight_grad" {
                    let default = ConvPlan::DEFAULT_WEIGHT_GROUP;
                    ConvPlan::WEIGHT_GROUPS.iter().position(|&n| n == default).unwrap()
                } else {
                    ConvKernel::ALL.iter().position(|&k| k == before).unwrap()
                };
                let times: Vec<f64> = candidates
                    .iter()
                    .map(|(kernel, plan)| {
                        let layer = Layer::new(&gpu, g, *plan, &network);
                        if let Some(dir) = &settings.dump {
                            let shape = format!("{}x{}x{}", input.channels, input.height, input.width);
                            let file = format!("{name}-{shape}-layer{index}-{pass}-{kernel}.f32");
                            layer.dump(&gpu, pass, &dir.join(file));
                        }
                        median_seconds(&gpu, settings.runs, |rec| {
                            layer.record(rec, pass);
                        })
                    })
                    .collect();
                // Jv does two products' work.
                let flops = if pass == "jvp" { 2.0 * flops } else { flops };
                let best = (0..times.len()).min_by(|&a, &b| times[a].total_cmp(&times[b])).unwrap();
                let mut row = format!("{:<18} {:<15}", format!("{}→{}", g.input, g.output), pass);
                for k in 0..ConvKernel::ALL.len() {
                    match times.get(k) {
                        Some(t) => row += &format!(" {:>9.2}", t * 1e3),
                        None => row += &format!(" {:>9}", "-"),
                    }
                }
                let gflops = |t: f64| flops / t / 1e9;
                let share = peak.map_or("-".into(), |p| format!("{:.1}%", 100.0 * gflops(times[best]) / p));
                row += &format!(
                    " {:>10} {:>9.2} {:>9.2} {:>8.2} {:>8}",
                    candidates[best].0,
                    gflops(times[best]),
                    gflops(times[old]),
                    times[old] / times[best],
                    share
                );
                rows.push((index, pass, times[best], row));
            }
        }
        // PyTorch on the same layers, now, in this run.
        match torch_seconds(&network, settings.runs) {
            Ok((version, torch)) => {
                println!("{header} {:>9} {:>10}", "torch ms", "ours/torch");
                let (mut all_ours, mut all_theirs) = (0.0, 0.0);
                for (index, pass, ours, row) in rows {
                    let theirs = torch[&index.to_string()][pass];
                    println!("{row} {:>9.2} {:>10.2}", theirs * 1e3, ours / theirs);
                    (all_ours, all_theirs) = (all_ours + ours, all_theirs + theirs);
                }
                println!(
                    "every layer and pass once: ours {:.1} ms, PyTorch {:.1} ms, ours/torch {:.2}",
                    all_ours * 1e3,
                    all_theirs * 1e3,
                    all_ours / all_theirs
                );
                println!("(torch: {version}; ours/torch is the fastest kernel's time over PyTorch's)");
            }
            Err(why) => {
                println!("{header}");
                rows.iter().for_each(|row| println!("{}", row.3));
                println!("(no PyTorch figures: {why})");
            }
        }
    }
    if only.as_deref().is_none_or(|o| o == "gemm") {
        bench_gemm(&gpu, settings.runs, peak);
    }
}
