"""Load a resnet8 or resnet20 model trained by newton-wgpu into Fixup's own PyTorch ResNet.

    newton-wgpu train --net resnet8 --iters 5 --save resnet8.safetensors
    python fixup_resnet_torch.py resnet8.safetensors

The module below is the CIFAR ResNet of Zhang, Dauphin and Ma's reference code
(hongyi-zhang/Fixup, cifar/models/fixup_resnet_cifar.py), module for module and name for name,
with the stem's input channels taken from the model. The script maps the model file's tensor
names (`layers.{i}…`, by place in the network) onto Fixup's (`conv1.weight`, `bias1`,
`layer2.0.conv1.weight`, …), loads them with strict=True (every name and shape must match),
and checks that both compute the same logits on the bundled test digits (or CIFAR-10 batches
given with --data).
"""

import argparse
import pathlib

import numpy as np
import torch
from torch import nn

import newton_wgpu as nw


def conv3x3(inplanes, planes, stride=1):
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class FixupBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = conv3x3(planes, planes)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x + self.bias1a)
        out = self.relu(out + self.bias1b)
        out = self.conv2(out + self.bias2a)
        out = out * self.scale + self.bias2b
        if self.downsample is not None:
            identity = self.downsample(x + self.bias1a)
            identity = torch.cat((identity, torch.zeros_like(identity)), 1)
        out += identity
        return self.relu(out)


class FixupResNet(nn.Module):
    def __init__(self, blocks, in_channels=3, num_classes=10):
        super().__init__()
        self.inplanes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bias1 = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks)
        self.layer2 = self._make_layer(32, blocks, stride=2)
        self.layer3 = self._make_layer(64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = nn.AvgPool2d(1, stride=stride) if stride != 1 else None
        layers = [FixupBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [FixupBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.conv1(x) + self.bias1)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(1)
        return self.fc(x + self.bias2)


# A block's body in newton-wgpu's resnets, in order: (a `bias` first only where the block
# keeps the plane; a downsampling block has it before the block, read by both branches).
BODY = ["conv1", "bias1b", None, "bias2a", "conv2", "scale", "bias2b"]


def fixup_names(layers):
    """Our tensor name → Fixup's, walking the network's layers as the built-in lays them out."""
    names = {"layers.0.weight": "conv1.weight", "layers.1.bias": "bias1"}
    stage, block, pending_bias = 1, 0, None
    blocks_per_stage = sum(1 for spec in layers if spec["type"] == "residual") // 3
    for i, spec in enumerate(layers[3:], start=3):
        if spec["type"] == "bias" and layers[i + 1]["type"] == "residual":
            pending_bias = f"layers.{i}.bias"
        elif spec["type"] == "residual":
            prefix = f"layer{stage}.{block}"
            body = spec["body"]
            if pending_bias:
                names[pending_bias] = f"{prefix}.bias1a"
                pending_bias = None
                offset = 0
            else:
                names[f"layers.{i}.body.0.bias"] = f"{prefix}.bias1a"
                offset = 1
            assert len(body) == len(BODY) + offset, "not a built-in Fixup resnet"
            for j, theirs in enumerate(BODY, start=offset):
                kind = body[j]["type"]
                if theirs is None:
                    continue
                ours = {"conv": "weight", "bias": "bias", "scale": "scale"}[kind]
                names[f"layers.{i}.body.{j}.{ours}"] = f"{prefix}.{theirs}" + (".weight" if kind == "conv" else "")
            block += 1
            if block == blocks_per_stage:
                stage, block = stage + 1, 0
        elif spec["type"] == "bias":
            names[f"layers.{i}.bias"] = "bias2"
        elif spec["type"] == "dense":
            names[f"layers.{i}.weight"], names[f"layers.{i}.bias"] = "fc.weight", "fc.bias"
    return names, blocks_per_stage


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path, help="a resnet8 or resnet20 model file")
    parser.add_argument("--data", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2] / "data" / "mnist-sample")
    args = parser.parse_args()

    model = nw.Model.load(args.model)
    names, blocks = fixup_names(model.layers)
    state = {names[name]: torch.from_numpy(np.ascontiguousarray(values))
             for name, values in model.state_dict().items() if name not in ("input_mean", "input_std")}
    module = FixupResNet(blocks, in_channels=model.input_shape[0], num_classes=model.classes)
    module.load_state_dict(state, strict=True)
    module.eval()

    _, _, X_test, y_test = nw.load_dir(args.data)
    X = X_test[:256]
    inputs = model.state_dict()
    mean = inputs.get("input_mean", np.zeros(model.input_shape, np.float32))
    std = inputs.get("input_std", np.ones(model.input_shape[0], np.float32))
    with torch.no_grad():
        theirs = module(torch.from_numpy((X - mean) / std[:, None, None])).numpy()
    ours = model.predict_logits(X)
    gap = float(np.abs(theirs - ours).max())
    print(f"{len(state)} tensors loaded into Fixup's ResNet-{6 * blocks + 2} (strict); "
          f"largest logit difference {gap:.2e} (largest logit {np.abs(ours).max():.3f}); "
          f"accuracy {np.mean(theirs.argmax(1) == y_test[:256]):.3f} there, {np.mean(ours.argmax(1) == y_test[:256]):.3f} here")
    assert gap <= 1e-4 * max(1.0, float(np.abs(ours).max())), "the two modules disagree"


if __name__ == "__main__":
    main()
