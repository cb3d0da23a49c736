//! A data directory read in parts: each rank of a data-parallel job opens the files, learns
//! the sets' sizes from their headers (or, for CIFAR-10, the files' sizes), and reads only the
//! samples it holds: its shard of the training set (after `--limit` and the validation hold-out,
//! both decided by position in the whole set), of the validation set and of the test set.

use std::path::{Path, PathBuf};

use super::cifar::{self, CifarBatches};
use super::idx::{self, IdxPair};
use super::{held_out, DataError, DataSplit, Dataset};
use crate::comm::shard;
use crate::nn::Shape;

/// One set's files.
#[derive(Clone, Debug)]
enum SetFiles {
    Idx(IdxPair),
    Cifar(CifarBatches),
}

impl SetFiles {
    fn len(&self) -> usize {
        match self {
            Self::Idx(pair) => pair.len(),
            Self::Cifar(batches) => batches.len(),
        }
    }

    fn read(&self, rows: &[usize]) -> Result<(Dataset, u64), DataError> {
        match self {
            Self::Idx(pair) => pair.read(rows),
            Self::Cifar(batches) => batches.read(rows),
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Self::Idx(pair) => pair.paths(),
            Self::Cifar(batches) => batches.paths(),
        }
    }
}

/// A data directory's training and test files, opened and checked but not read.
#[derive(Clone, Debug)]
pub struct DataFiles {
    train: SetFiles,
    test: SetFiles,
    shape: Shape,
}

/// Which samples a rank loads: rank `rank` of `ranks` takes its [`shard`] of each set.
#[derive(Clone, Copy, Debug)]
pub struct PartPlan {
    /// Keep only the first this many training samples.
    pub limit: Option<usize>,
    /// Hold this many of the (kept) training samples out as the validation set, chosen by
    /// `seed` as [`DataSplit::hold_out`] chooses them.
    pub validation: Option<usize>,
    pub seed: u64,
    pub rank: usize,
    pub ranks: usize,
}

impl PartPlan {
    /// Every sample, for one process.
    pub fn whole() -> Self {
        Self { limit: None, validation: None, seed: 0, rank: 0, ranks: 1 }
    }
}

/// What one rank loaded: its shards of the sets, the sets' whole sizes, and the bytes it read.
#[derive(Clone, Debug)]
pub struct Part {
    pub split: DataSplit,
    pub train_total: usize,
    pub validation_total: usize,
    pub test_total: usize,
    /// Bytes read from the files (compressed bytes of gzipped ones).
    pub bytes_read: u64,
}

impl DataFiles {
    /// Recognises the data set in `dir` by its file names (as [`super::load_dir`] does) and
    /// reads the headers that give its sizes.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        if !dir.is_dir() {
            return Err(DataError::NotADirectory { path: dir.to_owned() });
        }
        if idx::has_mnist_files(dir) {
            let (train, test) = idx::mnist_files(dir)?;
            let shape = train.shape();
            Ok(Self { train: SetFiles::Idx(train), test: SetFiles::Idx(test), shape })
        } else if cifar::has_cifar10_files(dir) {
            let (train, test) = cifar::cifar10_files(dir)?;
            Ok(Self {
                train: SetFiles::Cifar(train),
                test: SetFiles::Cifar(test),
                shape: cifar::CIFAR10_SHAPE,
            })
        } else {
            Err(DataError::UnknownLayout { path: dir.to_owned() })
        }
    }

    /// Training samples in the files.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// Test samples in the files.
    pub fn test_len(&self) -> usize {
        self.test.len()
    }

    /// The shape of a sample.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Each file's name and size in bytes, training files first: what ranks compare to know
    /// they opened the same data without reading it all.
    pub fn file_sizes(&self) -> Vec<(String, u64)> {
        let files = self.train.paths().into_iter().chain(self.test.paths());
        files
            .map(|path| {
                let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
                (name, std::fs::metadata(&path).map_or(0, |m| m.len()))
            })
            .collect()
    }

    /// Rank `rank` of `ranks`'s shard of the test set alone, with the bytes read for it.
    pub fn read_test_part(&self, rank: usize, ranks: usize) -> Result<(Dataset, u64), DataError> {
        let rows: Vec<usize> = shard(self.test.len(), rank, ranks).collect();
        self.test.read(&rows)
    }

    /// Reads what `plan` gives its rank: of the training set's first `limit` samples, less
    /// those held out for validation, the rank's shard by position; its shard of the held-out
    /// samples; its shard of the test set. Nothing else of the files is read where they are
    /// uncompressed (gzipped files are decompressed up to the last sample a rank holds).
    pub fn read_part(&self, plan: &PartPlan) -> Result<Part, DataError> {
        let len = plan.limit.map_or(self.train.len(), |limit| limit.min(self.train.len()));
        let (held, kept) = match plan.validation {
            Some(count) => held_out(len, count, plan.seed)?,
            None => (Vec::new(), (0..len).collect()),
        };
        let mine = |positions: &[usize]| positions[shard(positions.len(), plan.rank, plan.ranks)].to_vec();
        let (train, mut bytes_read) = self.train.read(&mine(&kept))?;
        let validation = match plan.validation {
            Some(_) => {
                let (validation, read) = self.train.read(&mine(&held))?;
                bytes_read += read;
                Some(validation)
            }
            None => None,
        };
        let test_rows: Vec<usize> = shard(self.test.len(), plan.rank, plan.ranks).collect();
        let (test, read) = self.test.read(&test_rows)?;
        bytes_read += read;
        Ok(Part {
            split: DataSplit { train, test, validation },
            train_total: kept.len(),
            validation_total: held.len(),
            test_total: self.test.len(),
            bytes_read,
        })
    }
}
