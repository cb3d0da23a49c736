use thiserror::Error;

use crate::data::DataError;
use crate::gpu::GpuError;
use crate::nn::{ConfigError, NetworkError};

/// Any error of the library.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("θ has {found} values, the network needs {expected}")]
    ParamCount { expected: usize, found: usize },
    #[error("{field} must be {expected}, got {found}")]
    Setting { field: &'static str, expected: &'static str, found: String },
}
