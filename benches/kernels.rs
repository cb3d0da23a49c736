//! Per-layer cost of the convolution kernels of cnn4 and cnn4-small, both kinds side by side on
//! the adapter at hand (windowed: registers only; tiled: workgroup-memory implicit matrix
//! products), so that the choice by adapter type (`ConvKernels::for_device_type`) rests on a
//! measurement: median GPU time of several runs (wall time where the adapter has no timestamp
//! queries) and the GFLOP/s that implies. `cargo bench --bench kernels`; `BENCH_ONLY=cnn4-small`
//! runs one network.

use std::time::Instant;

use newton_wgpu::gpu::{ConvKernels, Gpu, GpuBuffer, GpuOptions, Recorder};
use newton_wgpu::kernels::conv;
use newton_wgpu::nn::{cnn4, cnn4_small, ConvGeometry, Network, NetworkError, Shape};

const RUNS: usize = 3;
const BATCH: usize = 256;

/// Median seconds of one recorded pass over `RUNS` runs, after a run that compiles pipelines.
fn median_seconds(gpu: &Gpu, mut record: impl FnMut(&mut Recorder)) -> f64 {
    let mut times = Vec::new();
    for run in 0..=RUNS {
        let start = Instant::now();
        let mut rec = gpu.recorder();
        record(&mut rec);
        rec.submit();
        gpu.wait().unwrap();
        let wall = start.elapsed().as_secs_f64();
        let seconds = gpu.take_gpu_time().unwrap().map_or(wall, |d| d.as_secs_f64());
        if run > 0 {
            times.push(seconds);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn buffer(gpu: &Gpu, len: usize) -> GpuBuffer<f32> {
    let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    gpu.upload(&values, "bench").unwrap()
}

/// Seconds of the forward pass and the backward pass to the input of layer `g` (the weight
/// gradient has one kernel for every adapter); the backward pass to the input of the first
/// layer is None: training never runs it.
fn time_layer(gpu: &Gpu, g: &ConvGeometry, first: bool, network: &Network) -> [Option<f64>; 2] {
    let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
    let x = buffer(gpu, BATCH * g.input.len());
    let y = buffer(gpu, BATCH * g.output.len());
    let dx = buffer(gpu, BATCH * g.input.len());
    let filters = buffer(gpu, conv::filter_scratch_len(g));
    [
        Some(median_seconds(gpu, |rec| conv::forward(rec, g, BATCH, &x, &theta, &filters, &y).unwrap())),
        (!first).then(|| {
            median_seconds(gpu, |rec| conv::backward_input(rec, g, BATCH, &y, &theta, &filters, &dx).unwrap())
        }),
    ]
}

fn main() {
    let open = |kernels| {
        let options =
            GpuOptions { conv_kernels: Some(kernels), timestamps: true, ..GpuOptions::from_env().unwrap() };
        Gpu::with_options(&options).expect("a GPU adapter")
    };
    let gpus = [open(ConvKernels::Windowed), open(ConvKernels::Tiled)];
    let timing = if gpus[0].timestamps() { "GPU time (timestamp queries)" } else { "wall time" };
    println!("adapter: {}", gpus[0].adapter());
    println!(
        "{timing}, median of {RUNS} runs, batch {BATCH}; chosen for this adapter: {} kernels",
        ConvKernels::for_device_type(gpus[0].adapter().device_type)
    );
    type Builder = fn(Shape, usize) -> Result<Network, NetworkError>;
    let cases: [(&str, Builder, Shape); 3] = [
        ("cnn4", cnn4, Shape::new(1, 28, 28)),
        ("cnn4", cnn4, Shape::new(3, 32, 32)),
        ("cnn4-small", cnn4_small, Shape::new(1, 28, 28)),
    ];
    let only = std::env::var("BENCH_ONLY").ok();
    for (name, build, input) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let network = build(input, 10).unwrap();
        println!("\n{name} on {input}");
        println!(
            "{:<18} {:<16} {:>12} {:>12} {:>9} {:>9} {:>13}",
            "layer", "pass", "windowed ms", "tiled ms", "win GF/s", "tiled GF/s", "tiled/windowed"
        );
        for (index, g) in network.conv_geometries().enumerate() {
            let flops = 2.0 * g.macs_per_sample() as f64 * BATCH as f64;
            let [windowed, tiled] = [&gpus[0], &gpus[1]].map(|gpu| time_layer(gpu, g, index == 0, &network));
            for (p, pass) in ["forward", "backward_input"].into_iter().enumerate() {
                let (Some(w), Some(t)) = (windowed[p], tiled[p]) else { continue };
                println!(
                    "{:<18} {:<16} {:>12.2} {:>12.2} {:>9.2} {:>9.2} {:>13.2}",
                    format!("{}→{}", g.input, g.output),
                    pass,
                    w * 1e3,
                    t * 1e3,
                    flops / w / 1e9,
                    flops / t / 1e9,
                    t / w
                );
            }
        }
    }
}
