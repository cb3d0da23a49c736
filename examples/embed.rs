//! Embedding newton-wgpu in an application: build a network, train it by Newton-CG with an
//! observer that draws the application's own progress, save the model, load it, predict.
//!
//!     cargo run --release --example embed

use newton_wgpu::data;
use newton_wgpu::gpu::Gpu;
use newton_wgpu::loss::Loss;
use newton_wgpu::model::Model;
use newton_wgpu::nn::{LayerSpec, Network};
use newton_wgpu::objective::Objective;
use newton_wgpu::optim::newton::{self, NewtonOptions};
use newton_wgpu::optim::Record;
use newton_wgpu::{Execution, Problem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new()?;
    println!("training on {}", gpu.adapter());

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let mut split = data::load_dir(dir.as_ref())?;
    split.train = split.train.head(2000);
    let normalizer = split.normalize();

    let network = Network::new(
        split.train.shape,
        &[
            LayerSpec::conv(5, 8, 1, 2),
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: 2, stride: None },
            LayerSpec::conv(3, 16, 1, 1),
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: 2, stride: None },
            LayerSpec::dense(10),
        ],
    )?;
    let theta = gpu.upload(&network.init_params(42), "θ")?;
    // What to minimise, how to run it, and Newton-CG's own settings.
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01)?;
    let execution = Execution::new(&gpu);
    let options = NewtonOptions { iter_max: 5, ..Default::default() };

    // The observer: any FnMut(&Record). Here, a one-line progress display.
    let mut progress = |record: &Record| {
        if let Record::Newton(r) = record {
            let acc = r.test_acc.map_or(String::new(), |a| format!(", test accuracy {:.1}%", 100.0 * a));
            println!(
                "iteration {:>2}: f = {:.4}, {} CG steps, {:.1} s{acc}",
                r.iter, r.f, r.cg_iters, r.elapsed_s
            );
        }
    };
    newton::train(&execution, &problem, &split.train, Some(&split.test), &theta, &options, &mut progress)?;

    let path = std::env::temp_dir().join("newton-wgpu-embed.safetensors");
    Model {
        network: problem.network.clone(),
        theta: gpu.read(&theta)?,
        normalizer: Some(normalizer),
        loss: problem.loss,
    }
    .save(&path)?;
    println!("saved {}", path.display());

    let model = Model::load_for(&path, &problem.network)?;
    let weights = gpu.upload(&model.theta, "loaded θ")?;
    let mut objective = Objective::new(&execution, &problem)?;
    let predictions = objective.outputs(&split.test.head(5), &weights)?;
    for (i, z) in predictions.chunks_exact(10).enumerate() {
        let digit = (0..10).fold(0, |best, k| if z[k] > z[best] { k } else { best });
        println!("test image {i}: predicted {digit}, labelled {}", split.test.labels[i]);
    }
    Ok(())
}
