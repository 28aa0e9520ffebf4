"""What a data set looks like before anything trains: sizes, class counts, a few samples."""
from __future__ import annotations

import numpy as np

from .data import load_dataset


def data_preview(name: str, knobs: dict | None = None, per_class: int = 2, seed: int = 0) -> dict:
    """What a data set looks like: sizes, class counts per split and a few training samples.

    Raises the data set's own DistillError (a message for the page) when it cannot load.
    """
    data = load_dataset(name, **(knobs or {}))
    info = data.info
    k = info.num_classes
    counts = {s: np.bincount(getattr(data, f"y_{s}").numpy(), minlength=k).tolist() for s in ("train", "val", "test")}
    rng = np.random.default_rng(seed)
    y = data.y_train.numpy()
    picks = []
    for c in range(k):
        idx = np.flatnonzero(y == c)
        if len(idx):
            picks += rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
    out = {"name": info.name, "kind": info.kind, "input_shape": list(info.input_shape), "num_classes": k,
           "class_names": list(info.class_names), "source": info.source, "citation": info.citation,
           "sizes": data.sizes(), "counts": counts,
           "samples": data.x_train[picks].numpy(), "sample_labels": y[picks].tolist()}
    if info.kind == "vector" and tuple(info.input_shape) == (2,):
        n = min(len(y), 1500)
        out["points"] = data.x_train[:n].numpy()
        out["point_labels"] = y[:n].tolist()
    return out


def data_info(name: str, knobs: dict | None = None) -> dict:
    """Input shape, classes and training-set size of a data set (loads it)."""
    p = data_preview(name, knobs, per_class=0)
    return {k: p[k] for k in ("kind", "input_shape", "num_classes", "class_names", "sizes")}
