use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::pipeline::PipelineCache;
use super::timer::Timer;
use super::{GpuBuffer, GpuError, Program, Recorder, Reduction, ShaderChecks};

/// How to choose the adapter and what to ask of it. [`GpuOptions::from_env`] reads
/// `WGPU_BACKEND` (a comma-separated list such as `vulkan,gl`) and `WGPU_ADAPTER_NAME` (a
/// case-insensitive part of the name).
#[derive(Clone, Debug)]
pub struct GpuOptions {
    pub backends: wgpu::Backends,
    pub adapter_name: Option<String>,
    /// Without a name: the index-th adapter (modulo their number) among those of the
    /// preferred adapter's backend, in preference order (`NEWTON_WGPU_ADAPTER_INDEX`; the
    /// program sets it to a rank's local rank, one rank per GPU). One backend only, since the
    /// same GPU seen through Vulkan and GL is one GPU.
    pub adapter_index: Option<usize>,
    /// Time every submit with timestamp queries where the adapter supports them
    /// ([`Gpu::take_gpu_time`]); for benchmarks.
    pub timestamps: bool,
    /// Which shaders keep wgpu's runtime checks (`NEWTON_WGPU_SHADER_CHECKS`).
    pub shader_checks: ShaderChecks,
    /// Sum over workgroups with subgroup operations where the adapter has them
    /// (`Features::SUBGROUP`); off, or without them, a tree in workgroup memory.
    pub subgroups: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::all(),
            adapter_name: None,
            adapter_index: None,
            timestamps: false,
            shader_checks: ShaderChecks::default(),
            subgroups: true,
        }
    }
}

impl GpuOptions {
    pub fn from_env() -> Result<Self, GpuError> {
        let shader_checks = match std::env::var("NEWTON_WGPU_SHADER_CHECKS") {
            Ok(value) if !value.is_empty() => value.parse().map_err(|reason| GpuError::BadSetting {
                name: "NEWTON_WGPU_SHADER_CHECKS".into(),
                reason,
            })?,
            _ => ShaderChecks::default(),
        };
        Ok(Self {
            backends: backends_from_env()?,
            adapter_name: std::env::var("WGPU_ADAPTER_NAME").ok().filter(|s| !s.is_empty()),
            adapter_index: adapter_index_from_env()?,
            timestamps: false,
            shader_checks,
            subgroups: true,
        })
    }
}

/// `NEWTON_WGPU_ADAPTER_INDEX`, a count from 0, when set.
fn adapter_index_from_env() -> Result<Option<usize>, GpuError> {
    match std::env::var("NEWTON_WGPU_ADAPTER_INDEX") {
        Ok(value) if !value.is_empty() => value.trim().parse().map(Some).map_err(|_| GpuError::BadSetting {
            name: "NEWTON_WGPU_ADAPTER_INDEX".into(),
            reason: format!("{value:?} is not an adapter index: expected 0, 1, 2, …"),
        }),
        _ => Ok(None),
    }
}

/// The backends `WGPU_BACKEND` names (a comma-separated list), all when it is unset; an
/// unknown name is an error rather than ignored.
fn backends_from_env() -> Result<wgpu::Backends, GpuError> {
    let Ok(list) = std::env::var("WGPU_BACKEND") else { return Ok(wgpu::Backends::all()) };
    let mut backends = wgpu::Backends::empty();
    for name in list.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()) {
        backends |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "all" => wgpu::Backends::all(),
            _ => {
                return Err(GpuError::BadSetting {
                    name: "WGPU_BACKEND".into(),
                    reason: format!(
                    "{name:?} is not a backend: expected a comma-separated list of vulkan, metal, dx12, gl"
                ),
                })
            }
        };
    }
    if backends.is_empty() {
        return Err(GpuError::BadSetting {
            name: "WGPU_BACKEND".into(),
            reason: "names no backend: expected a comma-separated list of vulkan, metal, dx12, gl".into(),
        });
    }
    Ok(backends)
}

/// `backends` as WGPU_BACKEND would name them.
fn backend_names(backends: wgpu::Backends) -> String {
    let names = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
    ];
    let named: Vec<&str> = names.iter().filter(|(b, _)| backends.contains(*b)).map(|(_, n)| *n).collect();
    if named.is_empty() {
        "none".into()
    } else {
        named.join(", ")
    }
}

/// What a person wants to know about the adapter in use.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    /// PCI vendor and device ids (0 where the backend has none).
    pub vendor: u32,
    pub device: u32,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?}, {:?}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {} {}", self.driver, self.driver_info)?;
        }
        write!(f, ")")
    }
}

/// Counters kept by the device layer, so that costs can be counted rather than estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    pub submits: u64,
    pub dispatches: u64,
    pub readbacks: u64,
    /// GPU objects created: buffers, bind groups, query sets, shader modules, pipelines
    /// (command encoders are single-use in wgpu and not counted).
    pub objects: u64,
    /// Times the host blocked until the device had finished all its work (a read-back of
    /// the latest submit included): the device then idles until the host submits again.
    pub waits: u64,
    /// Times the host waited for an older submit while later ones kept the device busy.
    pub paced_waits: u64,
}

/// The atomics behind [`GpuStats`].
#[derive(Default)]
pub(crate) struct Counters {
    submits: AtomicU64,
    dispatches: AtomicU64,
    readbacks: AtomicU64,
    objects: AtomicU64,
    waits: AtomicU64,
    paced_waits: AtomicU64,
}

impl Counters {
    pub(crate) fn object(&self) {
        self.objects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn wait(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn paced_wait(&self) {
        self.paced_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn submit(&self, dispatches: u64) {
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.dispatches.fetch_add(dispatches, Ordering::Relaxed);
    }

    pub(crate) fn readback(&self) {
        self.readbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> GpuStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GpuStats {
            submits: load(&self.submits),
            dispatches: load(&self.dispatches),
            readbacks: load(&self.readbacks),
            objects: load(&self.objects),
            waits: load(&self.waits),
            paced_waits: load(&self.paced_waits),
        }
    }
}

/// One device and queue, with the limits in use and the compiled pipelines.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    pub(crate) pipelines: PipelineCache,
    shader_checks: ShaderChecks,
    reduction: Reduction,
    /// What the adapter offers, whether or not this device asked for it.
    adapter_features: wgpu::Features,
    pub(crate) timer: Option<Timer>,
    pub(crate) counters: Counters,
    /// How many submits have gone to the queue: a [`Submission`]'s place among them.
    submitted: AtomicU64,
    /// Staging buffers for blocking read-backs, reused once unmapped.
    pub(crate) staging: Mutex<Vec<wgpu::Buffer>>,
}

/// Work submitted to the queue.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Its place among the submits (1 for the first).
    seq: u64,
    index: wgpu::SubmissionIndex,
}

/// Preference order when no adapter is named: hardware first, the software GPU last.
fn performance_rank(device_type: wgpu::DeviceType) -> u32 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Opens the adapter chosen by `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`, else the fastest one.
    pub fn new() -> Result<Self, GpuError> {
        Self::with_options(&GpuOptions::from_env()?)
    }

    pub fn with_options(options: &GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::open(options))
    }

    async fn open(options: &GpuOptions) -> Result<Self, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        descriptor.backends = options.backends;
        // wgpu checks every indirect dispatch's counts in a pass of its own, which costs the
        // host more than the dispatch. Ours come from counts that were checked when recorded
        // (CG's gate copies them or zeroes them), so the check is dropped, except where the
        // D3D12 backend needs it to report num_workgroups (WGPU_VALIDATION_INDIRECT_CALL=1
        // turns it back on).
        if !options.backends.contains(wgpu::Backends::DX12) || !cfg!(windows) {
            let from_env = std::env::var("WGPU_VALIDATION_INDIRECT_CALL").is_ok_and(|v| v != "0");
            descriptor.flags.set(wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL, from_env);
        }
        let instance = wgpu::Instance::new(descriptor);
        let adapters = instance.enumerate_adapters(options.backends).await;
        let describe = |a: &wgpu::Adapter| {
            let info = a.get_info();
            format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
        };
        let adapter = match &options.adapter_name {
            Some(wanted) => {
                let needle = wanted.to_lowercase();
                let found = adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&needle));
                match found {
                    Some(i) => adapters.into_iter().nth(i).expect("index from position"),
                    None => {
                        let available: Vec<String> = adapters.iter().map(describe).collect();
                        return Err(GpuError::AdapterNotFound {
                            wanted: wanted.clone(),
                            available: if available.is_empty() {
                                "none".into()
                            } else {
                                available.join("; ")
                            },
                        });
                    }
                }
            }
            None => {
                let mut ranked = adapters;
                ranked.sort_by_key(|a| performance_rank(a.get_info().device_type));
                let best = ranked
                    .first()
                    .ok_or_else(|| GpuError::NoAdapter { tried: backend_names(options.backends) })?;
                let backend = best.get_info().backend;
                let mut same: Vec<wgpu::Adapter> =
                    ranked.into_iter().filter(|a| a.get_info().backend == backend).collect();
                let index = options.adapter_index.unwrap_or(0) % same.len();
                same.swap_remove(index)
            }
        };

        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        };
        // Ask for everything the adapter has: the defaults cap storage bindings at 128 MiB.
        let limits = adapter.limits();
        let timestamps = options.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let subgroups = options.subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        let mut features = wgpu::Features::empty();
        features.set(wgpu::Features::TIMESTAMP_QUERY, timestamps);
        features.set(wgpu::Features::SUBGROUP, subgroups);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("newton-wgpu"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: summary.name.clone(), reason: e.to_string() })?;
        let timer = timestamps.then(|| Timer::new(&queue));
        Ok(Self {
            device,
            queue,
            adapter: summary,
            limits,
            pipelines: PipelineCache::default(),
            shader_checks: options.shader_checks,
            reduction: if subgroups { Reduction::Subgroups } else { Reduction::Tree },
            adapter_features: adapter.features(),
            timer,
            counters: Counters::default(),
            submitted: AtomicU64::new(0),
            staging: Mutex::new(Vec::new()),
        })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// True on a software rasteriser such as lavapipe or llvmpipe.
    pub fn is_software(&self) -> bool {
        self.adapter.device_type == wgpu::DeviceType::Cpu
    }

    /// Which shaders run with wgpu's runtime checks.
    pub fn shader_checks(&self) -> ShaderChecks {
        self.shader_checks
    }

    /// How the kernels sum over a workgroup on this device.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The features the adapter offers (the device asks only for those it uses).
    pub fn adapter_features(&self) -> wgpu::Features {
        self.adapter_features
    }

    /// Whether submits are timed by timestamp queries (asked for and supported).
    pub fn timestamps(&self) -> bool {
        self.timer.is_some()
    }

    /// The GPU time of every submit since the last call, from timestamp queries; None unless
    /// [`GpuOptions::timestamps`] was asked for and the adapter supports them. Waits for the
    /// submitted work to finish.
    pub fn take_gpu_time(&self) -> Result<Option<std::time::Duration>, GpuError> {
        self.timer.as_ref().map(|timer| timer.take(&self.device)).transpose()
    }

    /// The largest storage buffer one binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    pub fn stats(&self) -> GpuStats {
        self.counters.stats()
    }

    fn checked_size<T: Pod>(&self, len: usize, label: &str) -> Result<u64, GpuError> {
        let bytes = (len.max(1) as u64).saturating_mul(std::mem::size_of::<T>() as u64);
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::BufferTooLarge { label: label.to_owned(), bytes, limit });
        }
        // Sizes of copies must be multiples of 4 bytes; 16 lets any buffer be bound as vec4
        // values too (a kernel that reads rows four values at a time binds the buffer twice).
        Ok(bytes.div_ceil(16) * 16)
    }

    const USAGE: wgpu::BufferUsages =
        wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

    /// A zero-filled buffer of `len` values.
    pub fn zeros<T: Pod>(&self, len: usize, label: &str) -> Result<GpuBuffer<T>, GpuError> {
        let size = self.checked_size::<T>(len, label)?;
        let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: Self::USAGE,
            mapped_at_creation: false,
        });
        self.counters.object();
        Ok(GpuBuffer::from_raw(raw, len, label))
    }

    /// A buffer holding a copy of `values`.
    pub fn upload<T: Pod>(&self, values: &[T], label: &str) -> Result<GpuBuffer<T>, GpuError> {
        let size = self.checked_size::<T>(values.len(), label)?;
        let mut bytes = bytemuck::cast_slice::<T, u8>(values).to_vec();
        bytes.resize(size as usize, 0);
        let raw = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: Self::USAGE,
        });
        self.counters.object();
        Ok(GpuBuffer::from_raw(raw, values.len(), label))
    }

    /// Overwrites the first `values.len()` values of `buffer` (queued before the next submit).
    pub fn write<T: Pod>(&self, buffer: &GpuBuffer<T>, values: &[T]) -> Result<(), GpuError> {
        if values.len() > buffer.len() {
            return Err(GpuError::WriteTooLong {
                label: buffer.label().to_owned(),
                values: values.len(),
                len: buffer.len(),
            });
        }
        let bytes = bytemuck::cast_slice::<T, u8>(values);
        // write_buffer needs a multiple of 4 bytes; every T used here is 4 bytes wide.
        self.queue.write_buffer(&buffer.raw, 0, bytes);
        Ok(())
    }

    /// Blocks until every submitted command has finished.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.counters.wait();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Wait { reason: e.to_string() })
    }

    pub fn recorder(&self) -> Recorder<'_> {
        Recorder::new(self)
    }

    /// The alignment of a storage binding's offset, in bytes.
    pub fn storage_alignment(&self) -> u64 {
        u64::from(self.limits.min_storage_buffer_offset_alignment)
    }

    /// A buffer of indirect dispatch counts, (x, y, z) per dispatch, that kernels may write.
    pub(crate) fn indirect_args(&self, counts: &[u32], label: &str) -> Result<GpuBuffer<u32>, GpuError> {
        let size = self.checked_size::<u32>(counts.len(), label)?;
        let mut bytes = bytemuck::cast_slice::<u32, u8>(counts).to_vec();
        bytes.resize(size as usize, 0);
        let raw = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: Self::USAGE | wgpu::BufferUsages::INDIRECT,
        });
        self.counters.object();
        Ok(GpuBuffer::from_raw(raw, counts.len(), label))
    }

    /// Submits `programs` in one command buffer, in order, and returns without waiting.
    pub fn submit(&self, programs: &[&Program]) -> Result<Submission, GpuError> {
        self.submit_then(programs, |_| {})
    }

    /// [`Gpu::submit`], then `after` records into the same command buffer (copies for a
    /// read-back) once the compute pass has ended.
    pub(crate) fn submit_then(
        &self,
        programs: &[&Program],
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<Submission, GpuError> {
        let dispatches: usize = programs.iter().map(|p| p.dispatches()).sum();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        if dispatches > 0 {
            let timed = self.timer.as_ref().map(|timer| timer.pass(&self.device, &self.counters));
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: timed.as_ref().map(|t| t.writes()),
                });
                for program in programs {
                    program.encode(&mut pass);
                }
            }
            if let (Some(timer), Some(timed)) = (&self.timer, timed) {
                timer.finish(timed, &mut encoder);
            }
        }
        after(&mut encoder);
        let index = self.queue.submit([encoder.finish()]);
        self.counters.submit(dispatches as u64);
        let seq = self.submitted.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Submission { seq, index })
    }

    /// Blocks until `submission` has finished. Waiting for the latest submit drains the queue
    /// (a blocking wait in [`GpuStats`]); waiting for an older one, while later ones keep the
    /// device busy, is a paced wait.
    pub fn wait_for(&self, submission: &Submission) -> Result<(), GpuError> {
        if submission.seq >= self.submitted.load(Ordering::Relaxed) {
            self.counters.wait();
        } else {
            self.counters.paced_wait();
        }
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(submission.index.clone()), timeout: None })
            .map(|_| ())
            .map_err(|e| GpuError::Wait { reason: e.to_string() })
    }
}
