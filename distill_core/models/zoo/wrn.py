"""Wide residual networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016):
pre-activation basic blocks (BN-ReLU-conv, twice) in three stages of 16k, 32k and 64k channels,
depth = 6n + 4, written WRN-depth-k (wrn-16-1 ... wrn-40-2), as in CRD / RepDistiller.

Stages here: first conv + first stage, second stage, third stage (the references' taps f1-f3,
before the final BN-ReLU, which belongs to the pooling neck).
"""
from __future__ import annotations

from torch import nn

from ...errors import ModelError
from ...registry import Param
from .. import register
from ..base import DistillNet
from .common import image_channels, pooled, reference_init


class WideBlock(nn.Module):
    """Pre-activation block; where the shape changes, the 1x1 shortcut takes the activated input."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        )
        self.project = None if c_in == c_out and stride == 1 else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        if self.project is None:
            return x + self.body(self.pre(x))
        x = self.pre(x)
        return self.project(x) + self.body(x)


def stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(blocks)])


@register(
    "wrn", "wide ResNet (Zagoruyko & Komodakis 2016; wrn-16-1 ... wrn-40-2): depth 6n+4, widen factor k",
    (Param("depth", 16, "layers: 6n + 4 (16, 22, 28, 40)", "int", 10, 1000),
     Param("widen", 2, "widen factor k: stage widths 16k, 32k, 64k", "int", 1, 32)),
    kinds=("image",),
)
def wrn(input_shape, num_classes, depth, widen):
    if (depth - 4) % 6:
        raise ModelError(f"wrn: depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth}")
    n = (depth - 4) // 6
    c = [16, 16 * widen, 32 * widen, 64 * widen]
    first = nn.Conv2d(image_channels(input_shape, "wrn"), c[0], 3, 1, 1, bias=False)
    stages = [nn.Sequential(first, stage(c[0], c[1], n, 1)), stage(c[1], c[2], n, 2), stage(c[2], c[3], n, 2)]
    neck = nn.Sequential(nn.BatchNorm2d(c[3]), nn.ReLU(inplace=True), *pooled())
    return reference_init(DistillNet(stages, neck, nn.Linear(c[3], num_classes), "map2d"), linear="zero_bias")


def describe(spec: dict) -> str:
    return f"wrn-{spec['depth']}-{spec['widen']}"


SIZES = {f"wrn-{d}-{k}": {"arch": "wrn", "depth": d, "widen": k,
                          "_about": f"WRN-{d}-{k} (Zagoruyko & Komodakis 2016; CRD / RepDistiller)"}
         for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))}
