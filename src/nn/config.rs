//! A user's own network, from a small TOML or JSON file: the layers in order.
//!
//! ```toml
//! [[layers]]
//! type = "conv"       # kernel, channels; stride (default 1), padding (default 0)
//! kernel = 5
//! channels = 32
//! padding = 2
//! [[layers]]
//! type = "relu"
//! [[layers]]
//! type = "maxpool"    # size; stride (default: size)
//! size = 2
//! [[layers]]
//! type = "dense"      # units
//! units = 10
//! ```
//! JSON holds the same: `{"layers": [{"type": "conv", "kernel": 5, ...}, ...]}`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::LayerSpec;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read network file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("network file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("network file {path}: expected a .toml or .json file")]
    UnknownFormat { path: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFormat {
    Toml,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    layers: Vec<LayerSpec>,
}

/// Parses the text of a network file; `origin` names it in errors.
pub fn parse_network(
    text: &str,
    format: NetworkFormat,
    origin: &Path,
) -> Result<Vec<LayerSpec>, ConfigError> {
    let parsed: Result<NetworkFile, String> = match format {
        NetworkFormat::Toml => toml::from_str(text).map_err(|e| e.to_string()),
        NetworkFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
    };
    parsed
        .map(|file| file.layers)
        .map_err(|message| ConfigError::Parse { path: origin.to_owned(), message: message.trim().to_owned() })
}

/// Reads a network file, choosing the format by its extension.
pub fn load_network_file(path: &Path) -> Result<Vec<LayerSpec>, ConfigError> {
    let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("toml") => NetworkFormat::Toml,
        Some("json") => NetworkFormat::Json,
        _ => return Err(ConfigError::UnknownFormat { path: path.to_owned() }),
    };
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
    parse_network(&text, format, path)
}
