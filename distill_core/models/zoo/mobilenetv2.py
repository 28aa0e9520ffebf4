"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018) in the CIFAR variant of the distillation papers (CRD /
RepDistiller's "MobileNetV2", from Route Constrained Optimization): expansion 6, width 0.5, a
stride-2 stem, ReLU (not ReLU6), a 1x1 expansion even in the first block, and a 1,280-channel
1x1 convolution before the pooling.

Stages here: the references' feature taps f1-f4 (after inverted-residual groups 2, 3, 5 and 7).
"""
from __future__ import annotations

from torch import nn

from ...registry import Param
from .. import register
from ..base import DistillNet
from .common import conv_bn_relu, image_channels, pooled, reference_init

SETTING = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2), (None, 96, 3, 1),
           (None, 160, 3, 2), (None, 320, 1, 1)]  # expansion (None: the knob), channels, blocks, stride


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; a residual where the shape allows."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            *conv_bn_relu(c_in, mid, 1), *conv_bn_relu(mid, mid, 3, stride, groups=mid),
            nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


@register(
    "mobilenetv2", "MobileNetV2 for CIFAR (Sandler et al. 2018; CRD / RepDistiller's variant at width 0.5)",
    (Param("width_mult", 0.5, "width multiplier on every layer but the last 1x1 (CRD: 0.5)", "float", 0.125, 4.0),
     Param("expand", 6, "expansion ratio t of the inverted residuals (the paper: 6)", "int", 1, 12)),
    kinds=("image",), recipe_lr=0.01,
)
def mobilenetv2(input_shape, num_classes, width_mult, expand):
    c = int(32 * width_mult)
    stem = conv_bn_relu(image_channels(input_shape, "mobilenetv2"), c, 3, 2)
    groups = []
    for t, ch, n, s in SETTING:
        out = int(ch * width_mult)
        layers = []
        for i in range(n):
            layers.append(InvertedResidual(c, out, s if i == 0 else 1, expand if t is None else t))
            c = out
        groups.append(nn.Sequential(*layers))
    last = int(1280 * width_mult) if width_mult > 1.0 else 1280
    stages = [nn.Sequential(stem, groups[0], groups[1]), groups[2], nn.Sequential(groups[3], groups[4]),
              nn.Sequential(groups[5], groups[6])]
    neck = nn.Sequential(*conv_bn_relu(c, last, 1), *pooled())
    return reference_init(DistillNet(stages, neck, nn.Linear(last, num_classes), "map2d"), linear="normal")


def describe(spec: dict) -> str:
    return f"mobilenetv2 x{spec['width_mult']:g}"


SIZES = {"mobilenetv2": {"arch": "mobilenetv2", "width_mult": 0.5, "expand": 6,
                         "_about": "MobileNetV2 at width 0.5 for CIFAR (CRD / RepDistiller's MobileNetV2)"}}
