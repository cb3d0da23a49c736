use thiserror::Error;

/// Errors of the device layer.
#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found (tried backends: {tried}). Install a GPU driver, or Mesa's software \
         Vulkan driver (`apt-get install mesa-vulkan-drivers` on Debian/Ubuntu); WGPU_BACKEND \
         chooses the backends to try (vulkan, metal, dx12, gl)"
    )]
    NoAdapter { tried: String },

    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound { wanted: String, available: String },

    #[error("{name}: {reason}")]
    BadSetting { name: String, reason: String },

    #[error("the adapter {adapter:?} refused a device: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error(
        "buffer {label:?} needs {bytes} bytes but the adapter binds at most {limit} bytes per storage buffer"
    )]
    BufferTooLarge { label: String, bytes: u64, limit: u64 },

    #[error(
        "kernel {kernel} needs {workgroups} workgroups, more than the adapter can dispatch \
         ({max_per_dim} per dimension, two dimensions)"
    )]
    DispatchTooLarge { kernel: String, workgroups: u64, max_per_dim: u32 },

    #[error(
        "kernel {kernel}: buffer {buffer:?} is bound from byte {offset}, not a multiple of the \
         adapter's storage offset alignment ({alignment} bytes)"
    )]
    MisalignedBinding { kernel: String, buffer: String, offset: u64, alignment: u64 },

    #[error("kernel {kernel}: buffer {buffer:?} holds {found} values, needs at least {needed}")]
    ShortBuffer { kernel: String, buffer: String, needed: usize, found: usize },

    #[error("reading buffer {label:?} back from the device failed: {reason}")]
    ReadBack { label: String, reason: String },

    #[error("waiting for the device to finish its work failed: {reason}")]
    Wait { reason: String },

    #[error("writing {values} values into buffer {label:?}, which holds {len}")]
    WriteTooLong { label: String, values: usize, len: usize },

    #[error("reading {count} values from {start} on of buffer {label:?}, which holds {len}")]
    ReadOutOfRange { label: String, start: usize, count: usize, len: usize },
}
