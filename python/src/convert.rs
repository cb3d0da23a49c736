//! numpy arrays to the library's data sets and back, and networks by name, file or layers.

use std::path::Path;

use newton_wgpu::data::{DataSplit, Dataset};
use newton_wgpu::nn::{self, Network, NetworkFormat, Shape};
use numpy::{
    PyArray1, PyArray4, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::{library_error, raise};

/// Where a network comes from: ("builtin", name, classes), ("file", path, 0) or
/// ("layers", JSON of {"layers": [...]}, 0).
pub type NetworkSource = (String, String, usize);

/// Images and labels given as a pair.
pub type Arrays<'py> = (PyReadonlyArrayDyn<'py, f32>, PyReadonlyArray1<'py, i64>);

/// (x_train, y_train, x_test, y_test).
pub type SplitArrays<'py> = (
    Bound<'py, PyArray4<f32>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray4<f32>>,
    Bound<'py, PyArray1<i64>>,
);

/// The network `source` names, for samples of `shape`.
pub fn network(py: Python<'_>, source: &NetworkSource, shape: Shape) -> PyResult<Network> {
    let (kind, value, classes) = source;
    let built = match kind.as_str() {
        "builtin" => match nn::builtin(value, shape, *classes) {
            Some(network) => network.map_err(|e| e.to_string()),
            None => {
                return Err(raise(
                    py,
                    "SettingsError",
                    format!("network: no built-in network {value:?} ({})", nn::BUILTIN.join(", ")),
                ))
            }
        },
        "file" => {
            let path = Path::new(value);
            let specs = nn::load_network_file(path).map_err(|e| library_error(py, e.into()))?;
            Network::new(shape, &specs).map_err(|e| format!("network file {}: {e}", path.display()))
        }
        "layers" => {
            let specs = nn::parse_network(value, NetworkFormat::Json, Path::new("layers"))
                .map_err(|e| library_error(py, e.into()))?;
            Network::new(shape, &specs).map_err(|e| format!("layers: {e}"))
        }
        _ => return Err(raise(py, "SettingsError", format!("network source {kind:?}"))),
    };
    built.map_err(|message| raise(py, "SettingsError", message))
}

/// The sample shape of images `x`: (N, C, H, W), or (N, H, W) with one channel.
pub fn sample_shape(py: Python<'_>, x: &PyReadonlyArrayDyn<'_, f32>, name: &str) -> PyResult<Shape> {
    match *x.shape() {
        [_, c, h, w] => Ok(Shape::new(c, h, w)),
        [_, h, w] => Ok(Shape::new(1, h, w)),
        ref other => Err(raise(
            py,
            "DataError",
            format!("{name}: expected an array of shape (N, C, H, W) or (N, H, W), found {other:?}"),
        )),
    }
}

/// A data set of images `x` (finite values) and labels `y` (from 0 to `classes` − 1; none
/// given: all 0, for prediction).
pub fn dataset(
    py: Python<'_>,
    x: &PyReadonlyArrayDyn<'_, f32>,
    y: Option<&PyReadonlyArray1<'_, i64>>,
    classes: usize,
    name: &str,
) -> PyResult<Dataset> {
    let shape = sample_shape(py, x, name)?;
    let count = x.shape()[0];
    if count == 0 {
        return Err(raise(py, "DataError", format!("{name}: no samples")));
    }
    // One copy into the data set, which owns its images; a C-contiguous array is read in place.
    let images: Vec<f32> = match x.as_slice() {
        Ok(values) => values.to_vec(),
        Err(_) => x.as_array().iter().copied().collect(),
    };
    if let Some(at) = images.iter().position(|v| !v.is_finite()) {
        let index = at / shape.len();
        return Err(raise(
            py,
            "DataError",
            format!("{name}: sample {index} holds {}, not a finite number", images[at]),
        ));
    }
    let labels = match y {
        None => vec![0; count],
        Some(y) => {
            let y = y.as_array();
            if y.len() != count {
                return Err(raise(
                    py,
                    "DataError",
                    format!("{name}: {count} samples but {} labels", y.len()),
                ));
            }
            let mut labels = Vec::with_capacity(count);
            for (index, &label) in y.iter().enumerate() {
                if label < 0 || label as u64 >= classes as u64 {
                    let message = format!(
                        "{name}: label {index} is {label}, expected from 0 to {} (the network's outputs)",
                        classes - 1
                    );
                    return Err(raise(py, "DataError", message));
                }
                labels.push(label as u32);
            }
            labels
        }
    };
    Dataset::new(shape, classes, images, labels, Path::new(name)).map_err(|e| library_error(py, e.into()))
}

/// A pair of arrays as a data set.
pub fn split_arrays(py: Python<'_>, (x, y): &Arrays<'_>, classes: usize, name: &str) -> PyResult<Dataset> {
    dataset(py, x, Some(y), classes, name)
}

/// A data folder's sets as arrays.
pub fn split_to_arrays(py: Python<'_>, split: DataSplit) -> SplitArrays<'_> {
    let images = |set: &Dataset| {
        let s = set.shape;
        let flat = PyArray1::from_slice(py, &set.images);
        flat.reshape([set.len(), s.channels, s.height, s.width]).expect("the sizes agree")
    };
    let labels = |set: &Dataset| PyArray1::from_iter(py, set.labels.iter().map(|&l| i64::from(l)));
    (images(&split.train), labels(&split.train), images(&split.test), labels(&split.test))
}
