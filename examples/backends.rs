//! Choosing the backend explicitly: `cargo run --release --example backends -- vulkan`
//! (or metal, dx12, gl), then a small f + ∇f evaluation to show the adapter works.

use newton_wgpu::gpu::{Gpu, GpuOptions};
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4_small, Shape};
use newton_wgpu::objective::Objective;
use newton_wgpu::{Execution, Problem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "vulkan".into());
    let backends = match name.as_str() {
        "vulkan" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" => wgpu::Backends::DX12,
        "gl" => wgpu::Backends::GL,
        other => return Err(format!("unknown backend {other:?}: expected vulkan, metal, dx12 or gl").into()),
    };
    let gpu = match Gpu::with_options(&GpuOptions { backends, ..GpuOptions::default() }) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("asked for {name}: {e}");
            return Ok(());
        }
    };
    let adapter = gpu.adapter();
    println!(
        "asked for {name}, got: {} ({:?}, {:?}, driver {} {})",
        adapter.name, adapter.backend, adapter.device_type, adapter.driver, adapter.driver_info
    );

    let shape = Shape::new(1, 28, 28);
    let network = cnn4_small(shape, 10)?;
    let samples = 32;
    let images: Vec<f32> =
        (0..samples * shape.len()).map(|i| ((i * 37) % 255) as f32 / 255.0 - 0.5).collect();
    let labels: Vec<u32> = (0..samples as u32).map(|i| i % 10).collect();
    let data = newton_wgpu::data::Dataset::new(shape, 10, images, labels, "synthetic".as_ref())?;
    let theta = gpu.upload(&network.init_params(0), "θ")?;
    let grad = gpu.zeros::<f32>(network.param_count(), "∇f")?;
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01)?;
    let execution = Execution::new(&gpu).with_bsize(samples);
    let eval = Objective::new(&execution, &problem)?.value_and_grad(&data, &theta, &grad)?;
    println!("f = {:.6}, ‖∇f‖ = {:.6} on {samples} synthetic samples", eval.f, eval.grad_norm);
    Ok(())
}
