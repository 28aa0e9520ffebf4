"""VGG with batch norm for CIFAR (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015; configurations A, B, D, E and the distillation papers'
VGG-8): five blocks of 3x3 conv-BN-ReLU, max-pooling between the first four, global average
pooling and one linear layer (no fully connected stack), as in CRD / RepDistiller. On 32x32
inputs the last two blocks both run at 4x4 (the references pool a fourth time only on 64x64).

Stages here: blocks 1 to 4 (each after the pooling before it; block 0 goes with block 1), the
references' feature taps f1-f4.
"""
from __future__ import annotations

from torch import nn

from ...registry import Param
from .. import register
from ..base import DistillNet
from .common import conv_bn_relu, image_channels, pooled, reference_init

CONFIGS = {  # channels of each conv, per block
    "8": [[64], [128], [256], [512], [512]],
    "11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def block(c_in: int, widths: list[int]) -> nn.Sequential:
    layers = []
    for w in widths:
        layers += list(conv_bn_relu(c_in, w, 3, bias=True))
        c_in = w
    return nn.Sequential(*layers)


@register(
    "vgg", "VGG with batch norm for CIFAR (Simonyan & Zisserman 2015; vgg8 ... vgg19 of CRD / RepDistiller)",
    (Param("depth", "13", "weight layers: 8, 11, 13, 16 or 19", "choice", choices=tuple(CONFIGS)),),
    kinds=("image",),
)
def vgg(input_shape, num_classes, depth):
    cfg = CONFIGS[depth]
    blocks, c = [], image_channels(input_shape, "vgg")
    for widths in cfg:
        blocks.append(block(c, widths))
        c = widths[-1]
    pool = lambda: nn.MaxPool2d(2, 2)  # noqa: E731
    fourth = pool() if min(input_shape[1:]) >= 64 else nn.Identity()
    stages = [nn.Sequential(blocks[0], pool(), blocks[1]), nn.Sequential(pool(), blocks[2]),
              nn.Sequential(pool(), blocks[3]), nn.Sequential(fourth, blocks[4])]
    return reference_init(DistillNet(stages, pooled(), nn.Linear(c, num_classes), "map2d"), linear="normal")


def describe(spec: dict) -> str:
    return f"vgg{spec['depth']}"


SIZES = {f"vgg{d}": {"arch": "vgg", "depth": d, "_about": f"VGG-{d} with batch norm for CIFAR (CRD / RepDistiller)"}
         for d in CONFIGS}
