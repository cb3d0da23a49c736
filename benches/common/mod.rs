//! What the benches share: synthetic data, medians, and where their JSON goes.

use std::path::PathBuf;

use newton_wgpu::data::Dataset;
use newton_wgpu::nn::Shape;

/// `len` samples of `shape` in 10 classes, the same on every run.
pub fn synthetic(shape: Shape, len: usize) -> Dataset {
    let images = (0..len * shape.len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let labels = (0..len).map(|i| (i * 7 % 10) as u32).collect();
    Dataset::new(shape, 10, images, labels, "synthetic".as_ref()).unwrap()
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Where the results go: `--json PATH`, else target/bench/`name` under $CARGO_TARGET_DIR or
/// the working directory (cargo runs benches from the crate root).
pub fn results_path(name: &str) -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    if let Some(path) = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)) {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("bench").join(name)
}

/// Writes `results` to `path` (through a temporary file, as the program writes), creating
/// its folder.
pub fn write_results(path: &std::path::Path, results: &serde_json::Value) {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).unwrap();
    }
    let text = serde_json::to_string_pretty(results).unwrap() + "\n";
    newton_wgpu::output::write(path, text.as_bytes()).unwrap();
}
