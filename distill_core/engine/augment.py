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


def augment_batch(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    if how == "shift" and x.dim() == 4:
        return shift_images(x, max(1, x.shape[-1] // 14), gen)
    if how in ("noise", "shift"):
        noise = torch.randn(x.shape, generator=gen, device="cpu").to(x.device)
        return x + 0.1 * noise
    return x
