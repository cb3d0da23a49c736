//! Reading device buffers back to the host: blocking reads through a pool of staging buffers,
//! and a ring of staging buffers for reads that complete while the queue keeps working.

use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytemuck::Pod;

use super::context::Submission;
use super::{Gpu, GpuBuffer, GpuError, Program};

/// Staging buffers come in powers of two from this size on, so that a few serve every read.
const SMALLEST_STAGING: u64 = 256;

fn staging_buffer(gpu: &Gpu, size: u64, label: &str) -> wgpu::Buffer {
    gpu.counters.object();
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

fn map_failed(label: &str, reason: impl ToString) -> GpuError {
    GpuError::ReadBack { label: label.to_owned(), reason: reason.to_string() }
}

impl Gpu {
    /// Copies the whole buffer back to the host: one submit, one wait.
    pub fn read<T: Pod>(&self, buffer: &GpuBuffer<T>) -> Result<Vec<T>, GpuError> {
        self.read_range(buffer, 0, buffer.len())
    }

    /// Copies `len` values starting at `start` back to the host: one submit, one wait.
    pub fn read_range<T: Pod>(
        &self,
        buffer: &GpuBuffer<T>,
        start: usize,
        len: usize,
    ) -> Result<Vec<T>, GpuError> {
        if start.checked_add(len).is_none_or(|end| end > buffer.len()) {
            return Err(GpuError::ReadOutOfRange {
                label: buffer.label().to_owned(),
                start,
                count: len,
                len: buffer.len(),
            });
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let elem = std::mem::size_of::<T>() as u64;
        let size = len as u64 * elem;
        let padded = size.div_ceil(4) * 4;
        let staging = self.take_staging(padded);
        let submission = self.submit_then(&[], |encoder| {
            encoder.copy_buffer_to_buffer(&buffer.raw, start as u64 * elem, &staging, 0, padded);
        })?;
        self.counters.readback();
        let signal = Arc::new(MapSignal::default());
        signal.start();
        let done = signal.clone();
        staging.slice(..padded).map_async(wgpu::MapMode::Read, move |result| done.complete(result));
        self.wait_for(&submission)?;
        let values = match signal.wait(self) {
            Ok(()) => {
                let view =
                    staging.slice(..padded).get_mapped_range().map_err(|e| map_failed(buffer.label(), e))?;
                bytemuck::pod_collect_to_vec::<u8, T>(&view[..size as usize])
            }
            Err(e) => return Err(map_failed(buffer.label(), e)),
        };
        staging.unmap();
        self.staging.lock().expect("staging pool poisoned").push(staging);
        Ok(values)
    }

    /// A free staging buffer of at least `size` bytes, from the pool or new.
    fn take_staging(&self, size: u64) -> wgpu::Buffer {
        let class = size.max(SMALLEST_STAGING).next_power_of_two();
        let mut pool = self.staging.lock().expect("staging pool poisoned");
        match pool.iter().position(|b| b.size() == class) {
            Some(i) => pool.swap_remove(i),
            None => staging_buffer(self, class, "staging"),
        }
    }

    /// A ring of `depth` staging buffers for reads of `len` values (see [`ReadRing`]).
    pub fn read_ring<T: Pod>(&self, len: usize, depth: usize) -> Result<ReadRing<T>, GpuError> {
        let bytes = (len.max(1) * std::mem::size_of::<T>()).div_ceil(4) as u64 * 4;
        let slots = (0..depth.max(1))
            .map(|_| RingSlot { buffer: staging_buffer(self, bytes, "read ring"), signal: Arc::default() })
            .collect();
        Ok(ReadRing { len, slots, next: 0, _values: PhantomData })
    }

    /// Submits `programs` and, in the same command buffer, a copy of the first `ring.len()`
    /// values of `source` into the ring's next staging buffer; returns at once. The values
    /// are taken with [`Gpu::take`] once the work is done.
    pub fn submit_reading<T: Pod>(
        &self,
        programs: &[&Program],
        source: &GpuBuffer<T>,
        ring: &mut ReadRing<T>,
    ) -> Result<ReadTicket, GpuError> {
        let len = ring.len;
        self.submit_reading_segments(programs, &[(source, 0..len)], ring)
    }

    /// [`Gpu::submit_reading`] of several ranges, one after another in the read: `segments`
    /// (a buffer and a range of its values each) together hold `ring.len()` values.
    pub fn submit_reading_segments<T: Pod>(
        &self,
        programs: &[&Program],
        segments: &[(&GpuBuffer<T>, std::ops::Range<usize>)],
        ring: &mut ReadRing<T>,
    ) -> Result<ReadTicket, GpuError> {
        for (source, range) in segments {
            if range.start > range.end || range.end > source.len() {
                return Err(GpuError::ReadOutOfRange {
                    label: source.label().to_owned(),
                    start: range.start,
                    count: range.len(),
                    len: source.len(),
                });
            }
        }
        let total: usize = segments.iter().map(|(_, range)| range.len()).sum();
        let elem = std::mem::size_of::<T>() as u64;
        if total != ring.len || !elem.is_multiple_of(4) {
            return Err(GpuError::ReadBack {
                label: segments.first().map_or("read ring", |(source, _)| source.label()).to_owned(),
                reason: format!(
                    "{total} values of {elem} bytes read into a ring of {} values of 4-byte multiples",
                    ring.len
                ),
            });
        }
        let slot = ring.next;
        if ring.slots[slot].busy() {
            return Err(GpuError::ReadBack {
                label: segments.first().map_or("read ring", |(source, _)| source.label()).to_owned(),
                reason: format!(
                    "all {} staging buffers of the ring hold reads not taken yet",
                    ring.slots.len()
                ),
            });
        }
        ring.next = (slot + 1) % ring.slots.len();
        let staging = &ring.slots[slot];
        let submission = self.submit_then(programs, |encoder| {
            let mut at = 0;
            for (source, range) in segments {
                let size = range.len() as u64 * elem;
                if size > 0 {
                    encoder.copy_buffer_to_buffer(
                        &source.raw,
                        range.start as u64 * elem,
                        &staging.buffer,
                        at,
                        size,
                    );
                }
                at += size;
            }
        })?;
        self.counters.readback();
        staging.signal.start();
        let signal = staging.signal.clone();
        staging.buffer.slice(..).map_async(wgpu::MapMode::Read, move |result| signal.complete(result));
        Ok(ReadTicket { slot, submission })
    }

    /// The values a [`Gpu::submit_reading`] copied: waits for that submit (only that one:
    /// later submits keep running) unless it is done.
    pub fn take<T: Pod>(&self, ring: &mut ReadRing<T>, ticket: ReadTicket) -> Result<Vec<T>, GpuError> {
        let slot = &ring.slots[ticket.slot];
        if !slot.signal.is_mapped() {
            self.wait_for(&ticket.submission)?;
        }
        slot.signal.wait(self).map_err(|e| map_failed("read ring", e))?;
        let values = {
            let view = slot.buffer.slice(..).get_mapped_range().map_err(|e| map_failed("read ring", e))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view[..ring.len * std::mem::size_of::<T>()])
        };
        slot.buffer.unmap();
        Ok(values)
    }
}

/// Where a mapping of a staging buffer stands.
enum Pending {
    Mapping,
    Mapped(Result<(), wgpu::BufferAsyncError>),
}

/// The state of one mapping, set by wgpu's callback. The callback runs in whichever thread's
/// poll finds the mapping done, so a waiter may see its submit finished before the callback
/// has run: it then waits on the condition variable for it.
#[derive(Default)]
struct MapSignal {
    state: Mutex<Option<Pending>>,
    ready: Condvar,
}

impl MapSignal {
    fn start(&self) {
        *self.state.lock().expect("map state poisoned") = Some(Pending::Mapping);
    }

    fn complete(&self, result: Result<(), wgpu::BufferAsyncError>) {
        *self.state.lock().expect("map state poisoned") = Some(Pending::Mapped(result));
        self.ready.notify_all();
    }

    fn busy(&self) -> bool {
        self.state.lock().expect("map state poisoned").is_some()
    }

    fn is_mapped(&self) -> bool {
        matches!(*self.state.lock().expect("map state poisoned"), Some(Pending::Mapped(_)))
    }

    /// Waits for the callback of a mapping whose submit is done, and frees the signal.
    fn wait(&self, gpu: &Gpu) -> Result<(), String> {
        let mut state = self.state.lock().expect("map state poisoned");
        loop {
            match state.take() {
                Some(Pending::Mapped(result)) => return result.map_err(|e| e.to_string()),
                None => return Err("no mapping was started".into()),
                Some(Pending::Mapping) => *state = Some(Pending::Mapping),
            }
            // Another thread's poll is running the callback, or none has polled since the
            // submit finished: poll once without blocking, then sleep until notified.
            drop(state);
            let _ = gpu.device.poll(wgpu::PollType::Poll);
            state = self.state.lock().expect("map state poisoned");
            if matches!(*state, Some(Pending::Mapping)) {
                state =
                    self.ready.wait_timeout(state, Duration::from_millis(10)).expect("map state poisoned").0;
            }
        }
    }
}

struct RingSlot {
    buffer: wgpu::Buffer,
    signal: Arc<MapSignal>,
}

impl RingSlot {
    fn busy(&self) -> bool {
        self.signal.busy()
    }
}

/// Staging buffers for reading a small device buffer back without draining the queue: each
/// read is a copy in a submit ([`Gpu::submit_reading`]) and is taken when that submit is done
/// ([`Gpu::take`]). A buffer cannot serve a new read until its last one is taken, so a ring
/// of D buffers allows D reads in flight.
pub struct ReadRing<T: Pod> {
    len: usize,
    slots: Vec<RingSlot>,
    next: usize,
    _values: PhantomData<T>,
}

impl<T: Pod> ReadRing<T> {
    /// Values per read.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A read in flight: see [`Gpu::submit_reading`].
pub struct ReadTicket {
    slot: usize,
    submission: Submission,
}

impl ReadTicket {
    pub fn submission(&self) -> &Submission {
        &self.submission
    }
}
