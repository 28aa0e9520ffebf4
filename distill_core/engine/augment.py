"""Cheap on-tensor augmentation, chosen per data set (DatasetInfo.augment)."""
from __future__ import annotations

import torch


def shift_images(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to `max_shift` pixels in x and y (zero fill)."""
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (n, w)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, pad.shape[3])
    out = pad.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)


def crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """The standard CIFAR augmentation, batched: zero-pad by `pad`, crop a random window of the
    original size, and flip half of the images left to right (torchvision's RandomCrop(32, 4) and
    RandomHorizontalFlip, drawn per image). Works on uint8 images (black padding) as on floats."""
    flip = torch.rand(len(x), generator=gen, device="cpu") < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    return shift_images(x, pad, gen)


# Geometric augmentations: they only move pixels, so they apply to uint8 images as they are.
GEOMETRIC = ("shift", "crop-flip")


def augment_batch(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    if how == "crop-flip" and x.dim() == 4:
        return crop_flip(x, max(1, x.shape[-1] // 8), gen)
    if how == "shift" and x.dim() == 4:
        return shift_images(x, max(1, x.shape[-1] // 14), gen)
    if how in ("noise", "shift"):
        noise = torch.randn(x.shape, generator=gen, device="cpu").to(x.device)
        return x + 0.1 * noise
    return x
