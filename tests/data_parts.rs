//! Each rank of a data-parallel job reads only what it holds: its shard of the training set
//! (after `--limit` and the validation hold-out), of the validation set and of the test set.
//! The parts are the whole load's, the bytes read from uncompressed files are exactly the
//! headers and the rank's samples, and the input statistics summed over the ranks are the
//! whole set's.

use std::path::{Path, PathBuf};

use newton_wgpu::comm::{shard, Communicator, ThreadGroup};
use newton_wgpu::data::{
    self, write_cifar10_batch, write_idx_images, write_idx_labels, DataFiles, DataSplit, Normalizer, PartPlan,
};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pixels that make every sample distinct.
fn pixels(count: usize, len: usize) -> Vec<u8> {
    (0..count * len).map(|i| ((i * 37 + i / len * 11) % 256) as u8).collect()
}

const SIDE: usize = 12;

fn write_mnist(dir: &Path, gzip: bool, train: usize, test: usize) {
    let suffix = if gzip { ".gz" } else { "" };
    let file = |name: &str| dir.join(format!("{name}{suffix}"));
    let labels = |n: usize, shift: usize| (0..n).map(|i| ((i * 7 + shift) % 10) as u8).collect::<Vec<_>>();
    write_idx_images(&file("train-images-idx3-ubyte"), SIDE, SIDE, &pixels(train, SIDE * SIDE), gzip)
        .unwrap();
    write_idx_labels(&file("train-labels-idx1-ubyte"), &labels(train, 0), gzip).unwrap();
    write_idx_images(&file("t10k-images-idx3-ubyte"), SIDE, SIDE, &pixels(test, SIDE * SIDE), gzip).unwrap();
    write_idx_labels(&file("t10k-labels-idx1-ubyte"), &labels(test, 3), gzip).unwrap();
}

/// Five training batches of `per_batch` records and a test batch of 7.
fn write_cifar(dir: &Path, per_batch: usize) {
    for i in 1..=5 {
        let labels: Vec<u8> = (0..per_batch).map(|j| ((i * 3 + j) % 10) as u8).collect();
        let images: Vec<u8> = pixels(per_batch, 3072).iter().map(|p| p.wrapping_add(i as u8)).collect();
        write_cifar10_batch(&dir.join(format!("data_batch_{i}.bin")), &labels, &images).unwrap();
    }
    write_cifar10_batch(&dir.join("test_batch.bin"), &[1, 2, 3, 4, 5, 6, 7], &pixels(7, 3072)).unwrap();
}

fn positions(range: std::ops::Range<usize>) -> Vec<usize> {
    range.collect()
}

/// The whole load, with `limit` and a hold-out of `validation` samples as one process makes it.
fn whole(dir: &Path, limit: Option<usize>, validation: Option<usize>) -> DataSplit {
    let mut split = data::load_dir(dir).unwrap();
    if let Some(limit) = limit {
        split.train = split.train.head(limit);
    }
    if let Some(count) = validation {
        split.hold_out(count, 5).unwrap();
    }
    split
}

/// Every rank's part is its shard of the whole load's sets, for 1 to 4 ranks.
fn parts_are_shards_of_the_whole(dir: &Path, limit: Option<usize>, validation: Option<usize>) {
    let files = DataFiles::open(dir).unwrap();
    let want = whole(dir, limit, validation);
    for ranks in 1..=4 {
        for rank in 0..ranks {
            let plan = PartPlan { limit, validation, seed: 5, rank, ranks };
            let part = files.read_part(&plan).unwrap();
            let at = format!("{} rank {rank} of {ranks}", dir.display());
            assert_eq!(part.train_total, want.train.len(), "{at}");
            assert_eq!(part.test_total, want.test.len(), "{at}");
            let mine = |set: &data::Dataset| set.select(&positions(shard(set.len(), rank, ranks)));
            assert_eq!(part.split.train, mine(&want.train), "{at}: training shard");
            assert_eq!(part.split.test, mine(&want.test), "{at}: test shard");
            match (&part.split.validation, &want.validation) {
                (Some(got), Some(whole)) => {
                    assert_eq!(part.validation_total, whole.len());
                    assert_eq!(got, &mine(whole), "{at}: validation shard");
                }
                (None, None) => assert_eq!(part.validation_total, 0),
                _ => panic!("{at}: a validation set on one side only"),
            }
        }
    }
}

#[test]
fn each_rank_reads_its_shard_of_idx_files_raw_and_gzipped() {
    for gzip in [false, true] {
        let dir = scratch_dir(&format!("parts-idx-{gzip}"));
        write_mnist(&dir, gzip, 50, 11);
        parts_are_shards_of_the_whole(&dir, None, None);
        parts_are_shards_of_the_whole(&dir, Some(37), None);
        parts_are_shards_of_the_whole(&dir, Some(40), Some(9));
    }
}

#[test]
fn each_rank_reads_its_shard_of_cifar10_batches() {
    let dir = scratch_dir("parts-cifar");
    write_cifar(&dir, 6);
    parts_are_shards_of_the_whole(&dir, None, None);
    parts_are_shards_of_the_whole(&dir, Some(20), Some(4));
}

/// From uncompressed files a rank reads the headers and its own samples, not a byte more:
/// counted at the file, 3 ranks read a third each, and together the files once.
#[test]
fn a_rank_reads_no_byte_beyond_its_shard() {
    let dir = scratch_dir("parts-bytes-idx");
    let (train, test) = (300, 61);
    write_mnist(&dir, false, train, test);
    let files = DataFiles::open(&dir).unwrap();
    let file_bytes: u64 = files.file_sizes().iter().map(|(_, bytes)| bytes).sum();
    // Per sample: its pixels and its label; per file pair: 16 + 8 bytes of headers.
    let sample = (SIDE * SIDE + 1) as u64;
    let mut together = 0;
    for rank in 0..3 {
        let part = files.read_part(&PartPlan { rank, ranks: 3, ..PartPlan::whole() }).unwrap();
        let samples = (shard(train, rank, 3).len() + shard(test, rank, 3).len()) as u64;
        assert_eq!(part.bytes_read, 2 * (16 + 8) + samples * sample, "rank {rank}");
        assert!(part.bytes_read < file_bytes / 2, "rank {rank} read {} of {file_bytes}", part.bytes_read);
        together += part.bytes_read - 2 * (16 + 8);
    }
    assert_eq!(together + 2 * (16 + 8), file_bytes, "the ranks read the samples once between them");

    // CIFAR-10: no headers; a batch file none of whose records a rank holds is not opened.
    // A file opened is told from gzip by its first 2 bytes, which count as read where the
    // rank's records start later in it (each rank of 3 here: one training and the test file).
    let dir = scratch_dir("parts-bytes-cifar");
    write_cifar(&dir, 6);
    let files = DataFiles::open(&dir).unwrap();
    for rank in 0..3 {
        let part = files.read_part(&PartPlan { rank, ranks: 3, ..PartPlan::whole() }).unwrap();
        let samples = (shard(30, rank, 3).len() + shard(7, rank, 3).len()) as u64;
        let peeks = if rank == 0 { 0 } else { 2 * 2 };
        assert_eq!(part.bytes_read, samples * 3073 + peeks, "rank {rank}");
    }
}

/// A gzipped file is decompressed only up to the last sample a rank holds: rank 0 of 3 reads
/// well under the compressed file.
#[test]
fn a_gzipped_file_is_read_up_to_the_shard() {
    let dir = scratch_dir("parts-bytes-gz");
    // Noise, which gzip cannot shrink much.
    let mut state = 12345u32;
    let noise: Vec<u8> = (0..3000 * SIDE * SIDE)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    write_mnist(&dir, true, 3000, 10);
    write_idx_images(&dir.join("train-images-idx3-ubyte.gz"), SIDE, SIDE, &noise, true).unwrap();
    let files = DataFiles::open(&dir).unwrap();
    let file_bytes: u64 = files.file_sizes().iter().map(|(_, bytes)| bytes).sum();
    let first = files.read_part(&PartPlan { rank: 0, ranks: 3, ..PartPlan::whole() }).unwrap();
    let last = files.read_part(&PartPlan { rank: 2, ranks: 3, ..PartPlan::whole() }).unwrap();
    assert!(first.bytes_read < file_bytes / 2, "rank 0 read {} of {file_bytes}", first.bytes_read);
    assert!(last.bytes_read > first.bytes_read, "{} vs {}", last.bytes_read, first.bytes_read);
}

/// The training mean and deviations summed over the ranks' shards are the whole set's
/// (to f64 rounding, then f32), the same on every rank.
#[test]
fn input_statistics_summed_over_shards_are_the_whole_sets() {
    let dir = scratch_dir("parts-normalize");
    write_cifar(&dir, 5);
    let files = DataFiles::open(&dir).unwrap();
    let whole = whole(&dir, None, None);
    for standard in [false, true] {
        let want =
            if standard { Normalizer::fit_standard(&whole.train) } else { Normalizer::fit(&whole.train) };
        for ranks in [2, 3] {
            let group = ThreadGroup::new(ranks, std::time::Duration::from_secs(60));
            let got: Vec<Normalizer> = std::thread::scope(|scope| {
                let handles: Vec<_> = group
                    .into_iter()
                    .map(|comm| {
                        let files = &files;
                        scope.spawn(move || {
                            let plan =
                                PartPlan { rank: comm.rank(), ranks: comm.size(), ..PartPlan::whole() };
                            let mut part = files.read_part(&plan).unwrap();
                            part.split.normalize_across(&comm, part.train_total, standard).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (rank, normalizer) in got.iter().enumerate() {
                assert_eq!(normalizer, &got[0], "rank {rank} of {ranks}");
            }
            let close =
                |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()));
            assert!(close(&got[0].mean, &want.mean), "{ranks} ranks: mean");
            match (&got[0].std, &want.std) {
                (Some(a), Some(b)) => assert!(close(a, b), "{ranks} ranks: {a:?} vs {b:?}"),
                (None, None) => {}
                _ => panic!("standardised on one side only"),
            }
        }
    }
}

/// A cut file is refused by every rank alike where it is uncompressed (its size says so before
/// any sample is read), naming the file and the field.
#[test]
fn a_cut_file_is_refused_by_every_rank() {
    let dir = scratch_dir("parts-cut");
    write_mnist(&dir, false, 30, 5);
    let path = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let files = DataFiles::open(&dir).unwrap();
    for rank in 0..3 {
        let error = files.read_part(&PartPlan { rank, ranks: 3, ..PartPlan::whole() }).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("train-images-idx3-ubyte") && text.contains("pixels"), "rank {rank}: {text}");
    }
}

/// A LIBSVM file has no header: each rank counts its samples (blank lines are none), then
/// parses its shard alone; the parts are the whole read's shards, and an error in a line a
/// rank parses names the sample's position in the file.
#[test]
fn each_rank_reads_its_shard_of_a_libsvm_file() {
    use newton_wgpu::data::{read_libsvm, read_libsvm_part, LibsvmOptions};
    use newton_wgpu::nn::Shape;
    let dir = scratch_dir("parts-libsvm");
    let path = dir.join("data.libsvm");
    let mut text = String::new();
    for i in 0..23 {
        text.push_str(&format!("{} 1:{} 3:{} 6:{}\n", i % 3, i, 2 * i, 255 - i));
        if i % 7 == 0 {
            text.push_str("   \n");
        }
    }
    std::fs::write(&path, &text).unwrap();
    let options = LibsvmOptions { shape: Shape::new(1, 2, 3), classes: 3, max_value: 255.0 };
    let whole = read_libsvm(&path, &options).unwrap();
    assert_eq!(whole.len(), 23);
    for ranks in 1..=4 {
        for rank in 0..ranks {
            let (part, total) = read_libsvm_part(&path, &options, rank, ranks).unwrap();
            assert_eq!(total, 23);
            assert_eq!(part, whole.select(&positions(shard(23, rank, ranks))), "rank {rank} of {ranks}");
        }
    }
    // Sample 20 (rank 2 of 3 holds 16..23) has a label out of range.
    std::fs::write(&path, text.replace("2 1:20 ", "7 1:20 ")).unwrap();
    read_libsvm_part(&path, &options, 0, 3).unwrap();
    let error = read_libsvm_part(&path, &options, 2, 3).unwrap_err().to_string();
    assert!(error.contains("sample 20") && error.contains("label 7"), "{error}");
}
