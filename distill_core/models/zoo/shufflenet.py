"""ShuffleNet V1 (Zhang, Zhou, Lin & Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018) and V2 (Ma, Zhang, Zheng & Sun, "ShuffleNet V2:
Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018), in the CIFAR variants of
CRD / RepDistiller: a 1x1 stem without pooling, then three stages that each halve the size.
V1 uses 3 groups (240-480-960 channels); V2 the 1x size (116-232-464, then a 1,024-channel 1x1).

Stages here: stem + first stage, second stage, third stage (the references' taps f1-f3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import Param
from .. import register
from ..base import DistillNet
from .common import conv_bn_relu, image_channels, pooled


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g*c, H, W) -> interleave the g groups' channels (the papers' channel shuffle)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnitV1(nn.Module):
    """Grouped 1x1, shuffle, 3x3 depthwise, grouped 1x1; stride 2 concatenates an average-pooled input."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        mid = c_out // 4
        g = 1 if c_in == 24 else groups  # the first unit's input (the stem) is too narrow to group
        self.g, self.stride = g, stride
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, mid, 1, groups=g, bias=False), nn.BatchNorm2d(mid))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.conv3 = nn.Sequential(nn.Conv2d(mid, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x):
        out = channel_shuffle(F.relu(self.conv1(x)), self.g)
        out = self.conv3(F.relu(self.conv2(out)))
        res = self.shortcut(x)
        return F.relu(torch.cat([out, res], 1) if self.stride == 2 else out + res)


@register(
    "shufflenetv1", "ShuffleNet V1 for CIFAR (Zhang et al. 2018; CRD / RepDistiller's ShuffleV1, 3 groups)",
    (), kinds=("image",), recipe_lr=0.01,
)
def shufflenetv1(input_shape, num_classes):
    widths, blocks, groups = (240, 480, 960), (4, 8, 4), 3
    stem = conv_bn_relu(image_channels(input_shape, "shufflenetv1"), 24, 1)
    stages, c = [], 24
    for w, n in zip(widths, blocks):
        units = []
        for i in range(n):
            units.append(ShuffleUnitV1(c, w - c if i == 0 else w, 2 if i == 0 else 1, groups))  # concat adds c
            c = w
        stages.append(nn.Sequential(*units))
    stages[0] = nn.Sequential(stem, stages[0])
    return DistillNet(stages, pooled(), nn.Linear(c, num_classes), "map2d")


class ShuffleUnitV2(nn.Module):
    """Split the channels in half, transform one half (1x1, 3x3 depthwise, 1x1), concatenate, shuffle."""

    def __init__(self, c: int):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(*conv_bn_relu(h, h, 1), nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False),
                                    nn.BatchNorm2d(h), *conv_bn_relu(h, h, 1))

    def forward(self, x):
        keep, change = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(change)], 1), 2)


class DownUnitV2(nn.Module):
    """Both branches see the whole input at stride 2; the output doubles the channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        h = c_out // 2
        self.left = nn.Sequential(nn.Conv2d(c_in, c_in, 3, 2, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                                  *conv_bn_relu(c_in, h, 1))
        self.right = nn.Sequential(*conv_bn_relu(c_in, h, 1), nn.Conv2d(h, h, 3, 2, 1, groups=h, bias=False),
                                   nn.BatchNorm2d(h), *conv_bn_relu(h, h, 1))

    def forward(self, x):
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


V2_SIZES = {"0.5": (48, 96, 192, 1024), "1": (116, 232, 464, 1024), "1.5": (176, 352, 704, 1024),
            "2": (224, 488, 976, 2048)}


@register(
    "shufflenetv2", "ShuffleNet V2 for CIFAR (Ma et al. 2018; CRD / RepDistiller's ShuffleV2 at size 1x)",
    (Param("size", "1", "the paper's width: 0.5, 1, 1.5 or 2 (CRD: 1)", "choice", choices=tuple(V2_SIZES)),),
    kinds=("image",), recipe_lr=0.01,
)
def shufflenetv2(input_shape, num_classes, size):
    *widths, last = V2_SIZES[size]
    stem = conv_bn_relu(image_channels(input_shape, "shufflenetv2"), 24, 1)
    stages, c = [], 24
    for w, n in zip(widths, (3, 7, 3)):
        stages.append(nn.Sequential(DownUnitV2(c, w), *[ShuffleUnitV2(w) for _ in range(n)]))
        c = w
    stages[0] = nn.Sequential(stem, stages[0])
    neck = nn.Sequential(*conv_bn_relu(c, last, 1), *pooled())
    return DistillNet(stages, neck, nn.Linear(last, num_classes), "map2d")


SIZES = {"shufflenetv1": {"arch": "shufflenetv1", "_about": "ShuffleNet V1, 3 groups, for CIFAR (CRD / RepDistiller's ShuffleV1)"},
         "shufflenetv2": {"arch": "shufflenetv2", "size": "1", "_about": "ShuffleNet V2 1x for CIFAR (CRD / RepDistiller's ShuffleV2)"}}
