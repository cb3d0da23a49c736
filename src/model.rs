//! Models and checkpoints as safetensors files: each layer's weights in PyTorch's layout
//! (`layers.{i}.weight` [out, in, kh, kw] for convolutions, [out, in] for dense layers,
//! `layers.{i}.bias` \[out\]; a scalar bias `layers.{i}.bias` \[1\], a scalar scale
//! `layers.{i}.scale` \[1\]; inside a residual block `layers.{i}.body.{j}.…` and
//! `layers.{i}.shortcut.{j}.…`), the input mean as `input_mean` \[c, h, w\] (and, when the inputs
//! were standardised, each channel's deviation as `input_std` \[c\]), and the architecture,
//! the loss and (for checkpoints) the optimiser state and what the run was trained on in the
//! metadata. Files are written through [`crate::output`]: atomically, and never over anything
//! but a regular file. Every value read must be finite: a model with a NaN scores at chance
//! without a word, so it is refused with the tensor and the index. The metadata holds a CRC-32
//! of every tensor's bytes (`checksums`), verified on load, so that a flipped weight is found
//! rather than trained on; a file written before checksums loads with a warning
//! ([`Loaded::warning`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use thiserror::Error;

use crate::data::Normalizer;
use crate::loss::Loss;
use crate::nn::{parse_network, LayerSpec, Network, NetworkFormat, PlannedLayer, Shape};
use crate::output::{self, OutputError};

const FORMAT: &str = "newton-wgpu model 1";

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: not a safetensors file: {reason}")]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{path}: metadata field `{field}`: {problem}")]
    Metadata { path: PathBuf, field: &'static str, problem: String },
    #[error("{path}: tensor `{name}`: expected {expected}, found {found}")]
    Tensor { path: PathBuf, name: String, expected: String, found: String },
    #[error("{path}: tensor `{name}`: value {index} is {value}, not a finite number")]
    NotFinite { path: PathBuf, name: String, index: usize, value: f32 },
    #[error(
        "{path}: tensor `{name}`: its bytes do not match the checksum the file was written with \
         (CRC-32 {found:08x}, recorded {expected:08x}): the file was changed or damaged since"
    )]
    Checksum { path: PathBuf, name: String, expected: u32, found: u32 },
    #[error("{path} holds another architecture:\n{found}\nbut this run expects:\n{expected}")]
    Architecture { path: PathBuf, expected: String, found: String },
}

/// A trained network: architecture, θ, the input normalisation and the loss it was trained for.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub network: Network,
    pub theta: Vec<f32>,
    pub normalizer: Option<Normalizer>,
    pub loss: Loss,
}

/// A model with the optimiser's state: `state` is the optimiser's JSON, `velocity` SGD's,
/// and the problem settings a resumed run must share.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: Model,
    pub state: String,
    pub velocity: Option<Vec<f32>>,
    pub trained_on: TrainedOn,
}

/// What a run trained on beyond the architecture and the loss (which the model holds), and
/// what its state depends on: a resumed run with other values would continue another problem
/// from this one's θ, or count its steps in other units. The fields after `limit` were added
/// later; a checkpoint without them loads with them unknown (None), and they are then not
/// checked.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainedOn {
    /// The regularisation constant C.
    pub c: f64,
    /// The number of training samples l (after any limit and hold-out).
    pub samples: usize,
    /// The limit on the training samples, if one was given.
    pub limit: Option<usize>,
    /// The optimiser whose state the checkpoint holds: "newton", "sgd" or "sgn".
    #[serde(default)]
    pub optimizer: Option<String>,
    /// The mini-batch size its steps and epochs are counted in, as used (SGD's or SGN's; none
    /// for Newton-CG).
    #[serde(default)]
    pub batch: Option<usize>,
    /// The best validation accuracy so far and the point that reached it, so that a resumed
    /// run's `--save` replaces the best model only with a better one.
    #[serde(default)]
    pub best_validation: Option<BestValidation>,
    /// The augmentation the run draws (`crop,flip`, …, `none`): a resumed run must draw the same.
    #[serde(default)]
    pub augment: Option<String>,
}

/// The best validation accuracy of a run so far.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BestValidation {
    pub accuracy: f64,
    /// Where the run reached it: "iteration 7", "epoch 3".
    pub after: String,
}

/// A file's contents, and a warning when its tensors could not be verified (a file written
/// before checksums).
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub value: T,
    pub warning: Option<String>,
}

/// (name, shape, values) of θ's tensors, in layer order: each layer's by its place in the
/// network ([`crate::nn::LayerPath::name`]).
fn theta_tensors(network: &Network) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
    let mut tensors = Vec::new();
    for (i, layer) in network.layers().iter().enumerate() {
        let name = network.path(i).name();
        match layer {
            PlannedLayer::Conv { spec, geometry: g } => {
                let shape = match spec {
                    LayerSpec::Dense { .. } => vec![g.output.channels, g.fan_in()],
                    _ => vec![g.output.channels, g.input.channels, g.kernel_h, g.kernel_w],
                };
                tensors.push((format!("{name}.weight"), shape, g.weight_offset..g.bias_offset));
                if g.bias {
                    tensors.push((
                        format!("{name}.bias"),
                        vec![g.output.channels],
                        g.bias_offset..g.bias_offset + g.output.channels,
                    ));
                }
            }
            PlannedLayer::Bias { offset, .. } => {
                tensors.push((format!("{name}.bias"), vec![1], *offset..offset + 1))
            }
            PlannedLayer::Scale { offset, .. } => {
                tensors.push((format!("{name}.scale"), vec![1], *offset..offset + 1))
            }
            _ => {}
        }
    }
    tensors
}

fn bytes_of(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_owned(), source }
}

/// What a checkpoint adds to a model: the optimiser's state and the problem's settings.
type CheckpointMetadata<'a> = Option<(&'a str, &'a TrainedOn)>;

fn serialize(
    path: &Path,
    model: &Model,
    extra: Vec<(String, Vec<usize>, Vec<f32>)>,
    checkpoint: CheckpointMetadata,
) -> Result<Vec<u8>, ModelError> {
    let network = &model.network;
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = theta_tensors(network)
        .into_iter()
        .map(|(name, shape, range)| (name, shape, bytes_of(&model.theta[range])))
        .collect();
    owned.extend(
        model.input_tensors().into_iter().map(|(name, shape, values)| (name, shape, bytes_of(&values))),
    );
    owned.extend(extra.into_iter().map(|(name, shape, values)| (name, shape, bytes_of(&values))));
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(name, shape, bytes)| {
            (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match"))
        })
        .collect();
    let checksums: std::collections::BTreeMap<&str, String> = owned
        .iter()
        .map(|(name, _, bytes)| (name.as_str(), format!("{:08x}", crc32fast::hash(bytes))))
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("format".to_owned(), FORMAT.to_owned());
    metadata.insert("checksums".to_owned(), serde_json::to_string(&checksums).expect("strings serialise"));
    metadata.insert("input".to_owned(), serde_json::to_string(&network.input()).expect("shapes serialise"));
    metadata.insert("layers".to_owned(), serde_json::to_string(network.specs()).expect("layers serialise"));
    metadata.insert("loss".to_owned(), model.loss.to_string());
    if let Some((state, trained_on)) = checkpoint {
        metadata.insert("optimizer".to_owned(), state.to_owned());
        metadata
            .insert("trained_on".to_owned(), serde_json::to_string(trained_on).expect("numbers serialise"));
    }
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| ModelError::NotSafetensors { path: path.to_owned(), reason: e.to_string() })
}

impl Model {
    /// The model's tensors as a file holds them, in layer order: each layer's `weight` and
    /// `bias` in PyTorch's layout, then `input_mean` \[c, h, w\] and `input_std` \[c\] if the
    /// model has them; (name, shape, values).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut tensors: Vec<_> = theta_tensors(&self.network)
            .into_iter()
            .map(|(name, shape, range)| (name, shape, self.theta[range].to_vec()))
            .collect();
        tensors.extend(self.input_tensors());
        tensors
    }

    /// The normaliser's tensors: `input_mean` \[c, h, w\] and, when standardised, `input_std` \[c\].
    fn input_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let Some(normalizer) = &self.normalizer else { return Vec::new() };
        let s = self.network.input();
        let mut tensors =
            vec![("input_mean".into(), vec![s.channels, s.height, s.width], normalizer.mean.clone())];
        if let Some(std) = &normalizer.std {
            tensors.push(("input_std".into(), vec![s.channels], std.clone()));
        }
        tensors
    }

    /// Saves the model to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        Ok(output::write(path, &self.to_bytes()?)?)
    }

    /// The bytes [`Model::save`] writes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        serialize(Path::new("model"), self, Vec::new(), None)
    }

    /// A model from the bytes of a model file (`origin` names it in errors), with the
    /// warning for one that carries no checksums.
    pub fn from_bytes(origin: &Path, bytes: &[u8]) -> Result<Loaded<Self>, ModelError> {
        let parsed = parse(origin, bytes)?;
        Ok(Loaded { value: parsed.model, warning: parsed.warning })
    }

    /// Loads a model, whatever its architecture.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(Self::read(path)?.value)
    }

    /// [`Model::load`], with the warning for a file that carries no checksums.
    pub fn read(path: &Path) -> Result<Loaded<Self>, ModelError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        Self::from_bytes(path, &bytes)
    }

    /// Loads a model that must have `expected`'s architecture.
    pub fn load_for(path: &Path, expected: &Network) -> Result<Self, ModelError> {
        let model = Self::load(path)?;
        check_architecture(path, &model.network, expected)?;
        Ok(model)
    }
}

fn check_architecture(path: &Path, found: &Network, expected: &Network) -> Result<(), ModelError> {
    if found.input() != expected.input() || found.specs() != expected.specs() {
        return Err(ModelError::Architecture {
            path: path.to_owned(),
            expected: expected.describe(),
            found: found.describe(),
        });
    }
    Ok(())
}

/// A standardised model's deviations, each a positive number (the inputs are divided by them).
fn read_std(path: &Path, std: Vec<f32>) -> Result<Vec<f32>, ModelError> {
    match std.iter().position(|&s| s <= 0.0) {
        Some(index) => Err(ModelError::Tensor {
            path: path.to_owned(),
            name: "input_std".into(),
            expected: "positive deviations".into(),
            found: format!("{} at channel {index}", std[index]),
        }),
        None => Ok(std),
    }
}

/// Refuses the first value of tensor `name` that is not finite.
fn check_finite(path: &Path, name: &str, values: &[f32]) -> Result<(), ModelError> {
    match values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => {
            Err(ModelError::NotFinite { path: path.to_owned(), name: name.to_owned(), index, value })
        }
        None => Ok(()),
    }
}

impl Checkpoint {
    /// Saves the checkpoint to `path`, atomically: an interrupted write leaves the previous one.
    /// A state that could not be resumed (a value in θ or the velocity that is not finite, an
    /// optimiser field that is, which JSON writes as null) is refused, and the previous
    /// checkpoint stays.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let tensors = [("θ", Some(&self.model.theta)), ("optimizer.velocity", self.velocity.as_ref())];
        for (name, values) in tensors {
            check_finite(path, name, values.map_or(&[][..], |v| &v[..]))?;
        }
        let state: serde_json::Value =
            serde_json::from_str(&self.state).map_err(|e| ModelError::Metadata {
                path: path.to_owned(),
                field: "optimizer",
                problem: format!("not JSON: {e}"),
            })?;
        if let Some((key, _)) = state.as_object().into_iter().flatten().find(|(_, v)| v.is_null()) {
            return Err(ModelError::Metadata {
                path: path.to_owned(),
                field: "optimizer",
                problem: format!("`{key}` is not a finite number: refusing to replace the last checkpoint"),
            });
        }
        let extra = match &self.velocity {
            Some(v) => vec![("optimizer.velocity".to_owned(), vec![v.len()], v.clone())],
            None => Vec::new(),
        };
        let metadata = Some((self.state.as_str(), &self.trained_on));
        Ok(output::write(path, &serialize(path, &self.model, extra, metadata)?)?)
    }

    /// Loads a checkpoint that must have `expected`'s architecture.
    pub fn load_for(path: &Path, expected: &Network) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        Ok(Self::from_bytes_for(path, &bytes, expected)?.value)
    }

    /// A checkpoint from the bytes of the file at `path` (read elsewhere, e.g. by another
    /// rank), which must have `expected`'s architecture, with the warning for a file that
    /// carries no checksums.
    pub fn from_bytes_for(path: &Path, bytes: &[u8], expected: &Network) -> Result<Loaded<Self>, ModelError> {
        let Parsed { model, metadata, velocity, warning } = parse(path, bytes)?;
        check_architecture(path, &model.network, expected)?;
        let field = |field: &'static str| {
            metadata.get(field).ok_or_else(|| ModelError::Metadata {
                path: path.to_owned(),
                field,
                problem: "missing: this is a model, not a checkpoint".into(),
            })
        };
        let state = field("optimizer")?.clone();
        let trained_on = serde_json::from_str(field("trained_on")?).map_err(|e| ModelError::Metadata {
            path: path.to_owned(),
            field: "trained_on",
            problem: e.to_string(),
        })?;
        Ok(Loaded { value: Self { model, state, velocity, trained_on }, warning })
    }
}

/// What a file holds: the model, the metadata, the velocity, and the warning of a file without
/// checksums.
struct Parsed {
    model: Model,
    metadata: HashMap<String, String>,
    velocity: Option<Vec<f32>>,
    warning: Option<String>,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, ModelError> {
    let not_safetensors = |e: safetensors::SafeTensorError| ModelError::NotSafetensors {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let tensors = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let field = |name: &'static str| {
        metadata.get(name).cloned().ok_or_else(|| ModelError::Metadata {
            path: path.to_owned(),
            field: name,
            problem: "missing".into(),
        })
    };
    let bad =
        |field: &'static str, problem: String| ModelError::Metadata { path: path.to_owned(), field, problem };
    if field("format")? != FORMAT {
        return Err(bad("format", format!("expected {FORMAT:?}")));
    }
    let input: Shape = serde_json::from_str(&field("input")?).map_err(|e| bad("input", e.to_string()))?;
    let layers_json = format!("{{\"layers\": {}}}", field("layers")?);
    let specs =
        parse_network(&layers_json, NetworkFormat::Json, path).map_err(|e| bad("layers", e.to_string()))?;
    let network = Network::new(input, &specs).map_err(|e| bad("layers", e.to_string()))?;
    let loss: Loss = field("loss")?.parse().map_err(|e: String| bad("loss", e))?;
    let checksums: Option<HashMap<String, String>> = match metadata.get("checksums") {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("checksums", e.to_string()))?),
        None => None,
    };
    if let Some(sums) = &checksums {
        // Every tensor is covered: one added since would otherwise go unverified.
        if let Some(name) = tensors.names().into_iter().find(|name| !sums.contains_key(*name)) {
            return Err(bad("checksums", format!("no checksum for tensor `{name}`")));
        }
    }

    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
        let tensor = tensors.tensor(name).map_err(|_| ModelError::Tensor {
            path: path.to_owned(),
            name: name.to_owned(),
            expected: format!("f32 {shape:?}"),
            found: "nothing".into(),
        })?;
        if tensor.dtype() != Dtype::F32 || tensor.shape() != shape {
            return Err(ModelError::Tensor {
                path: path.to_owned(),
                name: name.to_owned(),
                expected: format!("F32 {shape:?}"),
                found: format!("{:?} {:?}", tensor.dtype(), tensor.shape()),
            });
        }
        if let Some(sums) = &checksums {
            let recorded = sums.get(name).and_then(|hex| u32::from_str_radix(hex, 16).ok());
            let Some(expected) = recorded else {
                return Err(bad("checksums", format!("`{name}`: expected 8 hexadecimal digits")));
            };
            let found = crc32fast::hash(tensor.data());
            if found != expected {
                let name = name.to_owned();
                return Err(ModelError::Checksum { path: path.to_owned(), name, expected, found });
            }
        }
        let values: Vec<f32> =
            tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        check_finite(path, name, &values)?;
        Ok(values)
    };
    let mut theta = vec![0.0f32; network.param_count()];
    for (name, shape, range) in theta_tensors(&network) {
        theta[range].copy_from_slice(&read(&name, &shape)?);
    }
    let names = tensors.names();
    let normalizer = if names.contains(&"input_mean") {
        let mean = read("input_mean", &[input.channels, input.height, input.width])?;
        let std = if names.contains(&"input_std") {
            Some(read_std(path, read("input_std", &[input.channels])?)?)
        } else {
            None
        };
        Some(Normalizer { mean, std })
    } else if names.contains(&"input_std") {
        return Err(ModelError::Tensor {
            path: path.to_owned(),
            name: "input_std".into(),
            expected: "it only beside `input_mean`".into(),
            found: "no `input_mean`".into(),
        });
    } else {
        None
    };
    let velocity = if tensors.names().contains(&"optimizer.velocity") {
        Some(read("optimizer.velocity", &[network.param_count()])?)
    } else {
        None
    };
    let warning = checksums.is_none().then(|| {
        format!(
            "{}: the file carries no checksums (written before they were recorded): its values \
             are loaded unverified; saving it again adds them",
            path.display()
        )
    });
    Ok(Parsed { model: Model { network, theta, normalizer, loss }, metadata, velocity, warning })
}
