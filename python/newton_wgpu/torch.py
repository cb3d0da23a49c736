"""A trained model as the equivalent `torch.nn.Module` (where torch is installed).

    from newton_wgpu.torch import to_module
    module = to_module(model)          # model.state_dict() loaded with strict=True
    logits = module(torch.from_numpy(X))
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from ._core import Model

Shape = Tuple[int, int, int]


class Bias(nn.Module):
    """A learnt scalar added to every value (`bias` [1])."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Scale(nn.Module):
    """A learnt scalar that multiplies every value (`scale` [1])."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Subsample(nn.Module):
    """Every `stride`-th row and column, then zero channels appended up to `channels`."""

    def __init__(self, stride: int, channels: int):
        super().__init__()
        self.stride, self.channels = stride, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.channels - x.shape[1]
        return torch.cat([x, x.new_zeros(x.shape[0], extra, x.shape[2], x.shape[3])], 1) if extra else x


class Affine(nn.Module):
    """scale[c] · x + shift[c] per channel, frozen: buffers of the network, not of its state."""

    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class Chain(nn.ModuleList):
    """Layers applied in order (a dense layer flattens its input first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, nn.Linear):
                x = x.flatten(1)
            x = layer(x)
        return x


class Residual(nn.Module):
    """body(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, body: Chain, shortcut: Chain):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _window(size: int, stride: int, padding: int, length: int) -> int:
    return (length + 2 * padding - size) // stride + 1


def _chain(layers: List[Dict[str, Any]], shape: Shape) -> Tuple[Chain, Shape]:
    channels, height, width = shape
    modules = []
    for spec in layers:
        kind = spec["type"]
        if kind == "conv":
            k, stride, padding = spec["kernel"], spec.get("stride", 1), spec.get("padding", 0)
            conv = nn.Conv2d(channels, spec["channels"], k, stride=stride, padding=padding, bias=spec.get("bias", True))
            modules.append(conv)
            channels = spec["channels"]
            height, width = _window(k, stride, padding, height), _window(k, stride, padding, width)
        elif kind == "dense":
            modules.append(nn.Linear(channels * height * width, spec["units"]))
            channels, height, width = spec["units"], 1, 1
        elif kind == "maxpool":
            size = spec["size"]
            stride = spec.get("stride") or size
            modules.append(nn.MaxPool2d(size, stride=stride))
            height, width = _window(size, stride, 0, height), _window(size, stride, 0, width)
        elif kind == "avgpool":
            size, padding = spec["size"], spec.get("padding", 0)
            stride = spec.get("stride") or size
            modules.append(nn.AvgPool2d(size, stride=stride, padding=padding))
            height, width = _window(size, stride, padding, height), _window(size, stride, padding, width)
        elif kind == "global_avgpool":
            modules.append(nn.AdaptiveAvgPool2d(1))
            height, width = 1, 1
        elif kind in ("relu", "tanh", "sigmoid"):
            modules.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]())
        elif kind == "flatten":
            modules.append(nn.Flatten())
            channels, height, width = channels * height * width, 1, 1
        elif kind == "bias":
            modules.append(Bias())
        elif kind == "scale":
            modules.append(Scale())
        elif kind == "subsample":
            stride = spec["stride"]
            modules.append(Subsample(stride, spec["channels"]))
            channels, height, width = spec["channels"], (height - 1) // stride + 1, (width - 1) // stride + 1
        elif kind == "affine":
            modules.append(Affine(spec["scale"], spec["shift"]))
        elif kind == "residual":
            body, out = _chain(spec["body"], (channels, height, width))
            shortcut, _ = _chain(spec.get("shortcut") or [], (channels, height, width))
            modules.append(Residual(body, shortcut))
            channels, height, width = out
        else:
            raise ValueError(f"layer type {kind!r} has no PyTorch equivalent here")
    return Chain(modules), (channels, height, width)


class NewtonWgpuNet(nn.Module):
    """The network of a newton-wgpu model, its modules named as the model file names its
    tensors: `layers.{i}` (conv as `Conv2d`, dense as `Linear` over the flattened input,
    max-pool, average pool (padding counted, as `AvgPool2d` does by default), global average
    pool, ReLU, tanh, sigmoid, flatten, scalar `Bias` and `Scale`, `Subsample`, the frozen
    `Affine`), a residual block as `Residual` with `body.{j}` and `shortcut.{j}`, and the
    input mean and each channel's deviation (ones unless the inputs were standardised), applied
    first, as the buffers `input_mean` and `input_std`."""

    def __init__(self, layers: List[Dict[str, Any]], input_shape):
        super().__init__()
        self.layers, _ = _chain(layers, tuple(input_shape))
        self.register_buffer("input_mean", torch.zeros(input_shape))
        self.register_buffer("input_std", torch.ones(input_shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.layers((x - self.input_mean) / self.input_std[:, None, None]).flatten(1)


def to_module(model: Model) -> NewtonWgpuNet:
    """The equivalent module, its state loaded from the model with `strict=True`."""
    module = NewtonWgpuNet(model.layers, model.input_shape)
    state = {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in model.state_dict().items()}
    state.setdefault("input_mean", torch.zeros(model.input_shape))
    state.setdefault("input_std", torch.ones(model.input_shape[0]))
    module.load_state_dict(state, strict=True)
    return module.eval()
