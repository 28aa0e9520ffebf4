"""Device and thread choice, recorded with every run."""
from __future__ import annotations

import os

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """"auto" takes CUDA, then Apple's MPS, then the CPU; otherwise the named device."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but no CUDA GPU is available")
    return torch.device(preference)


def set_threads(threads: int) -> int:
    """Fix torch's intra-op threads (0 = all cores); returns the number in use."""
    n = threads if threads and threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return torch.get_num_threads()


def available_devices() -> list[str]:
    """Devices torch can train on here: the CPU, and CUDA or Apple's MPS when present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices
