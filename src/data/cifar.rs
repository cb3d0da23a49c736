//! CIFAR-10's binary version: records of 1 label byte and 3×32×32 pixel bytes (red, green,
//! blue planes, each row by row), in data_batch_1.bin … data_batch_5.bin and test_batch.bin.

use std::path::Path;

use super::stream::{memory_available, Source, BYTES_PER_PIXEL};
use super::{DataError, DataSplit, Dataset};
use crate::nn::Shape;

pub const CIFAR10_SHAPE: Shape = Shape::new(3, 32, 32);
const CLASSES: usize = 10;
const RECORD: usize = 1 + 3 * 32 * 32;

pub(super) fn has_cifar10_files(dir: &Path) -> bool {
    dir.join("data_batch_1.bin").is_file()
}

/// Reads one batch file: (labels, pixels scaled to [0, 1]). The file has no header: its
/// records are read one at a time, and the load stops with an error once they would take
/// more memory than the machine has.
pub fn read_cifar10_batch(path: &Path) -> Result<(Vec<u32>, Vec<f32>), DataError> {
    let mut source = Source::open(path)?;
    let most = memory_available() / (RECORD as u64 * BYTES_PER_PIXEL);
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    let mut record = vec![0u8; RECORD];
    while source.record("records of 3073 bytes", &mut record)? {
        let index = labels.len();
        if index as u64 >= most {
            let bytes = (index as u64 + 1) * RECORD as u64;
            return Err(DataError::TooLarge {
                path: path.to_owned(),
                field: "records",
                bytes,
                available: memory_available(),
            });
        }
        if record[0] as usize >= CLASSES {
            return Err(DataError::LabelOutOfRange {
                path: path.to_owned(),
                index,
                label: record[0] as i64,
                classes: CLASSES,
            });
        }
        labels.push(record[0] as u32);
        pixels.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
    }
    if labels.is_empty() {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            field: "records of 3073 bytes",
            expected: RECORD as u64,
            found: 0,
        });
    }
    Ok((labels, pixels))
}

/// Writes one batch file from labels and [n, 3, 32, 32] pixel bytes.
pub fn write_cifar10_batch(path: &Path, labels: &[u8], pixels: &[u8]) -> Result<(), DataError> {
    let mut bytes = Vec::with_capacity(labels.len() * RECORD);
    for (label, image) in labels.iter().zip(pixels.chunks_exact(RECORD - 1)) {
        bytes.push(*label);
        bytes.extend_from_slice(image);
    }
    Ok(crate::output::write(path, &bytes)?)
}

fn load_batches(dir: &Path, names: &[String]) -> Result<Dataset, DataError> {
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for name in names {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::MissingFile { path: dir.to_owned(), name: name.clone() });
        }
        let (l, p) = read_cifar10_batch(&path)?;
        labels.extend(l);
        pixels.extend(p);
    }
    let data = Dataset::new(CIFAR10_SHAPE, CLASSES, pixels, labels, &dir.join(&names[0]))?;
    // Its classes are objects, which a mirror image keeps.
    Ok(Dataset { mirror_invariant: true, ..data })
}

/// Loads the five training batches and the test batch from `dir`.
pub fn load_cifar10_dir(dir: &Path) -> Result<DataSplit, DataError> {
    let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok(DataSplit {
        train: load_batches(dir, &train)?,
        test: load_batches(dir, &["test_batch.bin".to_owned()])?,
        validation: None,
    })
}
