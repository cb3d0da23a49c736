use thiserror::Error;

use crate::comm::CommError;
use crate::data::DataError;
use crate::gpu::GpuError;
use crate::model::ModelError;
use crate::nn::{ConfigError, NetworkError};
use crate::output::OutputError;

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
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error("θ has {found} values, the network needs {expected}")]
    ParamCount { expected: usize, found: usize },
    #[error("device vector {label:?} holds {found} values, {expected} are needed")]
    VectorLength { label: String, expected: usize, found: usize },
    #[error(
        "training diverged at iteration {iteration}: f = {f}, ‖∇f‖ = {grad_norm} (θ is left as it \
         was after the last good iteration)"
    )]
    Diverged { iteration: usize, f: f64, grad_norm: f64 },
    #[error(
        "the network has {params} parameters ({bytes} bytes), more than one storage binding of \
         this adapter holds ({limit} bytes); the largest layer is {largest}: no chunk size \
         changes that; a smaller network, or an adapter with larger bindings, does"
    )]
    ParamsTooLarge { params: usize, bytes: u64, limit: u64, largest: String },
    #[error("{field} must be {expected}, got {found}")]
    Setting { field: &'static str, expected: String, found: String },
    #[error("the optimiser state to resume from: `{field}` must be {expected}, found {found}")]
    State { field: &'static str, expected: String, found: String },
    #[error("{what} holds no samples: an accuracy on it would mean nothing")]
    EmptyData { what: String },
}

impl Error {
    /// A setting's error as an error of a resumed optimiser state.
    pub(crate) fn in_state(self) -> Self {
        match self {
            Error::Setting { field, expected, found } => Error::State { field, expected, found },
            other => other,
        }
    }
}
