"""The built-in architectures. Each builds from (input shape, classes, size knobs).

Input kinds: "vector" (d,), "signal" (C, L), "image" (C, H, W). Vector-only models flatten any
input; convolutional models need a signal or an image and say so otherwise.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Param
from . import register
from .base import DistillNet


def _conv(dims: int):
    return (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)


def _spatial_dims(input_shape, arch: str) -> int:
    if len(input_shape) == 1:
        raise ModelError(
            f"{arch} needs a signal (C, L) or an image (C, H, W); this data set gives flat vectors "
            f"of {input_shape[0]} features. Use mlp or linear instead."
        )
    return len(input_shape) - 1


class Dropout(nn.Dropout):
    """nn.Dropout with its mask drawn by `rand_like(x) >= p`: the same distribution, twice as
    fast on the CPU (forward and backward of a 64x1200 layer), where the bernoulli_ kernel behind
    nn.Dropout is slow (pytorch/pytorch#138199; Inductor decomposes it the same way). In eval
    mode it is the identity, as nn.Dropout is, so exports do not change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))


@register("linear", "logistic regression: one linear layer on the flattened input", (), kinds=("vector", "signal", "image"))
def linear(input_shape, num_classes):
    d = math.prod(input_shape)
    return DistillNet([], nn.Flatten(), nn.Linear(d, num_classes), "vector")


@register(
    "mlp", "multilayer perceptron on the flattened input (ReLU, optional dropout)",
    (Param("hidden", [256, 256], "hidden layer widths, e.g. 1200,1200", "ints", 1, 65536),
     Param("dropout", 0.0, "dropout after each hidden layer (Hinton's teacher: 0.5)", "float", 0.0, 0.9)),
    kinds=("vector", "signal", "image"),
)
def mlp(input_shape, num_classes, hidden, dropout):
    stages, d = [], math.prod(input_shape)
    for i, width in enumerate(hidden):
        layers = ([nn.Flatten()] if i == 0 else []) + [nn.Linear(d, width), nn.ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        stages.append(nn.Sequential(*layers))
        d = width
    neck = nn.Identity() if hidden else nn.Flatten()
    return DistillNet(stages, neck, nn.Linear(d, num_classes), "vector")


@register(
    "cnn", "plain CNN: conv-BN-ReLU blocks, max-pool between them, global average pool (1-D or 2-D by input)",
    (Param("channels", [32, 64], "output channels of each conv block", "ints", 1, 4096),
     Param("kernel", 3, "kernel size", "int", 1, 11)),
    kinds=("signal", "image"),
)
def cnn(input_shape, num_classes, channels, kernel):
    dims = _spatial_dims(input_shape, "cnn")
    Conv, BN, Pool = _conv(dims)
    MaxPool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    stages, c, size = [], input_shape[0], min(input_shape[1:])
    for i, out in enumerate(channels):
        block = [Conv(c, out, kernel, padding=kernel // 2, bias=False), BN(out), nn.ReLU()]
        if size >= 4 and i < len(channels) - 1:
            block.append(MaxPool(2))
            size //= 2
        stages.append(nn.Sequential(*block))
        c = out
    return DistillNet(stages, nn.Sequential(Pool(1), nn.Flatten()), nn.Linear(c, num_classes), "map%dd" % dims)


class _Residual(nn.Module):
    """Basic residual block (He et al. 2016): two 3-wide convs, identity or 1x1 shortcut."""

    def __init__(self, dims, c_in, c_out, stride):
        super().__init__()
        Conv, BN, _ = _conv(dims)
        self.body = nn.Sequential(
            Conv(c_in, c_out, 3, stride, 1, bias=False), BN(c_out), nn.ReLU(),
            Conv(c_out, c_out, 3, 1, 1, bias=False), BN(c_out),
        )
        self.short = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            Conv(c_in, c_out, 1, stride, bias=False), BN(c_out))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


@register(
    "resnet", "ResNet-style: a stem and three stages of basic residual blocks, widths w, 2w, 4w",
    (Param("depth", 1, "residual blocks per stage (depth 1 ~ ResNet-8)", "int", 1, 8),
     Param("width", 16, "channels of the first stage", "int", 2, 512)),
    kinds=("signal", "image"),
)
def resnet(input_shape, num_classes, depth, width):
    dims = _spatial_dims(input_shape, "resnet")
    Conv, BN, Pool = _conv(dims)
    stem = nn.Sequential(Conv(input_shape[0], width, 3, 1, 1, bias=False), BN(width), nn.ReLU())
    stages, c, size = [stem], width, min(input_shape[1:])
    for i, w in enumerate((width, 2 * width, 4 * width)):
        stride = 2 if i > 0 and size >= 4 else 1
        size = (size + 1) // stride
        blocks = [_Residual(dims, c if j == 0 else w, w, stride if j == 0 else 1) for j in range(depth)]
        stages.append(nn.Sequential(*blocks))
        c = w
    return DistillNet(stages, nn.Sequential(Pool(1), nn.Flatten()), nn.Linear(c, num_classes), "map%dd" % dims)


@register(
    "mobile", "depthwise-separable 'mobile' CNN (MobileNet-style blocks), scaled by a width multiplier",
    (Param("width_mult", 1.0, "width multiplier on the base channels 32-64-128", "float", 0.125, 4.0),
     Param("blocks", 3, "depthwise-separable blocks", "int", 1, 6)),
    kinds=("signal", "image"),
)
def mobile(input_shape, num_classes, width_mult, blocks):
    dims = _spatial_dims(input_shape, "mobile")
    Conv, BN, Pool = _conv(dims)
    base = [32, 64, 128, 128, 256, 256][:blocks]
    widths = [max(4, int(round(b * width_mult))) for b in base]
    stem_c = max(4, int(round(16 * width_mult)))
    stages = [nn.Sequential(Conv(input_shape[0], stem_c, 3, 1, 1, bias=False), BN(stem_c), nn.ReLU())]
    c, size = stem_c, min(input_shape[1:])
    for w in widths:
        stride = 2 if size >= 4 else 1
        size = (size + 1) // stride
        stages.append(nn.Sequential(
            Conv(c, c, 3, stride, 1, groups=c, bias=False), BN(c), nn.ReLU(),  # depthwise
            Conv(c, w, 1, bias=False), BN(w), nn.ReLU(),  # pointwise
        ))
        c = w
    return DistillNet(stages, nn.Sequential(Pool(1), nn.Flatten()), nn.Linear(c, num_classes), "map%dd" % dims)
