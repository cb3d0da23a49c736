//! The device layer's own measurements (GPU time from timestamp queries) and limits.

mod common;

use std::time::Instant;

use common::gpu;
use newton_wgpu::gpu::{Gpu, GpuOptions};
use newton_wgpu::kernels::matmul::matmul;
use newton_wgpu::kernels::GemmKernel;

/// Submits one 128 × 128 × 128 product and returns the wall time until it finished.
fn one_product(gpu: &Gpu) -> f64 {
    let a = gpu.upload(&vec![0.5f32; 128 * 128], "A").unwrap();
    let c = gpu.zeros::<f32>(128 * 128, "C").unwrap();
    let started = Instant::now();
    let mut rec = gpu.recorder();
    matmul(&mut rec, GemmKernel::Tiled, (128, 128, 128), &a, &a, &c).unwrap();
    rec.submit().unwrap();
    gpu.wait().unwrap();
    started.elapsed().as_secs_f64()
}

#[test]
fn timestamp_queries_time_the_submitted_work_when_asked_for() {
    let options = GpuOptions { timestamps: true, ..GpuOptions::from_env().unwrap() };
    let timed = Gpu::with_options(&options).unwrap();
    // Where the adapter has no timestamp queries, wall time is all there is; the software GPU
    // of CI (lavapipe) has them, so there this test always measures.
    let supported = timed.timestamps();
    if timed.is_software() {
        assert!(supported, "{} should support timestamp queries", timed.adapter());
    }
    one_product(&timed); // compiles the pipeline
    timed.take_gpu_time().unwrap();
    let wall = one_product(&timed);
    let gpu_time = timed.take_gpu_time().unwrap();
    assert_eq!(gpu_time.is_some(), supported);
    if let Some(gpu_time) = gpu_time {
        let seconds = gpu_time.as_secs_f64();
        assert!(seconds > 0.0 && seconds <= wall, "GPU time {seconds} s, wall time {wall} s");
    }
    // What was taken is not counted again.
    if supported {
        assert_eq!(timed.take_gpu_time().unwrap(), Some(std::time::Duration::ZERO));
    }

    // Without asking, nothing is timed.
    assert!(!gpu().timestamps());
    assert_eq!(gpu().take_gpu_time().unwrap(), None);
}

/// θ larger than one storage binding is refused when the problem meets the device, with what
/// would help: no chunk size changes it, so the message does not suggest one.
#[test]
fn parameters_beyond_one_binding_are_refused_without_advising_a_smaller_batch() {
    use newton_wgpu::loss::Loss;
    use newton_wgpu::nn::{LayerSpec, Network, Shape};
    use newton_wgpu::objective::Objective;
    use newton_wgpu::{Error, Execution, Problem};
    let gpu = gpu();
    let limit = gpu.max_binding_bytes();
    // One dense layer on 64×64 inputs with enough units that 4·n bytes pass the limit.
    let units = (limit / 4 / 4096 + 1) as usize;
    let network = Network::new(Shape::new(1, 64, 64), &[LayerSpec::dense(units)]).unwrap();
    let problem = Problem::new(network, Loss::SquaredError, 0.01).unwrap();
    let error = Objective::new(&Execution::new(gpu), &problem).err().expect("θ cannot fit");
    assert!(matches!(error, Error::ParamsTooLarge { bytes, .. } if bytes > limit), "{error}");
    let message = error.to_string();
    assert!(message.contains("no chunk size changes that"), "{message}");
    assert!(!message.contains("--bsize") && !message.contains("smaller batch"), "{message}");
}
