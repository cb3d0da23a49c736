use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

/// A storage buffer that holds `len` values of type `T` on the device.
///
/// The allocation is never empty (wgpu cannot bind a zero-sized buffer), so a buffer of
/// length 0 owns one unused element; `len` is always the logical length. Each buffer has an
/// id of its own, by which recorded programs know which buffers they bind.
pub struct GpuBuffer<T: Pod> {
    pub(crate) raw: wgpu::Buffer,
    id: u64,
    len: usize,
    label: String,
    _values: PhantomData<T>,
}

impl<T: Pod> GpuBuffer<T> {
    pub(crate) fn from_raw(raw: wgpu::Buffer, len: usize, label: &str) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self { raw, id, len, label: label.to_owned(), _values: PhantomData }
    }

    /// Number of values the buffer holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the values in bytes (not of the allocation).
    pub fn bytes(&self) -> u64 {
        (self.len * std::mem::size_of::<T>()) as u64
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn raw(&self) -> &wgpu::Buffer {
        &self.raw
    }

    /// This buffer's identity, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The values from `start` on, as a binding (a kernel sees them from index 0). `start`
    /// must be a multiple of the adapter's storage offset alignment in bytes (see
    /// [`super::Gpu::storage_alignment`]); the recorder checks it.
    pub fn from_index(&self, start: usize) -> BufferView<'_, T> {
        BufferView { buffer: self, start }
    }
}

impl<T: Pod> std::fmt::Debug for GpuBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer<{}>({:?}, len {})", std::any::type_name::<T>(), self.label, self.len)
    }
}

/// A buffer bound from a value on: see [`GpuBuffer::from_index`].
#[derive(Clone, Copy)]
pub struct BufferView<'a, T: Pod> {
    buffer: &'a GpuBuffer<T>,
    start: usize,
}

/// A storage buffer, or part of one, as a kernel binding.
pub trait Binding {
    fn buffer(&self) -> &wgpu::Buffer;
    /// The buffer's id ([`GpuBuffer::id`]).
    fn id(&self) -> u64;
    /// Where the binding starts, in bytes.
    fn offset(&self) -> u64;
    fn label(&self) -> &str;
}

impl<T: Pod> Binding for GpuBuffer<T> {
    fn buffer(&self) -> &wgpu::Buffer {
        &self.raw
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn offset(&self) -> u64 {
        0
    }

    fn label(&self) -> &str {
        &self.label
    }
}

impl<T: Pod> Binding for BufferView<'_, T> {
    fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer.raw
    }

    fn id(&self) -> u64 {
        self.buffer.id
    }

    fn offset(&self) -> u64 {
        (self.start * std::mem::size_of::<T>()) as u64
    }

    fn label(&self) -> &str {
        &self.buffer.label
    }
}
