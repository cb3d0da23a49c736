use std::sync::Arc;

use bytemuck::Pod;

use super::{Gpu, GpuBuffer, GpuError, Kernel, WORKGROUP_SIZE};

/// A storage buffer of any element type, as a kernel binding.
pub trait Binding {
    fn raw(&self) -> &wgpu::Buffer;
}

impl<T: Pod> Binding for GpuBuffer<T> {
    fn raw(&self) -> &wgpu::Buffer {
        &self.raw
    }
}

enum Command {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        params: std::ops::Range<u64>,
        buffers: Vec<wgpu::Buffer>,
        workgroups: [u32; 2],
    },
    Copy {
        from: wgpu::Buffer,
        from_offset: u64,
        to: wgpu::Buffer,
        to_offset: u64,
        bytes: u64,
    },
}

/// Records many dispatches, which run in order in one compute pass (split only around buffer
/// copies) and one submit. Each kernel's parameters go into one shared uniform buffer.
///
/// Binding 0 of every kernel is its `Params` uniform; bindings 1.. are storage buffers in the
/// order given to [`Recorder::dispatch`].
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    commands: Vec<Command>,
    params: Vec<u8>,
}

impl<'g> Recorder<'g> {
    pub(crate) fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, commands: Vec::new(), params: Vec::new() }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Records `kernel` over `invocations` threads (one per work item; each shader guards the
    /// tail). The dispatch is split over two dimensions when it exceeds the adapter's
    /// per-dimension workgroup count.
    pub fn dispatch<P: Pod>(
        &mut self,
        kernel: Kernel,
        params: &P,
        buffers: &[&dyn Binding],
        invocations: u64,
    ) -> Result<(), GpuError> {
        if invocations == 0 {
            return Ok(());
        }
        let limits = self.gpu.limits();
        let max_per_dim = limits.max_compute_workgroups_per_dimension;
        let workgroups = invocations.div_ceil(WORKGROUP_SIZE as u64);
        let x = workgroups.min(max_per_dim as u64);
        let y = workgroups.div_ceil(x);
        if y > max_per_dim as u64 || x * y * WORKGROUP_SIZE as u64 > u32::MAX as u64 {
            return Err(GpuError::DispatchTooLarge { kernel: kernel.name(), workgroups, max_per_dim });
        }
        let align = limits.min_uniform_buffer_offset_alignment as usize;
        let start = self.params.len().div_ceil(align) * align;
        self.params.resize(start, 0);
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        let end = self.params.len() as u64;
        let pipeline = self.gpu.pipelines.get(&self.gpu.device, kernel);
        self.commands.push(Command::Dispatch {
            pipeline,
            params: start as u64..end,
            buffers: buffers.iter().map(|b| b.raw().clone()).collect(),
            workgroups: [x as u32, y as u32],
        });
        Ok(())
    }

    /// Records a copy of `len` values from `from[from_start..]` to `to[to_start..]`.
    pub fn copy<T: Pod>(
        &mut self,
        from: &GpuBuffer<T>,
        from_start: usize,
        to: &GpuBuffer<T>,
        to_start: usize,
        len: usize,
    ) {
        assert!(from_start + len <= from.len() && to_start + len <= to.len(), "copy out of range");
        let elem = std::mem::size_of::<T>() as u64;
        self.commands.push(Command::Copy {
            from: from.raw.clone(),
            from_offset: from_start as u64 * elem,
            to: to.raw.clone(),
            to_offset: to_start as u64 * elem,
            bytes: len as u64 * elem,
        });
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.commands.iter().filter(|c| matches!(c, Command::Dispatch { .. })).count()
    }

    /// Submits everything recorded, in one command buffer, and returns without waiting.
    pub fn submit(self) {
        let Recorder { gpu, commands, mut params } = self;
        if commands.is_empty() {
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
        let bind_groups: Vec<Option<wgpu::BindGroup>> = commands
            .iter()
            .map(|command| match command {
                Command::Dispatch { pipeline, params, buffers, .. } => {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: params.start,
                            size: wgpu::BufferSize::new(params.end - params.start),
                        }),
                    }];
                    entries.extend(buffers.iter().enumerate().map(|(i, buffer)| wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: buffer.as_entire_binding(),
                    }));
                    Some(device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    }))
                }
                Command::Copy { .. } => None,
            })
            .collect();

        let mut encoder = device.create_command_encoder(&Default::default());
        let mut dispatches = 0;
        let mut i = 0;
        while i < commands.len() {
            match &commands[i] {
                Command::Copy { from, from_offset, to, to_offset, bytes } => {
                    encoder.copy_buffer_to_buffer(from, *from_offset, to, *to_offset, *bytes);
                    i += 1;
                }
                Command::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    while let Some(Command::Dispatch { pipeline, workgroups, .. }) = commands.get(i) {
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind_groups[i].as_ref(), &[]);
                        pass.dispatch_workgroups(workgroups[0], workgroups[1], 1);
                        dispatches += 1;
                        i += 1;
                    }
                }
            }
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.count_submit(dispatches);
    }
}
