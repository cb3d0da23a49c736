use std::sync::Arc;

use bytemuck::Pod;

use super::{Gpu, GpuBuffer, GpuError, Kernel, UniformParams, WORKGROUP_SIZE};

/// A storage buffer of any element type, as a kernel binding.
pub trait Binding {
    fn raw(&self) -> &wgpu::Buffer;
}

impl<T: Pod> Binding for GpuBuffer<T> {
    fn raw(&self) -> &wgpu::Buffer {
        &self.raw
    }
}

struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    params: std::ops::Range<u64>,
    buffers: Vec<wgpu::Buffer>,
    workgroups: [u32; 2],
}

/// Records many dispatches, which run in order in one compute pass and one submit. Each
/// kernel's parameters go into one shared uniform buffer. wgpu orders dispatches that share
/// a writable buffer, so later kernels see what earlier ones wrote.
///
/// Binding 0 of every kernel is its `Params` uniform; bindings 1.. are storage buffers in the
/// order given to [`Recorder::dispatch`].
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    dispatches: Vec<Dispatch>,
    params: Vec<u8>,
}

impl<'g> Recorder<'g> {
    pub(crate) fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, dispatches: Vec::new(), params: Vec::new() }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Records `kernel` over `invocations` threads (one per work item; each shader guards the
    /// tail), with `buffers` at its storage bindings in order. The dispatch is split over two
    /// dimensions when it exceeds the adapter's per-dimension workgroup count.
    pub fn dispatch<P: UniformParams>(
        &mut self,
        kernel: &'static Kernel<P>,
        params: &P,
        buffers: &[&dyn Binding],
        invocations: u64,
    ) -> Result<(), GpuError> {
        self.dispatch_specialized(kernel, &[], params, buffers, invocations)
    }

    /// [`Recorder::dispatch`] with values for the kernel's override constants, in the order
    /// its declaration names them.
    pub fn dispatch_specialized<P: UniformParams>(
        &mut self,
        kernel: &'static Kernel<P>,
        overrides: &[f64],
        params: &P,
        buffers: &[&dyn Binding],
        invocations: u64,
    ) -> Result<(), GpuError> {
        let info = kernel.info();
        assert_eq!(buffers.len(), info.storage.len(), "storage buffers of {}", info.name());
        if invocations == 0 {
            return Ok(());
        }
        let limits = self.gpu.limits();
        let max_per_dim = limits.max_compute_workgroups_per_dimension;
        let workgroups = invocations.div_ceil(WORKGROUP_SIZE as u64);
        let x = workgroups.min(max_per_dim as u64);
        let y = workgroups.div_ceil(x);
        if y > max_per_dim as u64 || x * y * WORKGROUP_SIZE as u64 > u32::MAX as u64 {
            return Err(GpuError::DispatchTooLarge { kernel: info.name(), workgroups, max_per_dim });
        }
        let align = limits.min_uniform_buffer_offset_alignment as usize;
        let start = self.params.len().div_ceil(align) * align;
        self.params.resize(start, 0);
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        let end = self.params.len() as u64;
        let pipeline = self.gpu.pipelines.get(&self.gpu.device, &self.gpu.counters, info, overrides);
        self.dispatches.push(Dispatch {
            pipeline,
            params: start as u64..end,
            buffers: buffers.iter().map(|b| b.raw().clone()).collect(),
            workgroups: [x as u32, y as u32],
        });
        Ok(())
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches.len()
    }

    /// Submits everything recorded, in one command buffer, and returns without waiting.
    pub fn submit(self) {
        let Recorder { gpu, dispatches, mut params } = self;
        if dispatches.is_empty() {
            return;
        }
        let device = &gpu.device;
        params.resize(params.len().max(16).div_ceil(16) * 16, 0);
        let uniforms = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("kernel params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        gpu.counters.object();
        let bind_groups: Vec<wgpu::BindGroup> = dispatches
            .iter()
            .map(|d| {
                let params = wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: d.params.start,
                        size: wgpu::BufferSize::new(d.params.end - d.params.start),
                    }),
                };
                let storage = d.buffers.iter().enumerate().map(|(i, buffer)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: buffer.as_entire_binding(),
                });
                let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(params).chain(storage).collect();
                gpu.counters.object();
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &d.pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();

        let mut encoder = device.create_command_encoder(&Default::default());
        let timed = gpu.timer.as_ref().map(|timer| timer.pass(device, &gpu.counters));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timed.as_ref().map(|t| t.writes()),
            });
            for (d, bind_group) in dispatches.iter().zip(&bind_groups) {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], 1);
            }
        }
        if let (Some(timer), Some(timed)) = (&gpu.timer, timed) {
            timer.finish(timed, &mut encoder);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.counters.submit(dispatches.len() as u64);
    }
}
