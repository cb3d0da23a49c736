//! The library's errors as the package's exceptions, which newton_wgpu/_errors.py defines (a
//! base `NewtonWgpuError`; `SettingsError`, `DataError`, `ModelError` are also `ValueError`s,
//! `GpuError` a `RuntimeError`, `DivergedError` an `ArithmeticError` with the iteration, f and
//! the gradient's norm; a file that cannot be read or written is an `OSError`).

use newton_wgpu::data::DataError;
use newton_wgpu::model::ModelError;
use newton_wgpu::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

/// An instance of the package's exception `class` with `message`.
pub fn raise(py: Python<'_>, class: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let made = py
        .import("newton_wgpu._errors")
        .and_then(|module| module.getattr(class))
        .and_then(|class| class.call1((message.clone(),)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        // The package is broken if its exceptions cannot be made: say what was meant.
        Err(_) => PyRuntimeError::new_err(message),
    }
}

pub fn library_error(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Diverged { iteration, f, grad_norm } => {
            let made = py.import("newton_wgpu._errors").and_then(|module| {
                module.getattr("DivergedError")?.call1((error.to_string(), iteration, f, grad_norm))
            });
            made.map_or_else(|e| e, PyErr::from_value)
        }
        Error::Data(error) => data_error(py, error),
        Error::Model(error) => model_error(py, error),
        Error::Gpu(_) | Error::Comm(_) => raise(py, "GpuError", error.to_string()),
        Error::Setting { .. } | Error::State { .. } => raise(py, "SettingsError", error.to_string()),
        Error::Network(_) | Error::Config(_) => raise(py, "SettingsError", error.to_string()),
        Error::EmptyData { .. } | Error::VectorLength { .. } => raise(py, "DataError", error.to_string()),
        other => raise(py, "NewtonWgpuError", other.to_string()),
    }
}

pub fn data_error(py: Python<'_>, error: DataError) -> PyErr {
    match error {
        DataError::Io { .. } | DataError::NotADirectory { .. } | DataError::MissingFile { .. } => {
            PyOSError::new_err(error.to_string())
        }
        other => raise(py, "DataError", other.to_string()),
    }
}

pub fn model_error(py: Python<'_>, error: ModelError) -> PyErr {
    match error {
        ModelError::Io { .. } | ModelError::Output(_) => PyOSError::new_err(error.to_string()),
        other => raise(py, "ModelError", other.to_string()),
    }
}
