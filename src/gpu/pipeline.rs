use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::context::Counters;
use super::{KernelInfo, Shader};

/// Invocations per workgroup of every kernel (the WGSL `override WG`).
pub const WORKGROUP_SIZE: u32 = 64;

/// A pipeline: the shader, the entry point and the bits of its override values.
type PipelineKey = (&'static str, &'static str, Vec<u64>);

/// Compiles each shader module and each pipeline (per set of override values) once per
/// device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// The pipeline of `kernel` with `overrides` (one value per name in `kernel.overrides`):
    /// each distinct set compiles its own pipeline, so the driver sees them as constants.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        counters: &Counters,
        kernel: &'static KernelInfo,
        overrides: &[f64],
    ) -> Arc<wgpu::ComputePipeline> {
        assert_eq!(overrides.len(), kernel.overrides.len(), "override values of {}", kernel.name());
        let key = (kernel.shader.name, kernel.entry, overrides.iter().map(|v| v.to_bits()).collect());
        if let Some(pipeline) = self.pipelines.lock().expect("pipeline cache poisoned").get(&key) {
            return pipeline.clone();
        }
        let module = self.module(device, counters, kernel.shader);
        counters.object();
        let named = kernel.overrides.iter().copied().zip(overrides.iter().copied());
        let constants: Vec<(&str, f64)> =
            std::iter::once(("WG", f64::from(WORKGROUP_SIZE))).chain(named).collect();
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&kernel.name()),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        }));
        self.pipelines.lock().expect("pipeline cache poisoned").insert(key, pipeline.clone());
        pipeline
    }

    fn module(
        &self,
        device: &wgpu::Device,
        counters: &Counters,
        shader: &'static Shader,
    ) -> Arc<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().expect("shader cache poisoned");
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                counters.object();
                Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                }))
            })
            .clone()
    }
}
