//! The contract between Rust and WGSL, checked without a GPU: every shader parses and
//! validates with naga, and every kernel that Rust declares (src/kernels) matches its WGSL by
//! naga's reflection: the entry point exists; binding 0 is a uniform whose struct has the Rust
//! `Params`' members at the same offsets and the same size; bindings 1.. are storage buffers
//! with the declared access, in order, and nothing else is bound; the override constants
//! named exist. Every entry point, override and shader file is accounted for. Shaders that
//! sum over workgroups are checked with both definitions of `workgroup_sum`: the tree with no
//! capability at all, the subgroup one with subgroups alone.

use std::collections::BTreeSet;

use naga::{AddressSpace, StorageAccess, TypeInner};
use newton_wgpu::gpu::{Access, KernelInfo, Reduction, Shader, PRELUDE_FILE, REDUCTION_FILES};
use newton_wgpu::kernels::{registry, SHADERS};

fn parse(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    parse_with(shader, Reduction::Tree)
}

fn parse_with(shader: &Shader, reduction: Reduction) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source(reduction);
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{} ({reduction}): {}", shader.name, e.emit_to_string(&source)));
    let capabilities = match reduction {
        Reduction::Tree => naga::valid::Capabilities::empty(),
        Reduction::Subgroups => naga::valid::Capabilities::SUBGROUP,
    };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&source)));
    (module, info)
}

#[test]
fn every_shader_parses_and_validates() {
    for shader in SHADERS {
        for reduction in Reduction::ALL {
            parse_with(shader, reduction);
        }
    }
}

/// What is wrong with `kernel` against its WGSL, if anything.
fn mismatches(kernel: &KernelInfo, module: &naga::Module, info: &naga::valid::ModuleInfo) -> Vec<String> {
    let Some(index) = module.entry_points.iter().position(|e| e.name == kernel.entry) else {
        return vec!["no such entry point".into()];
    };
    let used = info.get_entry_point(index);
    let mut problems = Vec::new();
    let mut bindings = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else { continue };
        if used[handle].is_empty() {
            continue;
        }
        let name = var.name.clone().unwrap_or_default();
        if binding.group != 0 {
            problems.push(format!("{name} is in group {}", binding.group));
        }
        bindings.push(binding.binding);
        match (binding.binding, var.space) {
            (0, AddressSpace::Uniform) => problems.extend(params_mismatches(kernel, module, var.ty)),
            (0, space) => problems.push(format!("binding 0 ({name}) is {space:?}, not the Params uniform")),
            (b, AddressSpace::Storage { access }) => {
                let wgsl =
                    if access.contains(StorageAccess::STORE) { Access::ReadWrite } else { Access::Read };
                match kernel.storage.get(b as usize - 1) {
                    Some(&declared) if declared == wgsl => {}
                    Some(declared) => {
                        problems.push(format!("binding {b} ({name}) is {wgsl:?}, declared {declared:?}"))
                    }
                    None => problems.push(format!("binding {b} ({name}) is not declared")),
                }
            }
            (b, space) => problems.push(format!("binding {b} ({name}) is {space:?}, not a storage buffer")),
        }
    }
    bindings.sort_unstable();
    let expected: Vec<u32> = (0..=kernel.storage.len() as u32).collect();
    if bindings != expected {
        problems.push(format!("uses bindings {bindings:?}, the declaration fills {expected:?}"));
    }
    for name in kernel.overrides {
        if !module.overrides.iter().any(|(_, o)| o.name.as_deref() == Some(name)) || *name == "WG" {
            problems.push(format!("override {name} is not in the shader (or is WG, which the device sets)"));
        }
    }
    problems
}

/// The WGSL uniform struct against the Rust layout: members matched by name, `_`-prefixed
/// padding skipped on both sides, offsets equal, sizes equal.
fn params_mismatches(
    kernel: &KernelInfo,
    module: &naga::Module,
    ty: naga::Handle<naga::Type>,
) -> Vec<String> {
    let TypeInner::Struct { members, span } = &module.types[ty].inner else {
        return vec!["the Params uniform is not a struct".into()];
    };
    let wgsl: Vec<(String, usize)> = members
        .iter()
        .filter_map(|m| m.name.clone().map(|name| (name, m.offset as usize)))
        .filter(|(name, _)| !name.starts_with('_'))
        .collect();
    let rust: Vec<(String, usize)> = kernel
        .params
        .members
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|&(name, offset)| (name.to_owned(), offset))
        .collect();
    let mut problems = Vec::new();
    if wgsl != rust {
        problems.push(format!(
            "Params members (name, offset): WGSL {wgsl:?}, Rust {} {rust:?}",
            kernel.params.name
        ));
    }
    if *span as usize != kernel.params.size {
        problems.push(format!("Params is {span} bytes in WGSL, {} in Rust", kernel.params.size));
    }
    problems
}

#[test]
fn every_kernel_matches_its_wgsl() {
    let mut failures = Vec::new();
    for shader in SHADERS {
        for reduction in Reduction::ALL {
            let (module, info) = parse_with(shader, reduction);
            for kernel in registry().filter(|k| std::ptr::eq(k.shader, shader)) {
                failures.extend(
                    mismatches(kernel, &module, &info)
                        .into_iter()
                        .map(|p| format!("{} ({reduction}): {p}", kernel.name())),
                );
            }
        }
    }
    assert!(failures.is_empty(), "kernels that do not match their WGSL:\n{}", failures.join("\n"));
}

#[test]
fn every_entry_point_and_override_is_declared_in_rust() {
    let mut failures = Vec::new();
    for kernel in registry() {
        if !SHADERS.iter().any(|s| std::ptr::eq(*s, kernel.shader)) {
            failures.push(format!("{}: its shader is not in kernels::SHADERS", kernel.name()));
        }
    }
    for shader in SHADERS {
        let (module, _) = parse(shader);
        let kernels: Vec<&KernelInfo> = registry().filter(|k| std::ptr::eq(k.shader, shader)).collect();
        for entry in &module.entry_points {
            if !kernels.iter().any(|k| k.entry == entry.name) {
                failures.push(format!("{}::{} has no Rust declaration", shader.name, entry.name));
            }
        }
        for (_, o) in module.overrides.iter() {
            let name = o.name.clone().unwrap_or_default();
            if name != "WG" && !kernels.iter().any(|k| k.overrides.contains(&name.as_str())) {
                failures.push(format!("{}: override {name} is set by no kernel", shader.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shader_file_is_part_of_a_shader() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".wgsl").map(str::to_owned))
        .collect();
    let used: BTreeSet<String> = SHADERS
        .iter()
        .flat_map(|s| s.parts.iter().map(|p| p.file.to_owned()))
        .chain([PRELUDE_FILE].into_iter().chain(REDUCTION_FILES).map(str::to_owned))
        .collect();
    assert_eq!(on_disk, used, "every shaders/*.wgsl must be a part of a shader in kernels::SHADERS");
}

/// The check above can fail: a Params struct whose WGSL side moved a member is caught.
#[test]
fn a_params_layout_that_differs_from_its_wgsl_is_caught() {
    let kernel = registry().find(|k| k.name() == "cg::advance").expect("cg::advance is registered");
    let shader = kernel.shader;
    let (module, info) = parse(shader);
    assert!(mismatches(kernel, &module, &info).is_empty());
    let swapped = shader
        .source(Reduction::Tree)
        .replace("struct Params { len: u32, slot: u32,", "struct Params { slot: u32, len: u32,");
    assert_ne!(swapped, shader.source(Reduction::Tree), "the test's edit must apply");
    let module = naga::front::wgsl::parse_str(&swapped).unwrap();
    let info =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap();
    let problems = mismatches(kernel, &module, &info);
    assert!(problems.iter().any(|p| p.contains("Params members")), "{problems:?}");
}
