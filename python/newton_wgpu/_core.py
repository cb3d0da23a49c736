"""Devices, networks, training from numpy arrays, and models."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._errors import DataError, SettingsError

Device = _native.Device

_default_device: Optional[_native.Device] = None


def default_device() -> _native.Device:
    """The device used when none is given: opened once, the fastest adapter (WGPU_BACKEND and
    WGPU_ADAPTER_NAME choose otherwise)."""
    global _default_device
    if _default_device is None:
        _default_device = _native.Device()
    return _default_device


class Network:
    """A network to train: a built-in one, a network file (TOML or JSON), or layers given as the
    dicts a JSON network file holds. Its input shape comes from the data it is trained on."""

    def __init__(self, source: Tuple[str, str, int], input_shape: Optional[Tuple[int, int, int]] = None):
        self._source = source
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)

    @classmethod
    def builtin(cls, name: str, input_shape: Optional[Sequence[int]] = None, classes: int = 10) -> "Network":
        """cnn4, cnn7 or cnn4-small (the paper's networks), vgg11 (samples of at least 32×32),
        or resnet8 / resnet20 (Fixup ResNets), for `classes` classes."""
        return cls(("builtin", str(name), int(classes)), input_shape)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "Network":
        return cls(("file", os.fspath(path), 0))

    @classmethod
    def from_layers(cls, layers: Sequence[Dict[str, Any]], input_shape: Optional[Sequence[int]] = None) -> "Network":
        """`layers`: e.g. [{"type": "conv", "kernel": 5, "channels": 8}, {"type": "relu"}, ...]."""
        return cls(("layers", json.dumps({"layers": list(layers)}), 0), input_shape)

    def describe(self, input_shape: Optional[Sequence[int]] = None) -> str:
        """The layers with their shapes and parameter counts, for samples of `input_shape`."""
        shape = input_shape or self.input_shape
        if shape is None:
            raise SettingsError("describe: give the input shape (channels, height, width)")
        text, _, _ = _native.resolve_network(self._source, tuple(int(v) for v in shape))
        return text

    def __repr__(self) -> str:
        kind, value, _ = self._source
        return f"Network.{'from_layers' if kind == 'layers' else kind}({value if kind != 'layers' else '...'})"


def _images(x: Any, name: str) -> np.ndarray:
    """`x` as C-contiguous float32 (no copy when it is one already), (N, C, H, W) or (N, H, W)."""
    array = np.asarray(x)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise TypeError(f"{name}: expected an array of real numbers, found dtype {array.dtype}")
    if array.ndim not in (3, 4):
        raise DataError(f"{name}: expected an array of shape (N, C, H, W) or (N, H, W), found {array.shape}")
    if array.shape[0] == 0:
        raise DataError(f"{name}: no samples")
    return np.ascontiguousarray(array, dtype=np.float32)


def _labels(y: Any, count: int, name: str) -> np.ndarray:
    """`y` as int64 labels, one per sample."""
    array = np.asarray(y)
    if array.ndim != 1:
        raise DataError(f"{name}: expected a 1-d array of labels, found shape {array.shape}")
    if len(array) != count:
        raise DataError(f"{name}: {count} samples but {len(array)} labels")
    if np.issubdtype(array.dtype, np.integer):
        return np.ascontiguousarray(array, dtype=np.int64)
    if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return np.ascontiguousarray(array, dtype=np.int64)
    raise TypeError(f"{name}: expected integer class labels, found dtype {array.dtype}")


def _pair(data: Any, name: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a pair (X, y)") from None
    x = _images(x, f"{name}[0]")
    return x, _labels(y, len(x), f"{name}[1]")


@dataclass
class TrainResult:
    """What `train` returns: the trained model, every record (dicts, as `--log-json` writes
    them) and why the run ended ("iterations", "epochs", "grad_tol", "time_budget",
    "callback")."""

    model: "Model"
    history: List[Dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""


def options_defaults(optimizer: str = "newton") -> Dict[str, Any]:
    """The settings `options` may set for `optimizer`, with their defaults (the library's)."""
    return json.loads(_native.options_defaults(optimizer))


def train(
    network: Union[Network, str],
    X: Any,
    y: Any,
    *,
    optimizer: str = "newton",
    loss: str = "ce",
    c: float = 0.01,
    options: Optional[Dict[str, Any]] = None,
    seed: int = 0,
    test: Optional[Tuple[Any, Any]] = None,
    validation: Union[None, float, Tuple[Any, Any]] = None,
    device: Optional[_native.Device] = None,
    callbacks: Iterable[Callable[[Dict[str, Any]], Any]] = (),
    progress: bool = False,
    standardize: bool = False,
) -> TrainResult:
    """Trains `network` on images X and integer labels y by Newton-CG ("newton"), SGN ("sgn")
    or SGD ("sgd"), as `newton-wgpu train` does with the same settings: the training set's mean
    is subtracted from every set and kept in the model (with `standardize`, each channel's
    standard deviation is divided out too, as `--standardize` does); `validation` is a fraction of X held out
    (chosen by the seed) or its own pair (X, y); `test` a pair scored after every record.

    Each record is given to every callback; one that returns True ends the run after it. The
    GPU works with the GIL released; Ctrl-C ends the run after the current iteration and raises
    KeyboardInterrupt, as does an exception raised by a callback (after its record)."""
    if isinstance(network, str):
        network = Network.from_file(network) if os.path.splitext(network)[1] in (".toml", ".json") else Network.builtin(network)
    if not isinstance(network, Network):
        raise TypeError(f"network: expected a Network or a name, found {type(network).__name__}")
    x = _images(X, "X")
    labels = _labels(y, len(x), "y")
    if network.input_shape is not None:
        shape = (1, *x.shape[1:]) if x.ndim == 3 else x.shape[1:]
        if tuple(shape) != network.input_shape:
            raise DataError(f"X: samples of shape {tuple(shape)}, but the network takes {network.input_shape}")
    test_pair = None if test is None else _pair(test, "test")
    validation_pair, fraction = None, None
    if isinstance(validation, (float, int)) and not isinstance(validation, bool):
        fraction = float(validation)
    elif validation is not None:
        validation_pair = _pair(validation, "validation")
    callbacks = list(callbacks)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        defaults = options_defaults(optimizer)
        total = (options or {}).get("iters", defaults.get("iters")) or (options or {}).get("epochs", defaults.get("epochs"))
        bar = tqdm(total=total, unit="iter" if optimizer == "newton" else "epoch")

    def observe(record_json: str) -> bool:
        record = json.loads(record_json)
        stop = False
        for callback in callbacks:
            if callback(record):
                stop = True
        if bar is not None:
            done = record.get("iter", record.get("epoch", 0))
            bar.update(done - bar.n)
            if record.get("test_acc") is not None:
                bar.set_postfix(test_acc=f"{100 * record['test_acc']:.2f}%")
        return stop

    try:
        native_model, history, reason = _native.train(
            device or default_device(),
            network._source,
            x,
            labels,
            optimizer,
            loss,
            float(c),
            json.dumps(options or {}),
            int(seed),
            test=test_pair,
            validation=validation_pair,
            validation_fraction=fraction,
            standardize=bool(standardize),
            callback=observe,
        )
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(Model(native_model), [json.loads(r) for r in history], reason)


class Model:
    """A trained network: architecture, θ, the input mean and the loss; saved and loaded as
    safetensors (the layout `newton-wgpu train --save` writes, PyTorch's names and shapes)."""

    def __init__(self, native: _native.Model):
        self._native = native

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Model":
        native, warning = _native.Model.load(os.fspath(path))
        if warning:
            warnings.warn(warning, stacklevel=2)
        return cls(native)

    def save(self, path: Union[str, os.PathLike]) -> None:
        self._native.save(os.fspath(path))

    def __reduce__(self):
        # Pickled as the bytes of its file.
        return (_model_from_bytes, (bytes(self._native.to_bytes()),))

    def predict_logits(self, X: Any, device: Optional[_native.Device] = None, batch_size: int = 1024) -> np.ndarray:
        """The network's outputs, (N, classes), for images X as they were given to `train`
        (the model subtracts its input mean, and divides by its input deviations if it has them)."""
        if not self._native.has_input_mean:
            warnings.warn("the model holds no input mean: X is scored as it is", stacklevel=2)
        return self._native.predict_logits(device or default_device(), _images(X, "X"), int(batch_size))

    def predict(self, X: Any, device: Optional[_native.Device] = None) -> np.ndarray:
        """The class of each sample, (N,) int64."""
        return np.argmax(self.predict_logits(X, device), axis=1).astype(np.int64)

    def score(self, X: Any, y: Any, device: Optional[_native.Device] = None) -> float:
        """Accuracy on (X, y)."""
        x = _images(X, "X")
        labels = _labels(y, len(x), "y")
        return float(np.mean(self.predict(x, device) == labels))

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every tensor by name, shaped as PyTorch's layers hold them (`layers.{i}.weight`,
        `layers.{i}.bias`, `layers.{i}.scale`; `layers.{i}.body.{j}.weight` inside a residual
        block), `input_mean` and, for standardised inputs, `input_std`."""
        return {name: values.reshape(shape) for name, shape, values in self._native.tensors()}

    @property
    def theta(self) -> np.ndarray:
        return self._native.theta

    @property
    def loss(self) -> str:
        return self._native.loss

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return self._native.input_shape

    @property
    def classes(self) -> int:
        return self._native.classes

    @property
    def layers(self) -> List[Dict[str, Any]]:
        """The layers as a JSON network file lists them."""
        return json.loads(self._native.layers_json())

    def __repr__(self) -> str:
        return f"Model({self.classes} classes, {len(self.theta)} parameters, loss {self.loss})"


def _model_from_bytes(data: bytes) -> Model:
    return Model(_native.Model.from_bytes(data))


def load_dir(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A data folder (MNIST's IDX files, CIFAR-10's batches, LIBSVM files): (X_train, y_train,
    X_test, y_test), images (N, C, H, W) float32 as the program reads them, labels int64."""
    return _native.load_dir(os.fspath(path))


def load_cifar10(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10's binary batches, as `load_dir` returns them."""
    return _native.load_cifar10(os.fspath(path))
