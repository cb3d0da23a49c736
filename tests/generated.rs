//! Generated inputs for everything that reads from outside: the data readers, the network
//! parser, the model and checkpoint loaders and the settings' validation. Random headers,
//! sizes near the integer limits, truncations and bit flips of valid files: every case ends in
//! Ok or a typed error, never a panic, and a load never holds more than a small multiple of
//! the data it was given. CI runs 48 cases of each; PROPTEST_CASES=10000 runs more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use newton_wgpu::data::{read_cifar10_batch, read_idx_images, read_idx_labels, read_libsvm, LibsvmOptions};
use newton_wgpu::loss::Loss;
use newton_wgpu::model::{Checkpoint, Model, TrainedOn};
use newton_wgpu::nn::{parse_network, LayerSpec, Network, NetworkFormat, Shape};
use newton_wgpu::optim::cg::PreconditionerOptions;
use newton_wgpu::optim::newton::NewtonOptions;
use newton_wgpu::optim::sgd::SgdOptions;
use newton_wgpu::optim::sgn::SgnOptions;
use proptest::prelude::*;

/// Counts the bytes allocated, per thread, so that each case's peak can be bounded while
/// proptest runs cases on one thread.
struct Counting;

thread_local! {
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = CURRENT.try_with(|c| {
            let now = c.get() + layout.size();
            c.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = CURRENT.try_with(|c| c.set(c.get().saturating_sub(layout.size())));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most memory `load` held on this thread beyond what was held before it.
fn peak_of<T>(load: impl FnOnce() -> T) -> (usize, T) {
    let before = CURRENT.with(|c| c.get());
    PEAK.with(|p| p.set(before));
    let result = load();
    (PEAK.with(|p| p.get()) - before, result)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() }
}

/// A header word: small, near a limit, or anything.
fn word() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..40,
        Just(1 << 16),
        Just((1 << 16) + 1),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        any::<u32>()
    ]
}

/// A file's bytes after a mutation: as they are, cut short, a bit flipped, or with bytes after.
fn mutate(bytes: Vec<u8>, how: u8, at: usize, extra: Vec<u8>) -> Vec<u8> {
    let mut bytes = bytes;
    match how % 4 {
        0 => {}
        1 => bytes.truncate(at % (bytes.len() + 1)),
        2 if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] ^= 1 << (at % 8);
        }
        _ => bytes.extend(extra),
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A load of a file whose decoded data is `decoded` bytes holds at most this.
fn bound(decoded: usize) -> usize {
    8 * decoded + (4 << 20)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_files_load_or_fail_cleanly(
        magic in prop_oneof![Just(0x0803u32), Just(0x0801u32), any::<u32>()],
        (count, rows, cols) in (word(), word(), word()),
        body_len in 0usize..3000,
        (how, at, extra) in (any::<u8>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16)),
        gzipped in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes: Vec<u8> = [magic, count, rows, cols].iter().flat_map(|w| w.to_be_bytes()).collect();
        bytes.extend((0..body_len).map(|i| i as u8));
        let bytes = mutate(bytes, how, at, extra);
        let decoded = bytes.len();
        let file = if gzipped { gzip(&bytes) } else { bytes };
        let path = write(dir.path(), "file", &file);
        let (peak, images) = peak_of(|| read_idx_images(&path));
        prop_assert!(peak <= bound(decoded), "{peak} bytes for {decoded}");
        if let Ok((n, r, c, pixels)) = images {
            prop_assert_eq!(pixels.len() as u64, n as u64 * r as u64 * c as u64);
        }
        let (peak, labels) = peak_of(|| read_idx_labels(&path));
        prop_assert!(peak <= bound(decoded));
        if let Ok(labels) = labels {
            prop_assert!(labels.len() <= decoded);
        }
    }

    #[test]
    fn cifar_and_libsvm_files_load_or_fail_cleanly(
        bytes in proptest::collection::vec(any::<u8>(), 0..8000),
        text in "[0-9:. \\n-]{0,400}",
        gzipped in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let encode = |b: &[u8]| if gzipped { gzip(b) } else { b.to_vec() };
        let path = write(dir.path(), "batch.bin", &encode(&bytes));
        let (peak, batch) = peak_of(|| read_cifar10_batch(&path));
        prop_assert!(peak <= bound(bytes.len()));
        if let Ok((labels, pixels)) = batch {
            prop_assert_eq!(pixels.len(), labels.len() * 3072);
        }
        let path = write(dir.path(), "data.libsvm", &encode(text.as_bytes()));
        let options = LibsvmOptions { shape: Shape::new(1, 2, 3), classes: 4, max_value: 1.0 };
        let (peak, data) = peak_of(|| read_libsvm(&path, &options));
        prop_assert!(peak <= bound(text.len()));
        if let Ok(data) = data {
            prop_assert!(data.labels.iter().all(|&l| l < 4));
        }
    }

    #[test]
    fn network_files_parse_or_fail_cleanly(
        layers in proptest::collection::vec(
            (prop_oneof![Just("conv"), Just("dense"), Just("maxpool"), Just("relu"), Just("flatten"), Just("pool")],
             proptest::collection::vec(
                 (prop_oneof![Just("kernel"), Just("channels"), Just("stride"), Just("padding"),
                              Just("units"), Just("size"), Just("bogus")],
                  prop_oneof![0i64..6, Just(1 << 16), Just((1 << 16) + 1), Just(i64::MAX), Just(-1), any::<i64>()]),
                 0..4)),
            0..6),
        input in (word(), word(), word()),
        json in any::<bool>(),
    ) {
        let text = if json {
            let layers: Vec<String> = layers.iter().map(|(kind, fields)| {
                let fields: String = fields.iter().map(|(k, v)| format!(", \"{k}\": {v}")).collect();
                format!("{{\"type\": \"{kind}\"{fields}}}")
            }).collect();
            format!("{{\"layers\": [{}]}}", layers.join(", "))
        } else {
            layers.iter().map(|(kind, fields)| {
                let fields: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
                format!("[[layers]]\ntype = \"{kind}\"\n{fields}")
            }).collect()
        };
        let format = if json { NetworkFormat::Json } else { NetworkFormat::Toml };
        if let Ok(specs) = parse_network(&text, format, Path::new("generated")) {
            let shape = Shape::new(input.0 as usize, input.1 as usize, input.2 as usize);
            if let Ok(network) = Network::new(shape, &specs) {
                prop_assert!(network.param_count() <= i32::MAX as usize);
                prop_assert!(network.layers().iter().all(|l| l.output().len() <= i32::MAX as usize));
            }
        }
    }

    #[test]
    fn models_and_checkpoints_load_or_fail_cleanly(
        (how, at, extra) in (any::<u8>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..64)),
        field in prop_oneof![Just(r#"\"channels\":4"#), Just(r#"\"kernel\":3"#), Just(r#"\"height\":6"#)],
        value in prop_oneof![Just(0u64), Just(1 << 16), Just((1 << 16) + 1), Just(u32::MAX as u64), any::<u64>()],
        checkpoint in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let network = Network::new(
            Shape::new(1, 6, 6),
            &[LayerSpec::conv(3, 4, 1, 1), LayerSpec::Relu, LayerSpec::dense(3)],
        ).unwrap();
        let model = Model { theta: network.init_params(1), network: network.clone(), normalizer: None, loss: Loss::CrossEntropy };
        let path = dir.path().join("model.safetensors");
        if checkpoint {
            let velocity = Some(vec![0.5; network.param_count()]);
            let trained_on = TrainedOn { c: 0.01, samples: 60, limit: Some(60), ..Default::default() };
            Checkpoint { model, state: "{\"iteration\":1}".into(), velocity, trained_on }.save(&path).unwrap();
        } else {
            model.save(&path).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        // Either a size in the metadata changed (the header keeps its length when the digits
        // do), or the file cut, flipped or extended.
        let name = field.split(':').next().unwrap();
        prop_assert!(String::from_utf8_lossy(&bytes).contains(field), "the metadata holds {field}");
        let edited = String::from_utf8_lossy(&bytes).replacen(field, &format!("{name}:{value}"), 1);
        let bytes = if how % 5 == 4 { edited.into_bytes() } else { mutate(bytes, how, at, extra) };
        std::fs::write(&path, &bytes).unwrap();
        let (peak, _) = peak_of(|| (Model::load(&path).is_ok(), Checkpoint::load_for(&path, &network).is_ok()));
        prop_assert!(peak <= bound(bytes.len()));
    }

    #[test]
    fn settings_are_accepted_exactly_within_their_ranges(
        value in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-f64::INFINITY), Just(0.0), Just(1.0),
                             Just(-0.0), Just(1e300), Just(-1e-300), Just(1e20), Just(1.0000001e20),
                             -2.0f64..2.0],
        count in prop_oneof![Just(0usize), 1usize..10, Just(256), Just(257), Just(1000), Just(1001),
                             Just(10_000), Just(10_001), Just(1_000_000), Just(1_000_001),
                             Just(1 << 30), Just((1 << 30) + 1), Just(usize::MAX)],
    ) {
        let l = 100;
        let base = NewtonOptions::default();
        let newton = |o: NewtonOptions| o.validate(l).is_ok();
        let damping = (0.0..=newton_wgpu::rules::MAX_LAMBDA).contains(&value);
        prop_assert_eq!(newton(NewtonOptions { lambda: value, ..base.clone() }), damping);
        prop_assert_eq!(newton(NewtonOptions { xi: value, ..base.clone() }), value > 0.0 && value < 1.0);
        prop_assert_eq!(newton(NewtonOptions { eta: value, ..base.clone() }), value > 0.0 && value < 1.0);
        prop_assert_eq!(newton(NewtonOptions { drop: value, ..base.clone() }), value > 0.0 && value <= 1.0);
        prop_assert_eq!(newton(NewtonOptions { boost: value, ..base.clone() }), value.is_finite() && value >= 1.0);
        prop_assert_eq!(newton(NewtonOptions { grad_tol: Some(value), ..base.clone() }), value.is_finite() && value >= 0.0);
        prop_assert_eq!(newton(NewtonOptions { cg_check_every: count, ..base.clone() }), (1..=256).contains(&count));
        prop_assert_eq!(newton(NewtonOptions { cg_max: count, ..base.clone() }), (1..=1_000_000).contains(&count));
        prop_assert_eq!(newton(NewtonOptions { iter_max: count, ..base.clone() }), count <= 1_000_000);
        let probes = Some(PreconditionerOptions { probes: count, ..Default::default() });
        prop_assert_eq!(newton(NewtonOptions { precondition: probes, ..base.clone() }), (1..=1000).contains(&count));
        prop_assert_eq!(newton(NewtonOptions { gn_size: Some(count), ..base.clone() }), (1..=l).contains(&count));
        let sgd = |o: SgdOptions| o.validate(l).is_ok();
        let base = SgdOptions::default();
        prop_assert_eq!(sgd(SgdOptions { lr: value, ..base.clone() }), value.is_finite() && value > 0.0);
        prop_assert_eq!(sgd(SgdOptions { momentum: value, ..base.clone() }), (0.0..1.0).contains(&value));
        prop_assert_eq!(sgd(SgdOptions { decay: value, ..base.clone() }), value.is_finite() && value >= 0.0);
        prop_assert_eq!(sgd(SgdOptions { batch: count, ..base.clone() }), (1..=1 << 30).contains(&count));
        prop_assert_eq!(sgd(SgdOptions { epochs: count, ..base.clone() }), count <= 1_000_000);
        prop_assert_eq!(sgd(SgdOptions { evals_per_epoch: count, ..base.clone() }), (1..=10_000).contains(&count));
        let sgn = |o: SgnOptions| o.validate(l).is_ok();
        let base = SgnOptions::default();
        prop_assert_eq!(sgn(SgnOptions { batch: count, gn_size: Some(1), ..base.clone() }), (1..=1 << 30).contains(&count));
        prop_assert_eq!(sgn(SgnOptions { cg_steps: count, ..base.clone() }), (1..=1_000_000).contains(&count));
        prop_assert_eq!(sgn(SgnOptions { cg_check_every: count, ..base.clone() }), (1..=256).contains(&count));
        let seconds = newton_wgpu::rules::seconds("time_budget", value);
        prop_assert_eq!(seconds.is_ok(), value > 0.0 && value.is_finite() && value < 1.8e19);
    }
}
