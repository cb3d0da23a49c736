use std::path::PathBuf;

use thiserror::Error;

/// A data file that cannot be used, with the file, the field and what was expected.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path}: no data set recognised; expected MNIST IDX files (train-images-idx3-ubyte[.gz], \
         train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) \
         or CIFAR-10 binary batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin)"
    )]
    UnknownLayout { path: PathBuf },
    #[error("{path}: missing file {name}")]
    MissingFile { path: PathBuf, name: String },
    #[error("{path}: magic number is {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic { path: PathBuf, expected: u32, found: u32, what: &'static str },
    #[error("{path}: {field}: expected {expected}, found {found}")]
    BadField { path: PathBuf, field: &'static str, expected: String, found: String },
    #[error("{path}: {field}: expected {expected} bytes, the file has {found}")]
    Truncated { path: PathBuf, field: &'static str, expected: u64, found: u64 },
    #[error(
        "{path}: {field}: the header promises {bytes} bytes, more than this machine's memory \
         allows for a load of them ({available} bytes available)"
    )]
    TooLarge { path: PathBuf, field: &'static str, bytes: u64, available: u64 },
    #[error("{path}: {field}: the data goes on past the {expected} bytes the header promises")]
    TrailingBytes { path: PathBuf, field: &'static str, expected: u64 },
    #[error("{path}: {field}: {value} is more than {max}")]
    FieldTooLarge { path: PathBuf, field: &'static str, value: u64, max: u64 },
    #[error("{path}: {images} images but {labels} labels")]
    CountMismatch { path: PathBuf, images: usize, labels: usize },
    #[error("{path}: sample {index}: label {label} is outside 0..{classes}")]
    LabelOutOfRange { path: PathBuf, index: usize, label: i64, classes: usize },
    #[error("{path}: sample {index}: a feature value is NaN or infinite")]
    NotFinite { path: PathBuf, index: usize },
    #[error("{path}:{line}: {message}")]
    Libsvm { path: PathBuf, line: usize, message: String },
    #[error("validation: cannot hold out {count} of {train} training samples; expected 1 to {max}", max = train.saturating_sub(1))]
    ValidationSize { count: usize, train: usize },
    #[error("{path}: samples are {found}, expected {expected} like the training set")]
    ShapeMismatch { path: PathBuf, expected: String, found: String },
}
