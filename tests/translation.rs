//! Every kernel, in every specialisation the host can dispatch (each set of values of its
//! override constants), translates with naga to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12),
//! and the SPIR-V passes `spirv-val` (Debian's spirv-tools; CI installs it). This is the only
//! check the Metal and DX12 backends get on Linux; it needs no GPU. Shaders that sum over
//! workgroups are translated with each definition of `workgroup_sum` (tree and subgroups).

use std::collections::BTreeMap;
use std::process::Command;

use newton_wgpu::gpu::{KernelInfo, Reduction, Shader, WORKGROUP_SIZE};
use newton_wgpu::kernels::{registry, SHADERS};

/// The values each override constant takes in some dispatch (src/kernels): CHUNK is k_w for
/// k_w ≤ 8, else 4; KH × KW ≤ 25 taps for the sliding weight gradient; the row counts of the
/// product kernels; the booleans both ways. A new override must be added here.
fn values(name: &str) -> Vec<f64> {
    match name {
        "CHUNK" => (1..=8).map(f64::from).collect(),
        "KH" | "KW" => (1..=5).map(f64::from).collect(),
        "ROWS" | "BLOCK_ROWS" => vec![1.0, 2.0, 4.0, 8.0],
        "UNIT_STRIDE" | "JVP" | "WIDE" | "VEC_A" | "VEC_B" => vec![0.0, 1.0],
        other => panic!("override {other} has no values in tests/translation.rs: add them"),
    }
}

/// Every combination of the kernel's override values (one empty one when it has none).
fn specialisations(kernel: &KernelInfo) -> Vec<Vec<(&'static str, f64)>> {
    kernel.overrides.iter().fold(vec![Vec::new()], |sets, &name| {
        sets.iter()
            .flat_map(|set| {
                values(name).into_iter().map(move |v| {
                    let mut next = set.clone();
                    next.push((name, v));
                    next
                })
            })
            .collect()
    })
}

fn parse(shader: &Shader, reduction: Reduction) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source(reduction);
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
    let info =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e}", shader.name));
    (module, info)
}

/// The SPIR-V of one specialisation, or what went wrong in any of the three translations.
fn translate(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    set: &[(&str, f64)],
) -> Result<Vec<u32>, String> {
    let mut constants = naga::back::PipelineConstants::default();
    constants.insert("WG".to_owned(), f64::from(WORKGROUP_SIZE));
    for (name, value) in set {
        constants.insert((*name).to_owned(), *value);
    }
    let stage = naga::ShaderStage::Compute;
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(module, info, Some((stage, entry)), &constants)
            .map_err(|e| format!("overrides: {e}"))?;
    let spv_options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
    let pipeline = naga::back::spv::PipelineOptions { shader_stage: stage, entry_point: entry.to_owned() };
    let words = naga::back::spv::write_vec(&module, &info, &spv_options, Some(&pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))?;
    let msl_options = naga::back::msl::Options { lang_version: (2, 4), ..Default::default() };
    let msl_pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((stage, entry.to_owned())),
        ..Default::default()
    };
    naga::back::msl::write_string(&module, &info, &msl_options, &msl_pipeline)
        .map_err(|e| format!("MSL: {e}"))?;
    let hlsl_options =
        naga::back::hlsl::Options { shader_model: naga::back::hlsl::ShaderModel::V6_0, ..Default::default() };
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((stage, entry.to_owned())) };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    Ok(words)
}

/// `spirv-val`'s complaint about `words`, if any.
fn spirv_val(words: &[u32], dir: &std::path::Path, name: &str) -> Option<String> {
    let path = dir.join(format!("{name}.spv"));
    std::fs::write(&path, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let output = Command::new("spirv-val")
        .args(["--target-env", "vulkan1.1"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("spirv-val could not run ({e}): install Debian's spirv-tools"));
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

#[test]
fn every_kernel_specialisation_translates_to_spirv_msl_and_hlsl() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut count = BTreeMap::new();
    let variants = SHADERS.iter().flat_map(|shader| {
        let reductions: &[Reduction] =
            if shader.workgroup_sum { &Reduction::ALL } else { &[Reduction::Tree] };
        reductions.iter().map(move |r| (*shader, *r))
    });
    for (shader, reduction) in variants {
        let (module, info) = parse(shader, reduction);
        for kernel in registry().filter(|k| std::ptr::eq(k.shader, shader)) {
            for set in specialisations(kernel) {
                let what = format!("{} ({reduction}) {set:?}", kernel.name());
                match translate(&module, &info, kernel.entry, &set) {
                    Ok(words) => {
                        let name = format!("{}-{}", shader.name, count.len());
                        if let Some(problem) = spirv_val(&words, dir.path(), &name) {
                            failures.push(format!("{what}: spirv-val: {problem}"));
                        }
                    }
                    Err(problem) => failures.push(format!("{what}: {problem}")),
                }
                count.insert(what, ());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} specialisations failed:\n{}",
        failures.len(),
        count.len(),
        failures.join("\n")
    );
    // Every kernel of the registry, and the specialisations of the seven convolution kernels
    // and the product kernels among them.
    assert!(count.len() > 100, "only {} specialisations", count.len());
}
