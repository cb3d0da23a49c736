//! CIFAR-10's binary version: records of 1 label byte and 3×32×32 pixel bytes (red, green,
//! blue planes, each row by row), in data_batch_1.bin … data_batch_5.bin and test_batch.bin.

use std::path::{Path, PathBuf};

use super::stream::Source;
use super::{DataError, DataSplit, Dataset};
use crate::nn::Shape;

pub const CIFAR10_SHAPE: Shape = Shape::new(3, 32, 32);
const CLASSES: usize = 10;
const RECORD: usize = 1 + 3 * 32 * 32;
const RECORDS: &str = "records of 3073 bytes";

pub(super) fn has_cifar10_files(dir: &Path) -> bool {
    dir.join("data_batch_1.bin").is_file()
}

/// Reads one batch file: (labels, pixels scaled to [0, 1]). The file has no header: its
/// records are counted first (from its size, or by decompressing it with nothing kept), and a
/// count beyond the machine's memory is refused before the records are read.
pub fn read_cifar10_batch(path: &Path) -> Result<(Vec<u32>, Vec<f32>), DataError> {
    let batch = CifarBatches { files: vec![(path.to_owned(), count_records(path)?)] };
    let (data, _) = batch.read_all()?;
    Ok((data.labels, data.images))
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

/// CIFAR-10 batch files taken one after another: a set whose samples can be read by position.
#[derive(Clone, Debug)]
pub(super) struct CifarBatches {
    /// Each file and its number of records.
    files: Vec<(PathBuf, usize)>,
}

impl CifarBatches {
    /// Finds the files `names` in `dir` and counts their records: from the size of an
    /// uncompressed file, by decompressing a gzipped one (nothing kept).
    pub(super) fn open(dir: &Path, names: &[String]) -> Result<Self, DataError> {
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(DataError::MissingFile { path: dir.to_owned(), name: name.clone() });
            }
            let count = count_records(&path)?;
            files.push((path, count));
        }
        Ok(Self { files })
    }

    pub(super) fn len(&self) -> usize {
        self.files.iter().map(|(_, count)| count).sum()
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(path, _)| path.clone()).collect()
    }

    /// Every sample, and the bytes read.
    pub(super) fn read_all(&self) -> Result<(Dataset, u64), DataError> {
        self.read(&(0..self.len()).collect::<Vec<_>>())
    }

    /// The samples at `rows` (increasing, below the count) of the files taken in order,
    /// pixels scaled to [0, 1], and the bytes read from the files; files with none of the
    /// rows are not opened.
    pub(super) fn read(&self, rows: &[usize]) -> Result<(Dataset, u64), DataError> {
        let (mut labels, mut pixels) = (Vec::with_capacity(rows.len()), Vec::new());
        let mut read = 0;
        let (mut first, mut rest) = (0, rows);
        for (path, count) in &self.files {
            let within = rest.partition_point(|&row| row < first + count);
            let (mine, later) = rest.split_at(within);
            if !mine.is_empty() {
                let local: Vec<usize> = mine.iter().map(|row| row - first).collect();
                let mut source = Source::open(path)?;
                source.records(RECORDS, *count as u64, RECORD, &local, |index, record| {
                    if record[0] as usize >= CLASSES {
                        return Err(DataError::LabelOutOfRange {
                            path: path.clone(),
                            index,
                            label: record[0] as i64,
                            classes: CLASSES,
                        });
                    }
                    labels.push(record[0] as u32);
                    pixels.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
                    Ok(())
                })?;
                read += source.file_bytes_read();
            }
            (first, rest) = (first + count, later);
        }
        let origin = &self.files[0].0;
        let data = Dataset::new(CIFAR10_SHAPE, CLASSES, pixels, labels, origin)?;
        // Its classes are objects, which a mirror image keeps.
        Ok((Dataset { mirror_invariant: true, ..data }, read))
    }
}

/// The records of a batch file: at least one, none cut short.
fn count_records(path: &Path) -> Result<usize, DataError> {
    let mut source = Source::open(path)?;
    let count = match source.raw_len() {
        Some(len) => {
            if len == 0 || len % RECORD as u64 != 0 {
                return Err(DataError::Truncated {
                    path: path.to_owned(),
                    field: RECORDS,
                    expected: (len / RECORD as u64 + 1) * RECORD as u64,
                    found: len,
                });
            }
            len / RECORD as u64
        }
        None => {
            let mut record = vec![0u8; RECORD];
            let mut count = 0u64;
            while source.record(RECORDS, &mut record)? {
                count += 1;
            }
            count
        }
    };
    if count == 0 {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            field: RECORDS,
            expected: RECORD as u64,
            found: 0,
        });
    }
    usize::try_from(count).map_err(|_| DataError::FieldTooLarge {
        path: path.to_owned(),
        field: RECORDS,
        value: count,
        max: usize::MAX as u64,
    })
}

/// The five training batches and the test batch in `dir`.
pub(super) fn cifar10_files(dir: &Path) -> Result<(CifarBatches, CifarBatches), DataError> {
    let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok((CifarBatches::open(dir, &train)?, CifarBatches::open(dir, &["test_batch.bin".to_owned()])?))
}

/// Loads the five training batches and the test batch from `dir`.
pub fn load_cifar10_dir(dir: &Path) -> Result<DataSplit, DataError> {
    let (train, test) = cifar10_files(dir)?;
    Ok(DataSplit { train: train.read_all()?.0, test: test.read_all()?.0, validation: None })
}
