"""What a finished run saved, used by inference only: its model, its logits on a few samples or
on the test set, a 2-D model's decision surface, and its teacher's cached outputs.

Nothing here trains. Files are found through paths.py and teachers.py; a model is rebuilt from
its run config and loaded from the weights the run wrote.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import paths
from .data import DataBundle
from .data.cache import load_data
from .evaluate import predict_logits
from .measure.export import fold_batchnorm
from .models import DistillNet, build_model, load_weights
from .run_config import RunConfig
from .teaching import grid_points
from .teachers import TeacherCache, teacher_weights


def run_weights(home: str | Path, config: RunConfig) -> Path:
    """Where a finished run keeps its weights: <home>/runs/<hash>/weights.safetensors."""
    return paths.run_folder(home, config.hash) / paths.WEIGHTS


def load_run_model(config: RunConfig, weights: str | Path) -> tuple[DistillNet, DataBundle]:
    """The trained model of a run from its config and saved weights, in eval mode, with its
    data set (loaded once per process)."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights} (the run was deleted?)")
    data = load_data(config.dataset)
    model = build_model(config.model, data.info.input_shape, data.info.num_classes, data.info.kind)
    load_weights(model, weights)
    return model.eval(), data


def test_logits(config: RunConfig, weights: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of a run's saved model on the test split (the first `limit` samples)."""
    model, data = load_run_model(config, weights)
    x, y = data.x_test, data.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return predict_logits(model, x).numpy(), y.numpy()


def decision_surface(config: RunConfig, weights: str | Path, steps: int = 120) -> dict:
    """A 2-D model's class probabilities on a grid over its training inputs.

    Returns xs, ys (grid axes), probs (steps x steps x K), x_train, y_train, test_accuracy.
    """
    model, data = load_run_model(config, weights)
    xs, ys, pts = grid_points(data.x_train.numpy(), steps)
    probs = torch.softmax(predict_logits(model, pts), 1).numpy().reshape(len(ys), len(xs), -1)
    acc = (predict_logits(model, data.x_test).argmax(1) == data.y_test).float().mean().item()
    return {"xs": xs, "ys": ys, "probs": probs, "x_train": data.x_train.numpy(), "y_train": data.y_train.numpy(),
            "test_accuracy": acc, "classes": list(data.info.class_names)}


def sample_logits(config: RunConfig, home: str | Path, n: int = 8, seed: int = 0, split: str = "test") -> dict:
    """Logits of a finished run's model (and of its teacher) on `n` samples of `split`.

    A teacher without a network of this lab (an ONNX file, a file of outputs, a scikit-learn
    model, an ensemble) gives its cached logits on those samples. Returns the inputs, labels,
    class names, "student" logits, and "teacher" logits or None with "teacher_reason". Raises
    FileNotFoundError when the run's own weights (or cached logits) are gone.
    """
    data = load_data(config.dataset)
    x, y = data.split(split)
    idx = np.random.default_rng(seed).choice(len(y), size=min(n, len(y)), replace=False)
    xs = x[torch.as_tensor(idx)]
    info = data.info
    out = {"x": xs.numpy(), "y": y[torch.as_tensor(idx)].numpy(), "index": idx.tolist(), "kind": info.kind,
           "input_shape": list(info.input_shape), "class_names": list(info.class_names),
           "student": _outputs(config, home, xs, split, idx), "teacher": None, "teacher_reason": None}
    if config.teacher is None:
        out["teacher_reason"] = "this run is the teacher itself"
        return out
    try:
        out["teacher"] = _outputs(config.teacher, home, xs, split, idx)
    except FileNotFoundError:
        out["teacher_reason"] = "the teacher is no longer stored (its run or cache entry was deleted)"
    return out


def _outputs(config: RunConfig, home: str | Path, xs: torch.Tensor, split: str, idx: np.ndarray) -> np.ndarray:
    """A run's logits on samples `xs` (rows `idx` of `split`): from its weights, or for a teacher
    without them, its cached logits."""
    w = run_weights(home, config) if config.is_student else teacher_weights(home, config, own=True)
    if w is not None and w.is_file():
        return predict_logits(load_run_model(config, w)[0], xs).numpy()
    cached = None if config.is_student else TeacherCache(home).logits(config.hash)
    if cached is None:
        raise FileNotFoundError(f"the run's weights are not in {paths.run_folder(home, config.hash)} (deleted?)")
    return cached[split][torch.as_tensor(idx)].numpy()


def teacher_test_outputs(home: str | Path, teacher_hash: str, config: RunConfig) -> dict | None:
    """A cached teacher's test logits with the test inputs and labels (no model is run); None
    when it is no longer cached."""
    logits = TeacherCache(home).logits(teacher_hash)
    if logits is None:
        return None
    data = load_data(config.dataset)
    return {"logits": logits["test"].numpy(), "y": data.y_test.numpy(), "x": data.x_test.numpy(),
            "classes": list(data.info.class_names), "kind": data.info.kind, "shape": list(data.info.input_shape)}


def quantised_layers(config: RunConfig, weights: str | Path) -> dict[str, np.ndarray]:
    """The weights of a run's convolutions and linear layers as its int8 file quantises them
    (batch norm folded into the convolution before it), by layer name."""
    model, _ = load_run_model(config, weights)
    folded, _ = fold_batchnorm(model)
    return {name: m.weight.detach().numpy() for name, m in folded.named_modules()
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))}
