"""Pieces the zoo's families share: the input check, conv-BN-ReLU, and the reference inits."""
from __future__ import annotations

import math

from torch import nn

from ...errors import ModelError


def image_channels(input_shape: tuple[int, ...], arch: str) -> int:
    """The input's channel count; a ModelError unless it is an image (C, H, W)."""
    if len(input_shape) != 3:
        raise ModelError(f"{arch} is a 2-D convolutional network for images (C, H, W); this data set gives inputs "
                         f"of shape {tuple(input_shape)}. Use mlp, cnn or resnet instead.")
    return int(input_shape[0])


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def reference_init(model: nn.Module, linear: str = "default") -> nn.Module:
    """The initialisation of the CIFAR reference code (RepDistiller): convolutions N(0, 2 / (k*k*out))
    (He et al. 2015, fan-out) with zero bias, batch norm 1 and 0; the classifier left as PyTorch
    makes it ("default"), with zero bias ("zero_bias"), or N(0, 0.01) with zero bias ("normal")."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear != "default":
            if linear == "normal":
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def pooled() -> nn.Sequential:
    """Global average pooling to the embedding: the references' fixed AvgPool2d(8) (or 4) on
    32x32 inputs, written adaptively so other image sizes work too."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
