//! Every shader parses and validates with naga, without a GPU.

use newton_wgpu::gpu::SHADERS;

#[test]
fn every_shader_parses_and_validates() {
    let mut failures = Vec::new();
    for shader in SHADERS {
        let source = shader.source();
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(module) => module,
            Err(e) => {
                failures.push(format!("{}: {}", shader.name, e.emit_to_string(&source)));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{}: {}", shader.name, e.emit_to_string(&source)));
        }
    }
    assert!(failures.is_empty(), "invalid shaders:\n{}", failures.join("\n"));
}

/// The host binds each kernel's `Params` uniform at binding 0 and its storage buffers at 1..n
/// (src/gpu/recorder.rs), and wgpu derives each pipeline's layout from what the entry point
/// uses: so every entry point must use binding 0 and a gap-free run of bindings after it.
#[test]
fn every_entry_point_uses_params_and_contiguous_bindings() {
    let mut failures = Vec::new();
    for shader in SHADERS {
        let module = naga::front::wgsl::parse_str(&shader.source()).expect("parses (see the test above)");
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .expect("validates (see the test above)");
        for (index, entry) in module.entry_points.iter().enumerate() {
            let function = info.get_entry_point(index);
            let mut used: Vec<u32> = module
                .global_variables
                .iter()
                .filter(|(handle, _)| !function[*handle].is_empty())
                .filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding))
                .collect();
            used.sort_unstable();
            let expected: Vec<u32> = (0..used.len() as u32).collect();
            if used != expected {
                failures.push(format!("{}::{} uses bindings {used:?}", shader.name, entry.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "entry points whose bindings the recorder cannot fill:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl") && name != "common.wgsl")
        .map(|name| name.trim_end_matches(".wgsl").to_owned())
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = SHADERS.iter().map(|s| s.name.to_owned()).collect();
    registered.sort();
    assert_eq!(on_disk, registered, "every shaders/*.wgsl must be listed in gpu::SHADERS");
}
