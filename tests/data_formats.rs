//! Each data format round-trips a small file the test writes itself, and each kind of bad
//! input gives its error.

use std::path::{Path, PathBuf};

use newton_wgpu::data::{
    self, read_cifar10_batch, read_idx_images, read_idx_labels, read_libsvm, write_cifar10_batch,
    write_idx_images, write_idx_labels, DataError, LibsvmOptions,
};
use newton_wgpu::nn::Shape;

/// A fresh, empty directory under the target dir, unique to the test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pixels(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    (0..count * rows * cols).map(|i| (i * 37 % 256) as u8).collect()
}

fn write_mnist(dir: &Path, gzip: bool, train: usize, test: usize) {
    let suffix = if gzip { ".gz" } else { "" };
    write_idx_images(&dir.join(format!("train-images-idx3-ubyte{suffix}")), 3, 5, &pixels(train, 3, 5), gzip)
        .unwrap();
    let labels: Vec<u8> = (0..train).map(|i| (i % 10) as u8).collect();
    write_idx_labels(&dir.join(format!("train-labels-idx1-ubyte{suffix}")), &labels, gzip).unwrap();
    write_idx_images(&dir.join(format!("t10k-images-idx3-ubyte{suffix}")), 3, 5, &pixels(test, 3, 5), gzip)
        .unwrap();
    let labels: Vec<u8> = (0..test).map(|i| (9 - i % 10) as u8).collect();
    write_idx_labels(&dir.join(format!("t10k-labels-idx1-ubyte{suffix}")), &labels, gzip).unwrap();
}

#[test]
fn mnist_idx_round_trips_raw_and_gzipped() {
    for gzip in [false, true] {
        let dir = scratch_dir(&format!("idx-{gzip}"));
        write_mnist(&dir, gzip, 12, 4);
        let split = data::load_dir(&dir).unwrap();
        assert_eq!(split.train.shape, Shape::new(1, 3, 5));
        assert_eq!(split.train.len(), 12);
        assert_eq!(split.test.len(), 4);
        let want: Vec<f32> = pixels(12, 3, 5).iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(split.train.images, want);
        assert_eq!(split.train.labels, (0..12).map(|i| i % 10).collect::<Vec<u32>>());
        assert_eq!(split.test.labels, vec![9, 8, 7, 6]);
    }
}

#[test]
fn normalization_subtracts_the_training_mean_from_both_sets() {
    let dir = scratch_dir("normalize");
    write_mnist(&dir, false, 6, 3);
    let mut split = data::load_dir(&dir).unwrap();
    let raw_train = split.train.clone();
    let raw_test = split.test.clone();
    let normalizer = split.normalize();
    for pixel in 0..15 {
        let mean: f64 = (0..6).map(|n| raw_train.images[n * 15 + pixel] as f64).sum::<f64>() / 6.0;
        assert!((normalizer.mean[pixel] as f64 - mean).abs() < 1e-6);
        let centred: f64 = (0..6).map(|n| split.train.images[n * 15 + pixel] as f64).sum();
        assert!(centred.abs() < 1e-5, "training pixel {pixel} not centred: {centred}");
        assert_eq!(split.test.images[pixel], raw_test.images[pixel] - normalizer.mean[pixel]);
    }
}

/// Standardised: each channel of the training set centred per pixel and of unit deviation
/// over its samples and positions; the test set shifted and scaled by the training set's
/// values; a constant channel left unscaled rather than divided by zero.
#[test]
fn standardization_divides_each_channel_by_its_training_deviation() {
    let shape = Shape::new(3, 2, 2);
    let (samples, plane) = (5, 4);
    // Channel 0 small values, channel 1 large ones, channel 2 constant.
    let image = |n: usize| -> Vec<f32> {
        (0..12)
            .map(|i| match i / plane {
                0 => 0.01 * ((n * 7 + i * 3) % 5) as f32,
                1 => 40.0 + 10.0 * ((n * 5 + i) % 4) as f32,
                _ => 0.5,
            })
            .collect()
    };
    let set = |range: std::ops::Range<usize>| {
        let images = range.clone().flat_map(image).collect();
        data::Dataset::new(shape, 2, images, range.map(|n| (n % 2) as u32).collect(), Path::new("made"))
            .unwrap()
    };
    let mut split =
        data::DataSplit { train: set(0..samples), test: set(samples..samples + 2), validation: None };
    let raw_test = split.test.clone();
    let normalizer = split.standardize();
    let std = normalizer.std.clone().expect("standardised");
    assert_eq!(normalizer.mean, data::Normalizer::fit(&set(0..samples)).mean);
    assert_eq!(std[2], 1.0, "a constant channel keeps its scale");
    assert!(std[1] > 100.0 * std[0], "the channels' deviations differ: {std:?}");
    for c in 0..2 {
        let values = |n: usize| split.train.images[n * 12 + c * plane..n * 12 + (c + 1) * plane].to_vec();
        let all: Vec<f64> = (0..samples).flat_map(values).map(f64::from).collect();
        let square = all.iter().map(|v| v * v).sum::<f64>() / all.len() as f64;
        assert!((square - 1.0).abs() < 1e-5, "channel {c}: mean square {square}");
        for pixel in 0..plane {
            let centred: f64 = (0..samples).map(|n| values(n)[pixel] as f64).sum();
            assert!(centred.abs() < 1e-5, "channel {c} pixel {pixel}: {centred}");
        }
    }
    for i in 0..12 {
        let want = (raw_test.images[i] - normalizer.mean[i]) / std[i / plane];
        assert_eq!(split.test.images[i], want, "test value {i}");
    }
    assert_eq!(split.train.images[8..12], [0.0; 4], "the constant channel is centred");
}

#[test]
fn a_validation_set_is_held_out_at_random_and_normalized_with_the_training_mean() {
    let dir = scratch_dir("hold-out");
    write_mnist(&dir, false, 20, 3);
    let whole = data::load_dir(&dir).unwrap();
    let mut split = whole.clone();
    split.hold_out(6, 7).unwrap();
    let (train, validation) = (&split.train, split.validation.as_ref().unwrap());
    assert_eq!((train.len(), validation.len()), (14, 6));
    // Every sample lands in exactly one part, each part in the original order (the pixels
    // make each sample distinct).
    let position = |image: &[f32]| (0..20).find(|&i| whole.train.images_of(i..i + 1) == image).unwrap();
    let positions =
        |d: &data::Dataset| (0..d.len()).map(|i| position(d.images_of(i..i + 1))).collect::<Vec<_>>();
    let (kept, held) = (positions(train), positions(validation));
    assert!(kept.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    assert_eq!(validation.labels, held.iter().map(|&i| whole.train.labels[i]).collect::<Vec<_>>());
    // Not simply the tail, and the same seed picks the same samples.
    assert_ne!(held, (14..20).collect::<Vec<_>>());
    let mut again = whole.clone();
    again.hold_out(6, 7).unwrap();
    assert_eq!(again.validation.as_ref().unwrap().labels, validation.labels);
    assert_eq!(again.train.images, train.images);

    let raw_validation = validation.clone();
    let normalizer = split.normalize();
    let normalized = split.validation.as_ref().unwrap();
    assert_eq!(normalized.images[3], raw_validation.images[3] - normalizer.mean[3]);
    // The mean is the training part's, not the whole set's.
    assert_eq!(normalizer.mean, data::Normalizer::fit(&whole.train.select(&kept)).mean);

    for count in [0, 20, 21] {
        let error = whole.clone().hold_out(count, 0).unwrap_err();
        assert!(matches!(error, DataError::ValidationSize { .. }), "{error}");
        assert!(error.to_string().contains(&format!("{count} of 20")), "{error}");
    }
}

#[test]
fn cifar10_batch_round_trips() {
    let dir = scratch_dir("cifar");
    let labels: Vec<u8> = vec![3, 0, 9];
    let image_bytes = pixels(3, 32, 96);
    for i in 1..=5 {
        write_cifar10_batch(&dir.join(format!("data_batch_{i}.bin")), &labels, &image_bytes).unwrap();
    }
    write_cifar10_batch(&dir.join("test_batch.bin"), &labels[..1], &image_bytes[..3072]).unwrap();
    let (read_labels, read_pixels) = read_cifar10_batch(&dir.join("data_batch_1.bin")).unwrap();
    assert_eq!(read_labels, vec![3, 0, 9]);
    assert_eq!(read_pixels, image_bytes.iter().map(|&p| p as f32 / 255.0).collect::<Vec<_>>());
    let split = data::load_dir(&dir).unwrap();
    assert_eq!(split.train.shape, Shape::new(3, 32, 32));
    assert!(split.train.mirror_invariant, "CIFAR-10's classes survive a flip");
    assert_eq!(split.train.len(), 15);
    assert_eq!(split.test.len(), 1);
}

fn libsvm_options() -> LibsvmOptions {
    LibsvmOptions { shape: Shape::new(1, 2, 3), classes: 3, max_value: 255.0 }
}

#[test]
fn libsvm_round_trips_dense_features() {
    let dir = scratch_dir("libsvm");
    let path = dir.join("tiny.svm");
    std::fs::write(&path, "2 1:255 3:51 6:102\n0 2:255\n\n1\n").unwrap();
    let data = read_libsvm(&path, &libsvm_options()).unwrap();
    assert_eq!(data.labels, vec![2, 0, 1]);
    #[rustfmt::skip]
    let want = [1.0, 0.0, 0.2, 0.0, 0.0, 0.4,
                0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(data.images, want);
}

fn expect_error(result: Result<impl std::fmt::Debug, DataError>, needles: &[&str]) -> DataError {
    let error = result.expect_err("bad input must be refused");
    let message = error.to_string();
    for needle in needles {
        assert!(message.contains(needle), "error {message:?} should mention {needle:?}");
    }
    error
}

#[test]
fn bad_idx_files_give_clear_errors() {
    let dir = scratch_dir("bad-idx");
    let images = dir.join("images");
    write_idx_images(&images, 2, 2, &pixels(3, 2, 2), false).unwrap();
    let labels = dir.join("labels");
    write_idx_labels(&labels, &[1, 2, 3], false).unwrap();

    // Wrong magic: a label file read as images.
    let e = expect_error(read_idx_images(&labels), &["labels", "magic", "0x00000803"]);
    assert!(matches!(e, DataError::BadMagic { .. }));
    // Truncated body.
    let bytes = std::fs::read(&images).unwrap();
    let cut = dir.join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(
        expect_error(read_idx_images(&cut), &["cut", "expected 28 bytes", "27"]),
        DataError::Truncated { .. }
    ));
    // Truncated header.
    std::fs::write(&cut, &std::fs::read(&labels).unwrap()[..6]).unwrap();
    assert!(matches!(expect_error(read_idx_labels(&cut), &["header"]), DataError::Truncated { .. }));
    // Unreadable path.
    expect_error(read_idx_images(&dir.join("absent")), &["absent"]);
}

#[test]
fn inconsistent_data_sets_give_clear_errors() {
    // Counts of images and labels that differ.
    let dir = scratch_dir("bad-counts");
    write_mnist(&dir, true, 5, 2);
    write_idx_labels(&dir.join("train-labels-idx1-ubyte.gz"), &[1, 2, 3, 4], true).unwrap();
    expect_error(data::load_dir(&dir), &["train-labels", "5 images but 4 labels"]);

    // A label outside 0..9.
    let dir = scratch_dir("bad-label");
    write_mnist(&dir, false, 5, 2);
    write_idx_labels(&dir.join("t10k-labels-idx1-ubyte"), &[1, 10], false).unwrap();
    expect_error(data::load_dir(&dir), &["t10k-labels", "sample 1", "label 10", "0..10"]);

    // A directory with nothing recognisable, and one that does not exist.
    let dir = scratch_dir("empty");
    expect_error(data::load_dir(&dir), &["no data set recognised", "train-images-idx3-ubyte"]);
    expect_error(data::load_dir(&dir.join("missing")), &["missing", "not a directory"]);

    // A CIFAR batch cut mid-record.
    let dir = scratch_dir("bad-cifar");
    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 3073 + 100]).unwrap();
    expect_error(read_cifar10_batch(&dir.join("data_batch_1.bin")), &["data_batch_1.bin", "3073", "3173"]);
}

#[test]
fn bad_libsvm_files_give_clear_errors() {
    let dir = scratch_dir("bad-libsvm");
    let path = dir.join("bad.svm");
    let cases: [(&str, &[&str]); 7] = [
        ("1 7:0.5\n", &["bad.svm:1", "index 7", "1..=6"]),
        ("1 0:0.5\n", &["bad.svm:1", "index 0"]),
        ("0 1:1\n1 2:nan\n", &["sample 1", "NaN"]),
        ("0 1:inf\n", &["sample 0", "NaN or infinite"]),
        ("3 1:1\n", &["label 3", "0..3"]),
        ("x 1:1\n", &["bad.svm:1", "label \"x\""]),
        ("1 2:1 1:1\n", &["bad.svm:1", "does not increase"]),
    ];
    for (text, needles) in cases {
        std::fs::write(&path, text).unwrap();
        expect_error(read_libsvm(&path, &libsvm_options()), needles);
    }
}
