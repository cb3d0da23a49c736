use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::context::Counters;
use super::{Access, KernelInfo, Reduction, Shader, ShaderChecks};

/// Invocations per workgroup of every kernel (the WGSL `override WG`); a power of two, which
/// shaders/reduce_tree.wgsl relies on.
pub const WORKGROUP_SIZE: u32 = 64;

/// A pipeline: the shader, the entry point and the bits of its override values.
type PipelineKey = (&'static str, &'static str, Vec<u64>);

/// Kernels with the same Params size and the same storage accesses share a layout.
type LayoutKey = (u64, Vec<Access>);

/// The explicit layouts of a kernel: binding 0 its Params uniform at a dynamic offset (every
/// dispatch's parameters live in one buffer of its program), bindings 1.. its storage buffers.
pub(crate) struct KernelLayout {
    pub(crate) bind_group: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
    /// Bytes of the Params uniform each dispatch binds.
    pub(crate) params_size: u64,
}

/// A compiled kernel and its layout.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    pub(crate) layout: Arc<KernelLayout>,
}

/// Compiles each shader module, each layout and each pipeline (per set of override values)
/// once per device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    layouts: Mutex<HashMap<LayoutKey, Arc<KernelLayout>>>,
    pipelines: Mutex<HashMap<PipelineKey, Compiled>>,
}

impl PipelineCache {
    /// The pipeline of `kernel` with `overrides` (one value per name in `kernel.overrides`):
    /// each distinct set compiles its own pipeline, so the driver sees them as constants.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        counters: &Counters,
        checks: ShaderChecks,
        reduction: Reduction,
        kernel: &'static KernelInfo,
        overrides: &[f64],
    ) -> Compiled {
        assert_eq!(overrides.len(), kernel.overrides.len(), "override values of {}", kernel.name());
        let key = (kernel.shader.name, kernel.entry, overrides.iter().map(|v| v.to_bits()).collect());
        if let Some(compiled) = self.pipelines.lock().expect("pipeline cache poisoned").get(&key) {
            return compiled.clone();
        }
        let module = self.module(device, counters, checks, reduction, kernel.shader);
        let layout = self.layout(device, counters, kernel);
        let named = kernel.overrides.iter().copied().zip(overrides.iter().copied());
        let constants: Vec<(&str, f64)> =
            std::iter::once(("WG", f64::from(WORKGROUP_SIZE))).chain(named).collect();
        counters.object();
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&kernel.name()),
            layout: Some(&layout.pipeline),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        }));
        let compiled = Compiled { pipeline, layout };
        self.pipelines.lock().expect("pipeline cache poisoned").insert(key, compiled.clone());
        compiled
    }

    fn layout(&self, device: &wgpu::Device, counters: &Counters, kernel: &KernelInfo) -> Arc<KernelLayout> {
        let params_size = kernel.params.size as u64;
        let key = (params_size, kernel.storage.to_vec());
        let mut layouts = self.layouts.lock().expect("layout cache poisoned");
        layouts
            .entry(key)
            .or_insert_with(|| {
                let params = wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(params_size),
                    },
                    count: None,
                };
                let storage =
                    kernel.storage.iter().enumerate().map(|(i, access)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                let entries: Vec<wgpu::BindGroupLayoutEntry> =
                    std::iter::once(params).chain(storage).collect();
                counters.object();
                let bind_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(&kernel.name()),
                    entries: &entries,
                });
                counters.object();
                let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&kernel.name()),
                    bind_group_layouts: &[Some(&bind_group)],
                    immediate_size: 0,
                });
                Arc::new(KernelLayout { bind_group, pipeline, params_size })
            })
            .clone()
    }

    fn module(
        &self,
        device: &wgpu::Device,
        counters: &Counters,
        checks: ShaderChecks,
        reduction: Reduction,
        shader: &'static Shader,
    ) -> Arc<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().expect("shader cache poisoned");
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                counters.object();
                let descriptor = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source(reduction).into()),
                };
                let module = if checks.checked(shader) {
                    device.create_shader_module(descriptor)
                } else {
                    // SAFETY: a shader runs unchecked only when declared trusted (its kernels
                    // index within the buffer lengths their wrappers check before every
                    // dispatch, and within local arrays whose indices the host bounds; every
                    // loop runs to a bound from its Params), or when asked for in a benchmark
                    // (ShaderChecks::None). The tests run both with and without the checks.
                    unsafe {
                        device
                            .create_shader_module_trusted(descriptor, wgpu::ShaderRuntimeChecks::unchecked())
                    }
                };
                Arc::new(module)
            })
            .clone()
    }
}
