"""newton-wgpu: train convolutional networks by Newton-CG, SGN or SGD on any GPU (through
wgpu: Vulkan, Metal, DX12, GL, or a software one), from numpy arrays.

    import newton_wgpu as nw
    X, y, X_test, y_test = nw.load_dir("data/mnist-sample")
    result = nw.train(nw.Network.builtin("cnn4-small"), X, y, options={"iters": 10, "lambda": 0.1},
                      test=(X_test, y_test))
    print(result.history[-1]["test_acc"], result.model.score(X_test, y_test))
"""

from ._core import (
    Device,
    Model,
    Network,
    TrainResult,
    default_device,
    load_cifar10,
    load_dir,
    options_defaults,
    train,
)
from ._errors import DataError, DivergedError, GpuError, ModelError, NewtonWgpuError, SettingsError
from ._native import __version__

__all__ = [
    "DataError",
    "Device",
    "DivergedError",
    "GpuError",
    "Model",
    "ModelError",
    "Network",
    "NewtonWgpuError",
    "SettingsError",
    "TrainResult",
    "__version__",
    "default_device",
    "load_cifar10",
    "load_dir",
    "options_defaults",
    "train",
]
