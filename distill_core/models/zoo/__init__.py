"""The distillation papers' model zoo for 32x32 colour images (CIFAR), as in CRD / RepDistiller
(Tian, Krishnan & Isola, ICLR 2020) and mdistiller: ResNet (resnet8-110, 8x4, 32x4), WRN
(16-1 ... 40-2), VGG with BN (8-19), MobileNetV2 and ShuffleNet V1/V2.

Each family is an architecture with knobs; the papers' names are named sizes ("resnet32x4").
Their parameter counts equal the reference implementations' (tests/test_zoo.py). They take any
image (C, H, W); on CIFAR's 3x32x32 they are the references' networks.
"""
from __future__ import annotations

from . import mobilenetv2, resnet, shufflenet, vgg, wrn

SIZES: dict[str, dict] = {**resnet.SIZES, **wrn.SIZES, **vgg.SIZES, **mobilenetv2.SIZES, **shufflenet.SIZES}
DESCRIBE = {"resnet-cifar": resnet.describe, "wrn": wrn.describe, "vgg": vgg.describe,
            "mobilenetv2": mobilenetv2.describe}


def _add_sizes() -> None:
    from .. import NAMED_SIZES

    for name, spec in SIZES.items():
        if name in NAMED_SIZES:
            raise ValueError(f"named size {name!r} defined twice")
        NAMED_SIZES[name] = spec


_add_sizes()
