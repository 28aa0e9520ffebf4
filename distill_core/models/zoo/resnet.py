"""ResNet for CIFAR (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2): a 3x3 stem, then three stages of n basic blocks at 32x32, 16x16 and
8x8, so depth = 6n + 2 (resnet8 ... resnet110). The distillation papers' variant (CRD /
RepDistiller) has 1x1 projection shortcuts where the shape changes, and the "x4" models
(resnet8x4, resnet32x4) widen the stem to 32 and the stages to 64-128-256.

Stages here: stem + first stage, second stage, third stage (the references' feature taps f1-f3).
"""
from __future__ import annotations

from torch import nn

from ...errors import ModelError
from ...registry import Param
from .. import register
from ..base import DistillNet
from .common import conv_bn_relu, image_channels, pooled, reference_init


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN, added to the input (or its 1x1 projection), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


def stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(blocks)])


@register(
    "resnet-cifar", "ResNet for CIFAR (He et al. 2016; the distillation papers' resnet8-110, 8x4, 32x4): "
    "depth 6n+2, three stages of basic blocks",
    (Param("depth", 20, "layers: 6n + 2 (8, 14, 20, 32, 44, 56, 110)", "int", 8, 1202),
     Param("widths", [16, 16, 32, 64], "channels of the stem and the three stages (the x4 models: 32-64-128-256)",
           "ints", 1, 4096)),
    kinds=("image",),
)
def resnet_cifar(input_shape, num_classes, depth, widths):
    if (depth - 2) % 6:
        raise ModelError(f"resnet-cifar: depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
    if len(widths) != 4:
        raise ModelError(f"resnet-cifar: widths are four numbers (stem and three stages), got {widths}")
    n = (depth - 2) // 6
    stem = conv_bn_relu(image_channels(input_shape, "resnet-cifar"), widths[0], 3)
    stages = [nn.Sequential(stem, stage(widths[0], widths[1], n, 1)),
              stage(widths[1], widths[2], n, 2), stage(widths[2], widths[3], n, 2)]
    return reference_init(DistillNet(stages, pooled(), nn.Linear(widths[3], num_classes), "map2d"))


def describe(spec: dict) -> str:
    w = spec["widths"]
    suffix = "" if w == [16, 16, 32, 64] else "x4" if w == [32, 64, 128, 256] else " w" + "-".join(map(str, w))
    return f"resnet{spec['depth']}{suffix}"


SIZES = {f"resnet{d}": {"arch": "resnet-cifar", "depth": d, "widths": [16, 16, 32, 64],
                        "_about": f"ResNet-{d} for CIFAR (He et al. 2016; CRD / RepDistiller)"}
         for d in (8, 14, 20, 32, 44, 56, 110)}
SIZES.update({f"resnet{d}x4": {"arch": "resnet-cifar", "depth": d, "widths": [32, 64, 128, 256],
                               "_about": f"ResNet-{d}x4: ResNet-{d} at four times the width (CRD / RepDistiller)"}
              for d in (8, 32)})
