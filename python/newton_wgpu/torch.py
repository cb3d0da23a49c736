"""A trained model as the equivalent `torch.nn.Module` (where torch is installed).

    from newton_wgpu.torch import to_module
    module = to_module(model)          # model.state_dict() loaded with strict=True
    logits = module(torch.from_numpy(X))
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn

from ._core import Model


class NewtonWgpuNet(nn.Module):
    """The network of a newton-wgpu model: `layers.{i}` as the model file names them (conv as
    `Conv2d`, dense as `Linear` over the flattened input, max-pool, average pool (padding counted, as
    `AvgPool2d` does by default), global average pool, ReLU, tanh, sigmoid, flatten), and the
    input mean, subtracted first, as the buffer `input_mean`."""

    def __init__(self, layers: List[Dict[str, Any]], input_shape):
        super().__init__()
        channels, height, width = input_shape
        modules = []
        for spec in layers:
            kind = spec["type"]
            if kind == "conv":
                k, stride, padding = spec["kernel"], spec.get("stride", 1), spec.get("padding", 0)
                modules.append(nn.Conv2d(channels, spec["channels"], k, stride=stride, padding=padding))
                channels = spec["channels"]
                height = (height + 2 * padding - k) // stride + 1
                width = (width + 2 * padding - k) // stride + 1
            elif kind == "dense":
                modules.append(nn.Linear(channels * height * width, spec["units"]))
                channels, height, width = spec["units"], 1, 1
            elif kind == "maxpool":
                size = spec["size"]
                stride = spec.get("stride") or size
                modules.append(nn.MaxPool2d(size, stride=stride))
                height = (height - size) // stride + 1
                width = (width - size) // stride + 1
            elif kind == "avgpool":
                size, padding = spec["size"], spec.get("padding", 0)
                stride = spec.get("stride") or size
                modules.append(nn.AvgPool2d(size, stride=stride, padding=padding))
                height = (height + 2 * padding - size) // stride + 1
                width = (width + 2 * padding - size) // stride + 1
            elif kind == "global_avgpool":
                modules.append(nn.AdaptiveAvgPool2d(1))
                height, width = 1, 1
            elif kind == "relu":
                modules.append(nn.ReLU())
            elif kind == "tanh":
                modules.append(nn.Tanh())
            elif kind == "sigmoid":
                modules.append(nn.Sigmoid())
            elif kind == "flatten":
                modules.append(nn.Flatten())
                channels, height, width = channels * height * width, 1, 1
            else:
                raise ValueError(f"layer type {kind!r} has no PyTorch equivalent here")
        self.layers = nn.ModuleList(modules)
        self.register_buffer("input_mean", torch.zeros(input_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = x - self.input_mean
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                x = x.flatten(1)
            x = layer(x)
        return x.flatten(1)


def to_module(model: Model) -> NewtonWgpuNet:
    """The equivalent module, its state loaded from the model with `strict=True`."""
    module = NewtonWgpuNet(model.layers, model.input_shape)
    state = {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in model.state_dict().items()}
    if "input_mean" not in state:
        state["input_mean"] = torch.zeros(model.input_shape)
    module.load_state_dict(state, strict=True)
    return module.eval()
