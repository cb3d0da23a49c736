use std::marker::PhantomData;

use bytemuck::Pod;

/// A storage buffer that holds `len` values of type `T` on the device.
///
/// The allocation is never empty (wgpu cannot bind a zero-sized buffer), so a buffer of
/// length 0 owns one unused element; `len` is always the logical length.
pub struct GpuBuffer<T: Pod> {
    pub(crate) raw: wgpu::Buffer,
    len: usize,
    label: String,
    _values: PhantomData<T>,
}

impl<T: Pod> GpuBuffer<T> {
    pub(crate) fn from_raw(raw: wgpu::Buffer, len: usize, label: &str) -> Self {
        Self { raw, len, label: label.to_owned(), _values: PhantomData }
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
}

impl<T: Pod> std::fmt::Debug for GpuBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer<{}>({:?}, len {})", std::any::type_name::<T>(), self.label, self.len)
    }
}
