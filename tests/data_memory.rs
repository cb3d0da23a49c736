//! Memory while loading data follows what a file's header promises, never what its compressed
//! stream would expand to: a counting allocator measures the peak of each load. One test in
//! this binary, so that no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use newton_wgpu::data::{self, read_idx_images, read_libsvm, DataError, LibsvmOptions};
use newton_wgpu::nn::Shape;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most memory `load` held beyond what was held before it, and its result.
fn peak_of<T>(load: impl FnOnce() -> T) -> (usize, T) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = load();
    (PEAK.load(Ordering::Relaxed) - before, result)
}

/// Writes `header` then `zeros` zero bytes, gzipped (a few hundred KiB for many MiB).
fn gzip_bomb(path: &Path, header: &[u8], zeros: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(header).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..zeros / block.len() {
        gz.write_all(&block).unwrap();
    }
    gz.finish().unwrap();
}

fn idx_images_header(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    [0x0803, count, rows, cols].iter().flat_map(|w: &u32| w.to_be_bytes()).collect()
}

const MIB: usize = 1 << 20;

#[test]
fn loads_hold_a_small_multiple_of_what_headers_promise() {
    let dir = tempfile::tempdir().unwrap();

    // 10 images of 28×28 promised (7,840 bytes), 256 MiB of zeros after them.
    let bomb = dir.path().join("bomb-idx3-ubyte.gz");
    gzip_bomb(&bomb, &idx_images_header(10, 28, 28), 256 * MIB);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2 * MIB as u64);
    let (peak, result) = peak_of(|| read_idx_images(&bomb));
    assert!(matches!(result, Err(DataError::TrailingBytes { .. })), "{result:?}");
    assert!(peak < MIB, "a 7,840-byte promise took {peak} bytes");

    // A header that promises far more than any machine has: refused before it is read.
    let huge = dir.path().join("huge-idx3-ubyte");
    std::fs::write(&huge, idx_images_header(u32::MAX, 1 << 16, 1 << 16)).unwrap();
    let (peak, result) = peak_of(|| read_idx_images(&huge));
    assert!(matches!(result, Err(DataError::TooLarge { .. })), "{result:?}");
    assert!(peak < MIB, "{peak} bytes");

    // A real load: the bundled digits' 8,000 training and 2,000 test images (7.8 MB of
    // pixels, 31 MB as f32) take about the pixels' five bytes each, plus the labels.
    let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let (peak, split) = peak_of(|| data::load_dir(bundled.as_ref()));
    let split = split.unwrap();
    let pixels = split.train.images.len() + split.test.images.len();
    assert!(peak <= 6 * pixels, "{pixels} pixels took {peak} bytes");
    drop(split);

    // A LIBSVM file whose one line never ends: stopped at the longest line 4 features allow.
    let endless = dir.path().join("endless.libsvm.gz");
    gzip_bomb(&endless, b"1 1:", 64 * MIB);
    let options = LibsvmOptions { shape: Shape::new(1, 2, 2), classes: 3, max_value: 1.0 };
    let (peak, result) = peak_of(|| read_libsvm(&endless, &options));
    assert!(
        matches!(&result, Err(DataError::Libsvm { message, .. }) if message.contains("longer than")),
        "{result:?}"
    );
    assert!(peak < MIB, "{peak} bytes");
}
