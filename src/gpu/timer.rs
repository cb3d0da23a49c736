//! GPU time of submitted work from timestamp queries, for benchmarks. Each submit's compute
//! pass writes a timestamp at its start and end; the two ticks are resolved into a small
//! buffer that is read only when someone asks for the total, so timing adds no wait to the
//! work it measures. Query sets and buffers are reused once read. Not counted as read-backs in [`GpuStats`](super::GpuStats): it exists
//! only when asked for ([`GpuOptions::timestamps`](super::GpuOptions)).

use std::sync::Mutex;
use std::time::Duration;

use super::context::Counters;
use super::GpuError;

/// Bytes of the two resolved ticks of one pass.
const TICKS_BYTES: u64 = 2 * std::mem::size_of::<u64>() as u64;

pub(crate) struct Timer {
    /// Nanoseconds per tick.
    period_ns: f64,
    /// Passes whose (start, end) ticks have not been summed yet.
    pending: Mutex<Vec<TimedPass>>,
    /// Passes already summed, ready for another submit.
    free: Mutex<Vec<TimedPass>>,
}

/// The query set and buffers of one timed pass.
pub(crate) struct TimedPass {
    query_set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readable: wgpu::Buffer,
}

impl TimedPass {
    pub(crate) fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }
}

impl Timer {
    pub(crate) fn new(queue: &wgpu::Queue) -> Self {
        Self {
            period_ns: f64::from(queue.get_timestamp_period()),
            pending: Mutex::new(Vec::new()),
            free: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn pass(&self, device: &wgpu::Device, counters: &Counters) -> TimedPass {
        if let Some(pass) = self.free.lock().expect("timer poisoned").pop() {
            return pass;
        }
        // A query set and two buffers.
        (0..3).for_each(|_| counters.object());
        let query_set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pass timestamps"),
                size: TICKS_BYTES,
                usage,
                mapped_at_creation: false,
            })
        };
        TimedPass {
            query_set,
            resolved: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readable: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        }
    }

    /// Records the resolve of `pass`'s ticks after its pass ends; they are read by [`Timer::take`].
    pub(crate) fn finish(&self, pass: TimedPass, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&pass.query_set, 0..2, &pass.resolved, 0);
        encoder.copy_buffer_to_buffer(&pass.resolved, 0, &pass.readable, 0, TICKS_BYTES);
        self.pending.lock().expect("timer poisoned").push(pass);
    }

    /// The GPU time of every pass timed since the last call. Waits for them to finish.
    pub(crate) fn take(&self, device: &wgpu::Device) -> Result<Duration, GpuError> {
        let passes = std::mem::take(&mut *self.pending.lock().expect("timer poisoned"));
        let failed = |reason: String| GpuError::ReadBack { label: "pass timestamps".into(), reason };
        for pass in &passes {
            pass.readable.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| failed(e.to_string()))?;
        let mut ticks = 0u64;
        for pass in &passes {
            {
                let view = pass.readable.slice(..).get_mapped_range().map_err(|e| failed(e.to_string()))?;
                let [start, end]: [u64; 2] = bytemuck::pod_read_unaligned(&view[..TICKS_BYTES as usize]);
                ticks += end.saturating_sub(start);
            }
            pass.readable.unmap();
        }
        self.free.lock().expect("timer poisoned").extend(passes);
        Ok(Duration::from_secs_f64(ticks as f64 * self.period_ns * 1e-9))
    }
}
