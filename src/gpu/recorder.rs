//! Recording dispatches into programs: sequences whose pipelines, bind groups and parameters
//! are made once, when the program is finished, and that any number of submits replay.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::pipeline::Compiled;
use super::{Binding, Gpu, GpuBuffer, GpuError, Kernel, UniformParams, WORKGROUP_SIZE};

/// How many workgroups a dispatch runs: fixed, or read from a buffer at run time (so that a
/// kernel can cancel later dispatches, see [`Recorder::begin_indirect`]).
#[derive(Clone)]
enum Size {
    Direct([u32; 2]),
    Indirect { args: wgpu::Buffer, offset: u64 },
}

struct Recorded {
    compiled: Compiled,
    params: Range<u64>,
    /// (buffer, id, offset in bytes) of each storage binding.
    bindings: Vec<(wgpu::Buffer, u64, u64)>,
    size: Size,
}

/// A recorded program: dispatches that run in order in one compute pass. Replaying it (see
/// [`Gpu::submit`]) creates nothing on the device: every pipeline and bind group, and one
/// uniform buffer holding every dispatch's parameters (each at its dynamic offset), were made
/// when it was finished. wgpu orders dispatches that share a writable buffer, so later
/// kernels see what earlier ones wrote.
pub struct Program {
    steps: Vec<Step>,
    /// The parameters' buffer, which the bind groups reference (shared by the parts of one
    /// recording, see [`Recorder::finish_parts`]).
    _params: Option<Arc<wgpu::Buffer>>,
}

struct Step {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: Arc<wgpu::BindGroup>,
    offset: u32,
    size: Size,
}

impl Program {
    /// Dispatches per replay.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    pub(crate) fn encode(&self, pass: &mut wgpu::ComputePass) {
        let mut current: Option<&Arc<wgpu::ComputePipeline>> = None;
        for step in &self.steps {
            if current.is_none_or(|p| !Arc::ptr_eq(p, &step.pipeline)) {
                pass.set_pipeline(&step.pipeline);
                current = Some(&step.pipeline);
            }
            pass.set_bind_group(0, &*step.bind_group, &[step.offset]);
            match &step.size {
                Size::Direct([x, y]) => pass.dispatch_workgroups(*x, *y, 1),
                Size::Indirect { args, offset } => pass.dispatch_workgroups_indirect(args, *offset),
            }
        }
    }
}

/// The workgroup counts of an indirect section (see [`Recorder::begin_indirect`]): `args`
/// holds (x, y, 1) per dispatch, as the dispatches read them; `template` the counts they were
/// recorded with, on the device and on the host, to re-arm them.
pub struct IndirectArgs {
    pub args: GpuBuffer<u32>,
    pub template: GpuBuffer<u32>,
    pub host: Vec<u32>,
}

/// Records dispatches into a [`Program`].
///
/// Binding 0 of every kernel is its `Params` uniform; bindings 1.. are storage buffers in the
/// order given to [`Recorder::dispatch`].
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    dispatches: Vec<Recorded>,
    params: Vec<u8>,
    /// The first dispatch of the open indirect section.
    indirect_from: Option<usize>,
}

impl<'g> Recorder<'g> {
    pub(crate) fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, dispatches: Vec::new(), params: Vec::new(), indirect_from: None }
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
        let alignment = self.gpu.storage_alignment();
        let mut bindings = Vec::with_capacity(buffers.len());
        for binding in buffers {
            if binding.offset() % alignment != 0 {
                return Err(GpuError::MisalignedBinding {
                    kernel: info.name(),
                    buffer: binding.label().to_owned(),
                    offset: binding.offset(),
                    alignment,
                });
            }
            bindings.push((binding.buffer().clone(), binding.id(), binding.offset()));
        }
        let align = limits.min_uniform_buffer_offset_alignment as usize;
        let start = self.params.len().div_ceil(align) * align;
        self.params.resize(start, 0);
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        let end = self.params.len() as u64;
        let compiled = self.gpu.pipelines.get(
            &self.gpu.device,
            &self.gpu.counters,
            self.gpu.shader_checks(),
            self.gpu.reduction(),
            info,
            overrides,
        );
        self.dispatches.push(Recorded {
            compiled,
            params: start as u64..end,
            bindings,
            size: Size::Direct([x as u32, y as u32]),
        });
        Ok(())
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches.len()
    }

    /// Starts a section whose dispatches read their workgroup counts from a buffer
    /// ([`Recorder::end_indirect`] makes it), so that a kernel can zero them and make the
    /// section a no-op in later replays.
    pub fn begin_indirect(&mut self) {
        assert!(self.indirect_from.is_none(), "indirect sections do not nest");
        self.indirect_from = Some(self.dispatches.len());
    }

    /// Ends the section [`Recorder::begin_indirect`] started: its counts go into a new
    /// buffer, which is returned with their template.
    pub fn end_indirect(&mut self) -> Result<IndirectArgs, GpuError> {
        let from = self.indirect_from.take().expect("an open indirect section");
        let host: Vec<u32> = self.dispatches[from..]
            .iter()
            .flat_map(|d| match d.size {
                Size::Direct([x, y]) => [x, y, 1],
                Size::Indirect { .. } => unreachable!("sections do not nest"),
            })
            .collect();
        let args = self.gpu.indirect_args(&host, "indirect dispatch counts")?;
        let template = self.gpu.upload(&host, "indirect dispatch counts as recorded")?;
        for (i, d) in self.dispatches[from..].iter_mut().enumerate() {
            d.size = Size::Indirect { args: args.raw.clone(), offset: 12 * i as u64 };
        }
        Ok(IndirectArgs { args, template, host })
    }

    /// Makes the program: one uniform buffer of every dispatch's parameters, and a bind group
    /// for each distinct kernel layout and set of buffers.
    pub fn finish(self) -> Result<Program, GpuError> {
        Ok(self.finish_parts(&[])?.pop().expect("one part"))
    }

    /// Makes the program in parts, cut before each dispatch index of `cuts` (increasing, at
    /// most [`Recorder::dispatches`]): submitted in order, the parts run what the whole
    /// program runs, so that the host can read what one part finished while the device runs
    /// the next. An indirect section may span parts: its counts gate them all.
    pub fn finish_parts(self, cuts: &[usize]) -> Result<Vec<Program>, GpuError> {
        assert!(self.indirect_from.is_none(), "an indirect section is still open");
        assert!(
            cuts.windows(2).all(|w| w[0] <= w[1]) && cuts.last().is_none_or(|&c| c <= self.dispatches.len()),
            "cuts increase within the program"
        );
        let Recorder { gpu, dispatches, mut params, .. } = self;
        if dispatches.is_empty() {
            return Ok((0..=cuts.len()).map(|_| Program { steps: Vec::new(), _params: None }).collect());
        }
        params.resize(params.len().max(16).div_ceil(16) * 16, 0);
        let uniforms = Arc::new(wgpu::util::DeviceExt::create_buffer_init(
            &gpu.device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("program params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            },
        ));
        gpu.counters.object();
        type BindKey = (usize, Vec<(u64, u64)>);
        let mut bind_groups: HashMap<BindKey, Arc<wgpu::BindGroup>> = HashMap::new();
        let mut steps = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            let layout = &d.compiled.layout;
            let key = (
                Arc::as_ptr(layout) as usize,
                d.bindings.iter().map(|(_, id, offset)| (*id, *offset)).collect(),
            );
            let bind_group = bind_groups
                .entry(key)
                .or_insert_with(|| {
                    let params = wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: 0,
                            size: wgpu::BufferSize::new(layout.params_size),
                        }),
                    };
                    let storage =
                        d.bindings.iter().enumerate().map(|(i, (buffer, _, offset))| wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer,
                                offset: *offset,
                                size: None,
                            }),
                        });
                    let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(params).chain(storage).collect();
                    gpu.counters.object();
                    Arc::new(gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout.bind_group,
                        entries: &entries,
                    }))
                })
                .clone();
            steps.push(Step {
                pipeline: d.compiled.pipeline,
                bind_group,
                offset: u32::try_from(d.params.start).expect("program parameters fit in 4 GiB"),
                size: d.size,
            });
        }
        let mut parts = Vec::with_capacity(cuts.len() + 1);
        for &cut in cuts.iter().rev() {
            let tail = steps.split_off(cut.min(steps.len()));
            parts.push(Program { steps: tail, _params: Some(uniforms.clone()) });
        }
        parts.push(Program { steps, _params: Some(uniforms) });
        parts.reverse();
        Ok(parts)
    }

    /// Finishes the program and submits it once, without waiting: for work that runs once.
    /// Work that repeats is recorded once ([`Recorder::finish`]) and replayed.
    pub fn submit(self) -> Result<(), GpuError> {
        let gpu = self.gpu;
        let program = self.finish()?;
        gpu.submit(&[&program])?;
        Ok(())
    }
}
