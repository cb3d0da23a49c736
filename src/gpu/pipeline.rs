use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Invocations per workgroup of every kernel (the WGSL `override WG`).
pub const WORKGROUP_SIZE: u32 = 64;

/// Helpers that every shader file is compiled with: the flat invocation index of a dispatch
/// that was split over two dimensions to respect the adapter's workgroup-count limit.
const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// One WGSL file of shaders/.
#[derive(Debug)]
pub struct Shader {
    pub name: &'static str,
    body: &'static str,
}

impl Shader {
    /// The text that is compiled: the prelude, then the file.
    pub fn source(&self) -> String {
        format!("{PRELUDE}\n{}", self.body)
    }
}

macro_rules! shader {
    ($name:literal) => {
        Shader { name: $name, body: include_str!(concat!("../../shaders/", $name, ".wgsl")) }
    };
}

pub static CONV: Shader = shader!("conv");
pub static POOL: Shader = shader!("pool");
pub static ACTIVATION: Shader = shader!("activation");
pub static LOSS: Shader = shader!("loss");
pub static BLAS1: Shader = shader!("blas1");
pub static CG: Shader = shader!("cg");
pub static MATMUL: Shader = shader!("matmul");

/// Every shader of the crate, for validation.
pub static SHADERS: [&Shader; 7] = [&CONV, &POOL, &ACTIVATION, &LOSS, &BLAS1, &CG, &MATMUL];

/// An entry point of a shader.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub shader: &'static Shader,
    pub entry: &'static str,
}

impl Kernel {
    pub const fn new(shader: &'static Shader, entry: &'static str) -> Self {
        Self { shader, entry }
    }

    pub fn name(&self) -> String {
        format!("{}::{}", self.shader.name, self.entry)
    }
}

/// Values for a kernel's WGSL `override` constants (besides WG), e.g. `[("CHUNK", 5.0)]`:
/// each distinct set compiles its own pipeline, so the driver sees them as constants.
pub type Specialization = [(&'static str, f64)];

type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Compiles each shader module and each pipeline (per specialization) once per device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        specialization: &Specialization,
    ) -> Arc<wgpu::ComputePipeline> {
        let values = specialization.iter().map(|&(name, value)| (name, value.to_bits())).collect();
        let key = (kernel.shader.name, kernel.entry, values);
        if let Some(pipeline) = self.pipelines.lock().expect("pipeline cache poisoned").get(&key) {
            return pipeline.clone();
        }
        let module = self.module(device, kernel.shader);
        let constants: Vec<(&str, f64)> =
            std::iter::once(("WG", WORKGROUP_SIZE as f64)).chain(specialization.iter().copied()).collect();
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

    fn module(&self, device: &wgpu::Device, shader: &'static Shader) -> Arc<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().expect("shader cache poisoned");
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                }))
            })
            .clone()
    }
}
