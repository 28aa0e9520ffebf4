"""Saving and loading weights. Checkpoints are untrusted input: never plain unpickling."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ModelError


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write `.safetensors` atomically (a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or from `.pt`/`.pth` with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weight file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return load_file(str(path))
        if suffix in (".pt", ".pth", ".bin"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ModelError(f"{path}: not a state dict of tensors")
            return state
    except ModelError:
        raise
    except Exception as exc:  # corrupt file, refused pickle, truncated archive
        raise ModelError(f"{path}: cannot read weights ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    raise ModelError(f"{path}: unknown weight format {suffix!r}; use .safetensors or .pt")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights into `model`; a mismatched file says which tensors do not fit."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected e.g. {', '.join(unexpected[:3])}")
        if wrong:
            parts.append(f"wrong shapes: {'; '.join(wrong[:3])}")
        raise ModelError(f"{path}: weights do not fit this architecture: " + "; ".join(parts))
    model.load_state_dict(state)
    return model
