//! The native half of the `newton_wgpu` Python package: the device, training from arrays,
//! models, and the data readers, over the newton-wgpu library. The Python half
//! (python/newton_wgpu) checks and converts arguments, turns records into dicts, runs the
//! callbacks and the progress bar, and holds the exception classes this module raises.
//!
//! Training runs on the calling thread with the GIL released ([`Python::detach`]); the
//! observer takes the GIL back once per record to call Python and to check for Ctrl-C. Nothing
//! crosses a thread, so the optimisers' communicator and progress closures need not be `Send`
//! (the alternative, a worker thread owning the run, would copy each record across a channel
//! for the same effect).

mod convert;
mod errors;
mod options;

use std::path::PathBuf;

use newton_wgpu::data::{DataSplit, Dataset};
use newton_wgpu::gpu::{Gpu, GpuOptions};
use newton_wgpu::objective::Objective;
use newton_wgpu::optim::newton::Newton;
use newton_wgpu::optim::sgd::Sgd;
use newton_wgpu::optim::sgn::Sgn;
use newton_wgpu::optim::{drive, Observer, Record, Sets, Stepper, StopReason};
use newton_wgpu::{Execution, Problem};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn};
use pyo3::prelude::*;

use convert::{dataset, network, split_arrays, Arrays, NetworkSource};
use errors::{library_error, raise};
use options::{Method, Options};

/// A GPU (or the software one), opened once and shared by every call given it.
#[pyclass(module = "newton_wgpu._native", frozen)]
struct Device {
    gpu: Gpu,
}

#[pymethods]
impl Device {
    /// `backend`: "vulkan", "metal", "dx12" or "gl" (default: every one, the fastest adapter
    /// first); `adapter`: an adapter's name (a part of it) or its index among the backend's.
    #[new]
    #[pyo3(signature = (backend = None, adapter = None))]
    fn new(py: Python<'_>, backend: Option<&str>, adapter: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut options = GpuOptions::from_env().map_err(|e| library_error(py, e.into()))?;
        if let Some(name) = backend {
            options.backends = match name.to_ascii_lowercase().as_str() {
                "vulkan" => wgpu::Backends::VULKAN,
                "metal" => wgpu::Backends::METAL,
                "dx12" => wgpu::Backends::DX12,
                "gl" => wgpu::Backends::GL,
                _ => {
                    return Err(raise(
                        py,
                        "SettingsError",
                        format!("backend: expected vulkan, metal, dx12 or gl, found {name:?}"),
                    ))
                }
            };
        }
        if let Some(adapter) = adapter {
            if let Ok(index) = adapter.extract::<usize>() {
                options.adapter_index = Some(index);
            } else {
                options.adapter_name = Some(adapter.extract::<String>()?);
            }
        }
        let gpu = py.detach(|| Gpu::with_options(&options)).map_err(|e| library_error(py, e.into()))?;
        Ok(Self { gpu })
    }

    /// The adapter: its name, backend, device type and driver, and whether it is a software one.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let a = self.gpu.adapter();
        let info = pyo3::types::PyDict::new(py);
        info.set_item("name", &a.name)?;
        info.set_item("backend", format!("{:?}", a.backend))?;
        info.set_item("device_type", format!("{:?}", a.device_type))?;
        info.set_item("driver", format!("{} {}", a.driver, a.driver_info).trim())?;
        info.set_item("software", self.gpu.is_software())?;
        Ok(info)
    }

    fn __repr__(&self) -> String {
        format!("Device({:?})", self.gpu.adapter().name)
    }
}

/// A trained network: architecture, θ, input normalisation and loss.
#[pyclass(module = "newton_wgpu._native", frozen)]
struct Model {
    inner: newton_wgpu::model::Model,
}

#[pymethods]
impl Model {
    /// Loads a model saved by `save` or by `newton-wgpu train --save`; a file without
    /// checksums loads with the warning as the second value.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<(Self, Option<String>)> {
        let loaded = newton_wgpu::model::Model::read(&path).map_err(|e| errors::model_error(py, e))?;
        Ok((Self { inner: loaded.value }, loaded.warning))
    }

    /// The model file's bytes (for pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let bytes = self.inner.to_bytes().map_err(|e| errors::model_error(py, e))?;
        Ok(pyo3::types::PyBytes::new(py, &bytes))
    }

    /// A model from a model file's bytes.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, bytes: &[u8]) -> PyResult<Self> {
        let loaded = newton_wgpu::model::Model::from_bytes(std::path::Path::new("bytes"), bytes)
            .map_err(|e| errors::model_error(py, e))?;
        Ok(Self { inner: loaded.value })
    }

    /// Saves the model as safetensors (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).map_err(|e| errors::model_error(py, e))
    }

    /// The network's outputs for the samples `x` ((N, C, H, W) or (N, H, W) float32, not yet
    /// normalised: the model's input mean is subtracted here), as an (N, K) array.
    #[pyo3(signature = (device, x, bsize = 1024))]
    fn predict_logits<'py>(
        &self,
        py: Python<'py>,
        device: &Device,
        x: PyReadonlyArrayDyn<'py, f32>,
        bsize: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let model = &self.inner;
        let classes = model.network.outputs();
        let mut data = dataset(py, &x, None, classes, "X")?;
        if data.shape != model.network.input() {
            let message =
                format!("X: samples of {}, but the model takes {}", data.shape, model.network.input());
            return Err(raise(py, "DataError", message));
        }
        if let Some(normalizer) = &model.normalizer {
            normalizer.apply(&mut data);
        }
        let problem =
            Problem::new(model.network.clone(), model.loss, 1.0).map_err(|e| library_error(py, e))?;
        let gpu = &device.gpu;
        let logits = py
            .detach(|| -> Result<Vec<f32>, newton_wgpu::Error> {
                problem.check_fits(gpu)?;
                let execution = Execution::from_env(gpu)?.with_bsize(bsize.max(1));
                let theta = gpu.upload(&model.theta, "θ")?;
                Objective::new(&execution, &problem)?.outputs(&data, &theta)
            })
            .map_err(|e| library_error(py, e))?;
        let rows = data.len();
        PyArray1::from_vec(py, logits).reshape([rows, classes])
    }

    /// (name, shape, values) of every tensor, as the file holds them.
    fn tensors<'py>(&self, py: Python<'py>) -> Vec<(String, Vec<usize>, Bound<'py, PyArray1<f32>>)> {
        let tensors = self.inner.tensors().into_iter();
        tensors.map(|(name, shape, values)| (name, shape, PyArray1::from_vec(py, values))).collect()
    }

    /// θ, one flat vector in the layers' order.
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.theta)
    }

    #[getter]
    fn loss(&self) -> String {
        self.inner.loss.to_string()
    }

    /// (channels, height, width) of a sample.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let s = self.inner.network.input();
        (s.channels, s.height, s.width)
    }

    #[getter]
    fn classes(&self) -> usize {
        self.inner.network.outputs()
    }

    #[getter]
    fn has_input_mean(&self) -> bool {
        self.inner.normalizer.is_some()
    }

    /// The network, a layer to a line.
    fn describe(&self) -> String {
        self.inner.network.describe()
    }

    /// The layers as a network file writes them (JSON).
    fn layers_json(&self) -> String {
        serde_json::to_string(self.inner.network.specs()).expect("layers serialise")
    }
}

/// Receives the records: keeps them as JSON, and hands each to Python with the GIL taken
/// back, where a callback may ask to stop or raise, and Ctrl-C interrupts.
struct PythonObserver<'a> {
    callback: Option<&'a Py<PyAny>>,
    history: Vec<String>,
    stop: Option<Stopped>,
    error: Option<PyErr>,
}

/// Why the observer stopped the run.
#[derive(Clone, Copy)]
enum Stopped {
    Callback,
    Interrupted,
    Failed,
}

impl Observer for PythonObserver<'_> {
    fn observe(&mut self, record: &Record) {
        let json = serde_json::to_string(record).expect("records serialise");
        self.history.push(json.clone());
        Python::attach(|py| {
            if let Err(interrupt) = py.check_signals() {
                self.error = Some(interrupt);
                self.stop = Some(Stopped::Interrupted);
                return;
            }
            let Some(callback) = self.callback else { return };
            match callback.call1(py, (json,)).and_then(|asked| asked.is_truthy(py)) {
                Ok(true) => self.stop = Some(Stopped::Callback),
                Ok(false) => {}
                Err(error) => {
                    self.error = Some(error);
                    self.stop = Some(Stopped::Failed);
                }
            }
        });
    }

    fn should_stop(&self) -> bool {
        self.stop.is_some()
    }
}

/// What `train` returns: the model, the records (JSON, as `--log-json` writes them) and why
/// the run ended.
type Trained = (Model, Vec<String>, String);

/// Trains `network` on (x, y) by `optimizer` ("newton", "sgn" or "sgd") with `options` (a
/// JSON object of the optimiser's settings; see [`options_defaults`]). The training set's mean
/// is subtracted from every set (and, if `standardize`, each channel's deviation divided out;
/// the model keeps them); `validation` is a held-out fraction of
/// the training set (chosen by the seed, as `--validation` does) or its own arrays.
#[pyfunction]
#[pyo3(signature = (device, network_source, x, y, optimizer, loss, c, options, seed, test = None, validation = None, validation_fraction = None, standardize = false, callback = None))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    device: &Device,
    network_source: NetworkSource,
    x: PyReadonlyArrayDyn<'py, f32>,
    y: PyReadonlyArray1<'py, i64>,
    optimizer: &str,
    loss: &str,
    c: f64,
    options: &str,
    seed: u64,
    test: Option<Arrays<'py>>,
    validation: Option<Arrays<'py>>,
    validation_fraction: Option<f64>,
    standardize: bool,
    callback: Option<Py<PyAny>>,
) -> PyResult<Trained> {
    let loss = loss.parse().map_err(|e: String| raise(py, "SettingsError", format!("loss: {e}")))?;
    let options = Options::parse(py, optimizer, options, seed)?;
    let shape = convert::sample_shape(py, &x, "X")?;
    let network = network(py, &network_source, shape)?;
    let classes = network.outputs();
    let mut split = DataSplit {
        train: dataset(py, &x, Some(&y), classes, "X")?,
        test: match &test {
            Some(arrays) => split_arrays(py, arrays, classes, "test")?,
            None => Dataset::new(shape, classes, Vec::new(), Vec::new(), std::path::Path::new("test"))
                .map_err(|e| library_error(py, e.into()))?,
        },
        validation: match &validation {
            Some(arrays) => Some(split_arrays(py, arrays, classes, "validation")?),
            None => None,
        },
    };
    if let Some(fraction) = validation_fraction {
        newton_wgpu::rules::open_unit("validation", fraction).map_err(|e| library_error(py, e))?;
        let count = (fraction * split.train.len() as f64).round() as usize;
        split.hold_out(count, seed).map_err(|e| library_error(py, e.into()))?;
    }
    for (set, name) in
        [(Some(&split.train), "X"), (Some(&split.test), "test"), (split.validation.as_ref(), "validation")]
    {
        if let Some(set) = set {
            if set.shape != shape {
                return Err(raise(
                    py,
                    "DataError",
                    format!("{name}: samples of {}, but X's are {shape}", set.shape),
                ));
            }
        }
    }
    let normalizer = if standardize { split.standardize() } else { split.normalize() };
    let problem = Problem::new(network, loss, c).map_err(|e| library_error(py, e))?;
    let gpu = &device.gpu;
    let callback = callback.as_ref();
    let outcome = py.detach(|| run(gpu, &problem, &split, &options, callback));
    let (theta, history, stop) = outcome.map_err(|e| library_error(py, e))?;
    let (reason, observer_error) = stop;
    if let Some(error) = observer_error {
        return Err(error);
    }
    let model = newton_wgpu::model::Model {
        network: problem.network.clone(),
        theta,
        normalizer: Some(normalizer),
        loss,
    };
    Ok((Model { inner: model }, history, reason))
}

/// Why a run ended, and the error of a callback or an interrupt to raise.
type Ending = (String, Option<PyErr>);

/// The run itself, with the GIL released.
fn run(
    gpu: &Gpu,
    problem: &Problem,
    split: &DataSplit,
    options: &Options,
    callback: Option<&Py<PyAny>>,
) -> Result<(Vec<f32>, Vec<String>, Ending), newton_wgpu::Error> {
    problem.check_fits(gpu)?;
    let execution = Execution::from_env(gpu)?.with_bsize(options.bsize);
    let theta = gpu.upload(&problem.network.init_params(options.seed), "θ")?;
    let mut observer = PythonObserver { callback, history: Vec::new(), stop: None, error: None };
    let test = (!split.test.is_empty()).then_some(&split.test);
    let (train, validation) = (&split.train, split.validation.as_ref());
    let mut stepper: Box<dyn Stepper> = match &options.method {
        Method::Newton(o) => Box::new(Newton::new(&execution, problem, train, o)?),
        Method::Sgd(o) => Box::new(Sgd::new(&execution, problem, train, o)?),
        Method::Sgn(o) => Box::new(Sgn::new(&execution, problem, train, o)?),
    };
    let finished = drive(stepper.as_mut(), Sets { train, test, validation }, &theta, &mut observer)?;
    let reason = match (observer.stop, finished) {
        (Some(Stopped::Callback), _) => "callback",
        (Some(Stopped::Interrupted), _) => "interrupted",
        (Some(Stopped::Failed), _) => "failed",
        (None, StopReason::IterMax) if matches!(options.method, Method::Newton(_)) => "iterations",
        (None, StopReason::IterMax) => "epochs",
        (None, StopReason::GradTol) => "grad_tol",
        (None, StopReason::TimeBudget) => "time_budget",
        (None, StopReason::Stopped) => "stopped",
    };
    let theta = gpu.read(&theta)?;
    Ok((theta, observer.history, (reason.to_owned(), observer.error)))
}

/// The default settings of `optimizer`, as a JSON object (the Rust `Default`s).
#[pyfunction]
fn options_defaults(py: Python<'_>, optimizer: &str) -> PyResult<String> {
    Options::defaults(py, optimizer)
}

/// A data folder's sets as arrays: (x_train, y_train, x_test, y_test), images (N, C, H, W)
/// float32 as the library reads them (before any normalisation), labels int64.
#[pyfunction]
fn load_dir<'py>(py: Python<'py>, path: PathBuf) -> PyResult<convert::SplitArrays<'py>> {
    let split = py.detach(|| newton_wgpu::data::load_dir(&path)).map_err(|e| errors::data_error(py, e))?;
    Ok(convert::split_to_arrays(py, split))
}

/// CIFAR-10's binary batches in `path`, as [`load_dir`] returns them.
#[pyfunction]
fn load_cifar10<'py>(py: Python<'py>, path: PathBuf) -> PyResult<convert::SplitArrays<'py>> {
    let split =
        py.detach(|| newton_wgpu::data::load_cifar10_dir(&path)).map_err(|e| errors::data_error(py, e))?;
    Ok(convert::split_to_arrays(py, split))
}

/// The layers of a built-in network or a network file, resolved for samples of `input_shape`
/// and `classes`: (description, parameter count, classes).
#[pyfunction]
fn resolve_network(
    py: Python<'_>,
    network_source: NetworkSource,
    input_shape: (usize, usize, usize),
) -> PyResult<(String, usize, usize)> {
    let shape = newton_wgpu::nn::Shape::new(input_shape.0, input_shape.1, input_shape.2);
    let network = network(py, &network_source, shape)?;
    Ok((network.describe(), network.param_count(), network.outputs()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Device>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(options_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(load_dir, m)?)?;
    m.add_function(wrap_pyfunction!(load_cifar10, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_network, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
