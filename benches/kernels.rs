//! Per-layer cost of the convolution kernels of cnn4 and of a whole f + ∇f chunk, on the
//! adapter at hand: median wall time of several runs (each run submits the kernel `REPS`
//! times and waits), and the GFLOP/s that implies. `cargo bench --bench kernels`.

use std::time::Instant;

use newton_wgpu::gpu::{Gpu, GpuBuffer};
use newton_wgpu::kernels::conv;
use newton_wgpu::nn::{cnn4, cnn4_small, ConvGeometry, Network, NetworkError, Shape};

const RUNS: usize = 5;
const REPS: usize = 3;

fn median_seconds(gpu: &Gpu, mut record: impl FnMut(&mut newton_wgpu::gpu::Recorder)) -> f64 {
    let mut times = Vec::new();
    for run in 0..=RUNS {
        let start = Instant::now();
        let mut rec = gpu.recorder();
        for _ in 0..REPS {
            record(&mut rec);
        }
        rec.submit();
        gpu.wait().unwrap();
        if run > 0 {
            // The first run compiles pipelines.
            times.push(start.elapsed().as_secs_f64() / REPS as f64);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn buffer(gpu: &Gpu, len: usize) -> GpuBuffer<f32> {
    let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    gpu.upload(&values, "bench").unwrap()
}

fn bench_layer(gpu: &Gpu, g: &ConvGeometry, theta: &GpuBuffer<f32>, batch: usize) {
    let x = buffer(gpu, batch * g.input.len());
    let y = buffer(gpu, batch * g.output.len());
    let dx = buffer(gpu, batch * g.input.len());
    let grad = buffer(gpu, theta.len());
    let partial = buffer(gpu, 4 << 20);
    let filters = buffer(gpu, conv::filter_scratch_len(g));
    let flops = 2.0 * g.macs_per_sample() as f64 * batch as f64;
    let passes: [(&str, f64); 3] = [
        (
            "forward",
            median_seconds(gpu, |rec| conv::forward(rec, g, batch, &x, theta, &filters, &y).unwrap()),
        ),
        (
            "backward_input",
            median_seconds(gpu, |rec| conv::backward_input(rec, g, batch, &y, theta, &filters, &dx).unwrap()),
        ),
        (
            "backward_params",
            median_seconds(gpu, |rec| conv::backward_params(rec, g, batch, &x, &y, &partial, &grad).unwrap()),
        ),
    ];
    for (name, seconds) in passes {
        println!(
            "{:<12} {:<16} {:>9.2} ms {:>8.2} GFLOP/s",
            format!("{}→{}", g.input, g.output),
            name,
            seconds * 1e3,
            flops / seconds / 1e9
        );
    }
}

fn main() {
    let gpu = Gpu::new().expect("a GPU adapter");
    println!("adapter: {}", gpu.adapter());
    type Builder = fn(Shape, usize) -> Result<Network, NetworkError>;
    let cases: [(&str, Builder, Shape); 3] = [
        ("cnn4", cnn4, Shape::new(1, 28, 28)),
        ("cnn4", cnn4, Shape::new(3, 32, 32)),
        ("cnn4-small", cnn4_small, Shape::new(1, 28, 28)),
    ];
    let batch = 256;
    // BENCH_ONLY=cnn4-small (say) runs one network only.
    let only = std::env::var("BENCH_ONLY").ok();
    for (name, build, input) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let network = build(input, 10).unwrap();
        let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
        println!("\n{name} on {input}, batch {batch}");
        for g in network.conv_geometries() {
            bench_layer(&gpu, g, &theta, batch);
        }
    }
}
