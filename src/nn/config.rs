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
//! type = "dense"      # units; gain (default 1: He's initialisation; 0: zeros)
//! units = 10
//! ```
//! A convolution takes `bias = false` and a `gain` too. A residual block holds two lists:
//! `{type = "residual", body = [...], shortcut = [...]}` adds the body's output to the
//! shortcut's (an empty or missing shortcut is the identity); `bias` and `scale` are learnt
//! scalars, `subsample` (stride, channels) the parameter-free shortcut that halves the plane.
//! JSON holds the same: `{"layers": [{"type": "conv", "kernel": 5, ...}, ...]}`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::{Branch, LayerPath, LayerSpec, MAX_DEPTH};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read network file {path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
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
    layers: Vec<RawLayer>,
}

/// One layer as written: every field optional, so that each error can name the layer, the
/// field and what was expected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    #[serde(rename = "type")]
    kind: String,
    kernel: Option<usize>,
    channels: Option<usize>,
    stride: Option<usize>,
    padding: Option<usize>,
    size: Option<usize>,
    units: Option<usize>,
    bias: Option<bool>,
    gain: Option<f64>,
    body: Option<Vec<RawLayer>>,
    shortcut: Option<Vec<RawLayer>>,
    scale: Option<Vec<f32>>,
    shift: Option<Vec<f32>>,
}

const TYPES: &str = "conv, maxpool, avgpool, global_avgpool, relu, tanh, sigmoid, flatten, dense, residual, \
                     bias, scale, subsample, affine";

impl RawLayer {
    fn into_spec(self, path: &LayerPath) -> Result<LayerSpec, String> {
        let given = [
            ("kernel", self.kernel.is_some()),
            ("channels", self.channels.is_some()),
            ("stride", self.stride.is_some()),
            ("padding", self.padding.is_some()),
            ("size", self.size.is_some()),
            ("units", self.units.is_some()),
            ("bias", self.bias.is_some()),
            ("gain", self.gain.is_some()),
            ("body", self.body.is_some()),
            ("shortcut", self.shortcut.is_some()),
            ("scale", self.scale.is_some()),
            ("shift", self.shift.is_some()),
        ];
        let (allowed, required): (&[&str], &[&str]) = match self.kind.as_str() {
            "conv" => (&["kernel", "channels", "stride", "padding", "bias", "gain"], &["kernel", "channels"]),
            "maxpool" => (&["size", "stride"], &["size"]),
            "avgpool" => (&["size", "stride", "padding"], &["size"]),
            "dense" => (&["units", "gain"], &["units"]),
            "residual" => (&["body", "shortcut"], &["body"]),
            "subsample" => (&["stride", "channels"], &["stride", "channels"]),
            "affine" => (&["scale", "shift"], &["scale", "shift"]),
            "relu" | "tanh" | "sigmoid" | "flatten" | "global_avgpool" | "bias" | "scale" => (&[], &[]),
            "batchnorm" | "batch_norm" | "bn" => {
                return Err(format!(
                    "{path}: batch normalisation in training mode is not offered: it makes each \
                     sample's output depend on the others in its batch, so the loss is no longer a \
                     sum over independent samples and the Gauss-Newton product is not defined \
                     (BackPACK refuses it for the same reason); train a network without it \
                     (residual networks with Fixup's initialisation, `scale` and `bias` layers, \
                     train to about the same accuracy: see the built-in resnet8 and resnet20); a \
                     trained network's batch normalisation in evaluation mode is an `affine` layer"
                ))
            }
            other => return Err(format!("{path}: unknown type {other:?}, expected one of {TYPES}")),
        };
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                return Err(format!("{path} ({}): field `{name}` does not apply", self.kind));
            }
            if !present && required.contains(&name) {
                return Err(format!("{path} ({}): missing field `{name}`", self.kind));
            }
        }
        let need = |v: Option<usize>| v.expect("required fields are checked above");
        let gain = self.gain.unwrap_or(1.0);
        let branch = |layers: Option<Vec<RawLayer>>, branch| -> Result<Vec<LayerSpec>, String> {
            let layers = layers.unwrap_or_default();
            layers.into_iter().enumerate().map(|(i, raw)| raw.into_spec(&path.child(branch, i))).collect()
        };
        Ok(match self.kind.as_str() {
            "conv" => LayerSpec::Conv {
                kernel: need(self.kernel),
                channels: need(self.channels),
                stride: self.stride.unwrap_or(1),
                padding: self.padding.unwrap_or(0),
                bias: self.bias.unwrap_or(true),
                gain,
            },
            "maxpool" => LayerSpec::MaxPool { size: need(self.size), stride: self.stride },
            "avgpool" => LayerSpec::AvgPool {
                size: need(self.size),
                stride: self.stride,
                padding: self.padding.unwrap_or(0),
            },
            "global_avgpool" => LayerSpec::GlobalAvgPool,
            "dense" => LayerSpec::Dense { units: need(self.units), gain },
            "residual" => {
                if path.depth() >= MAX_DEPTH {
                    return Err(format!("{path} (residual): blocks nest more than {MAX_DEPTH} deep"));
                }
                LayerSpec::Residual {
                    body: branch(self.body, Branch::Body)?,
                    shortcut: branch(self.shortcut, Branch::Shortcut)?,
                }
            }
            "subsample" => LayerSpec::Subsample { stride: need(self.stride), channels: need(self.channels) },
            "affine" => LayerSpec::Affine {
                scale: self.scale.expect("required fields are checked above"),
                shift: self.shift.expect("required fields are checked above"),
            },
            "relu" => LayerSpec::Relu,
            "tanh" => LayerSpec::Tanh,
            "sigmoid" => LayerSpec::Sigmoid,
            "bias" => LayerSpec::Bias,
            "scale" => LayerSpec::Scale,
            _ => LayerSpec::Flatten,
        })
    }
}

/// A parser's message with each line cut to 200 characters: the TOML parser quotes the line
/// it stopped on, which may be the whole file.
fn clipped(message: &str) -> String {
    const MOST: usize = 200;
    let lines = message.lines().map(|line| match line.char_indices().nth(MOST) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// Parses the text of a network file; `origin` names it in errors.
pub fn parse_network(
    text: &str,
    format: NetworkFormat,
    origin: &Path,
) -> Result<Vec<LayerSpec>, ConfigError> {
    let fail = |message: String| ConfigError::Parse { path: origin.to_owned(), message };
    // serde_path_to_error names the field that failed, e.g. `layers[2].units`.
    let file: NetworkFile = match format {
        NetworkFormat::Toml => {
            let deserializer =
                toml::Deserializer::parse(text).map_err(|e| fail(clipped(e.to_string().trim())))?;
            serde_path_to_error::deserialize(deserializer)
                .map_err(|e| fail(format!("{}: {}", e.path(), e.inner().message())))?
        }
        NetworkFormat::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?
        }
    };
    file.layers
        .into_iter()
        .enumerate()
        .map(|(i, raw)| raw.into_spec(&LayerPath::top(i)).map_err(fail))
        .collect()
}

/// Reads a network file, choosing the format by its extension.
pub fn load_network_file(path: &Path) -> Result<Vec<LayerSpec>, ConfigError> {
    let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("toml") => NetworkFormat::Toml,
        Some("json") => NetworkFormat::Json,
        _ => return Err(ConfigError::UnknownFormat { path: path.to_owned() }),
    };
    let text =
        std::fs::read_to_string(path).map_err(|reason| ConfigError::Io { path: path.to_owned(), reason })?;
    parse_network(&text, format, path)
}
