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
