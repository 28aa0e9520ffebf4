"""Size and compute: parameters, file bytes, FLOPs and MACs per sample, and the fingerprint of an
architecture (what two networks that differ only in their weights share)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn


def param_counts(model: nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}


def file_bytes(path: str | Path) -> int:
    """The size of the file as it is on disk (what a device would have to store)."""
    return os.path.getsize(path)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """FLOPs and MACs of one forward pass on one sample, in eval mode.

    Counted by torch.utils.flop_counter.FlopCounterMode, which counts matrix products and
    convolutions (2 FLOPs per multiply-accumulate) and not element-wise work (activations,
    batch norm, pooling, bias adds): the usual convention, dominated by the products anyway.
    """
    from torch.utils.flop_counter import FlopCounterMode  # imported when first counted: it pulls in torch._dynamo (seconds)

    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape)
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    by_op: dict[str, int] = {}
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        name = str(op).removeprefix("aten.").split(".")[0]
        by_op[name] = by_op.get(name, 0) + int(n)
    return {"flops": flops, "macs": flops // 2, "by_op": by_op}


def architecture_fingerprint(model: nn.Module) -> str:
    """sha256 of the module tree (its repr: layers and their hyper-parameters) and the name,
    shape and dtype of every parameter and buffer: equal for two networks that differ only in
    their weights' values."""
    tensors = [(name, list(t.shape), str(t.dtype)) for name, t in model.state_dict().items()]
    blob = json.dumps([type(model).__module__ + "." + type(model).__qualname__, repr(model), tensors])
    return hashlib.sha256(blob.encode()).hexdigest()
