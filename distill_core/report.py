"""Small pure helpers the dashboard pages need: model sizes before anything runs, a rough run
time estimate, data previews, and a trained student's softened predictions on a few samples.

Nothing here trains or imports streamlit; everything reads configs, data sets and the weights
a run saved. Figures a helper cannot obtain are None (with a reason), never 0.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

# Rough speeds for the run-time estimate, measured on one thread of a shared 2-core CPU with
# the digits-quick preset (MLP and CNN students): each optimiser step costs a fixed overhead
# plus forward and backward passes (about 3x the forward FLOPs per sample).
STEP_OVERHEAD_S = 7e-4
TRAIN_FLOPS_PER_S = 1.0e9
RUN_OVERHEAD_S = 4.0  # loading, evaluation, measurement and exports of one run


# ------------------------------------------------------------------------------- models


def model_summary(spec, input_shape, num_classes: int) -> dict:
    """Parameters, FLOPs per sample and fp32 bytes of a model spec, built but not trained.

    The byte figure is 4 bytes per parameter (the .safetensors file adds a small header), so it
    is labelled an estimate; a trained run's page shows the real file size.
    """
    from .measure.compute import count_flops
    from .models import build_model, count_params, describe_spec, normalise_spec

    spec = normalise_spec(spec)
    model = build_model(spec, tuple(input_shape), num_classes)
    params = count_params(model)
    try:
        flops = count_flops(model, tuple(input_shape))["flops"]
        flops_reason = None
    except Exception as exc:  # an op the counter does not know: say so rather than print 0
        flops, flops_reason = None, f"{type(exc).__name__}: {exc}"[:200]
    return {"spec": spec, "label": describe_spec(spec), "params": params, "flops": flops,
            "flops_reason": flops_reason, "fp32_bytes_estimate": 4 * params}


def ratio(a, b) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or not b:
        return None
    return a / b


def compare_to_teacher(student: dict, teacher: dict) -> dict:
    """How much smaller a student is: teacher / student for params and FLOPs (x times)."""
    return {"compression": ratio(teacher.get("params"), student.get("params")),
            "flops_reduction": ratio(teacher.get("flops"), student.get("flops"))}


# ------------------------------------------------------------------------------- time estimate


def estimate_train_seconds(flops_per_sample: float | None, n_train: int, epochs: int, batch_size: int,
                           teacher_flops: float | None = None, threads: int = 1) -> float:
    """Seconds the training loop of one run should take at the default speeds above.

    `teacher_flops` is the teacher's forward cost per sample when the method runs the teacher on
    every batch (feature methods, augmentation); cached logits cost nothing.
    """
    steps = math.ceil(n_train / max(1, min(batch_size, n_train))) * epochs
    work = 3.0 * (flops_per_sample or 0.0) + (teacher_flops or 0.0)
    rate = TRAIN_FLOPS_PER_S * max(1, threads)
    return steps * STEP_OVERHEAD_S + work * n_train * epochs / rate


def estimate_runs(configs: list[dict], n_train: int, summaries: dict[str, dict], skip: set[str] = frozenset(),
                  factor: float = 1.0, workers: int = 1, threads: int = 1) -> dict:
    """A rough time estimate for a list of run configs (from `config.expand`).

    `summaries` maps a model spec (as JSON, see `spec_key`) to its `model_summary`; `skip` are
    run hashes already done (reused, they cost nothing); `factor` scales the default speeds
    (see `calibration`). Returns per-run seconds, the serial total and the wall time with
    `workers` runs side by side (the teacher first: every student waits for it).
    """
    from .config import run_hash
    from .methods import EMBEDDING, FEATURES, METHODS

    per_run, teacher_s, students_s = [], 0.0, 0.0
    for cfg in configs:
        h = run_hash(cfg)
        if h in skip:
            per_run.append({"hash": h, "seconds": 0.0, "reused": True})
            continue
        summary = summaries.get(spec_key(cfg["model"])) or {}
        t = cfg.get("train") or {}
        teacher_flops = None
        method = METHODS.get(cfg["method"]["name"]) if cfg["method"]["name"] in METHODS else None
        if cfg.get("teacher") and method is not None and method.uses_teacher and (
                method.needs in (EMBEDDING, FEATURES) or t.get("augment")):
            teacher_flops = (summaries.get(spec_key(cfg["teacher"]["model"])) or {}).get("flops")
        seconds = factor * estimate_train_seconds(summary.get("flops"), n_train, int(t.get("epochs", 30)),
                                                  int(t.get("batch_size", 64)), teacher_flops, threads) + RUN_OVERHEAD_S
        per_run.append({"hash": h, "seconds": seconds, "reused": False})
        if cfg["role"] == "student":
            students_s += seconds
        else:
            teacher_s += seconds
    return {"runs": per_run, "serial_seconds": teacher_s + students_s,
            "wall_seconds": teacher_s + students_s / max(1, workers), "factor": factor}


def spec_key(spec) -> str:
    from .models import normalise_spec

    return json.dumps(normalise_spec(spec), sort_keys=True)


def calibration(pairs: list[tuple[float, float]]) -> tuple[float, int]:
    """Median of actual / predicted training seconds over finished runs: (factor, runs used).
    Without usable runs the factor is 1 (the default speeds)."""
    ratios = [a / p for p, a in pairs if p and p > 0 and a is not None and a == a and a > 0]
    if not ratios:
        return 1.0, 0
    return float(np.median(ratios)), len(ratios)


# ------------------------------------------------------------------------------- data preview


def data_preview(name: str, knobs: dict | None = None, per_class: int = 2, seed: int = 0) -> dict:
    """What a data set looks like: sizes, class counts per split and a few training samples.

    Raises the data set's own DistillError (a message for the page) when it cannot load.
    """
    from .data import load_dataset

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


# ------------------------------------------------------------------------------- predictions


def _weights_of(folder: Path) -> Path | None:
    w = folder / "weights.safetensors"
    return w if w.is_file() else None


def teacher_weights(config: dict, home: str | Path) -> Path | None:
    """Where the weights of a run's teacher are: the teacher cache, else the teacher run's folder."""
    from .config import run_hash

    teacher = config.get("teacher")
    if not teacher:
        return None
    from .engine.runner import cache_key

    home = Path(home)
    keys = {run_hash(teacher), cache_key(teacher)}
    for h in keys:
        for folder in (home / "teachers" / h, home / "runs" / h):
            w = _weights_of(folder)
            if w is not None:
                return w
    return None


def sample_logits(config: dict, home: str | Path, n: int = 8, seed: int = 0, split: str = "test",
                  weights: str | Path | None = None) -> dict:
    """Logits of a finished run's model (and of its teacher) on `n` samples of `split`.

    Inference only: the run's saved weights are loaded into a freshly built model. Returns the
    inputs, labels, class names, "student" logits, and "teacher" logits or None with
    "teacher_reason". Raises FileNotFoundError when the run's own weights are gone.
    """
    from .teaching import load_run_model
    from .config import run_hash
    from .engine.evaluate import predict_logits

    home = Path(home)
    w = Path(weights) if weights else _weights_of(home / "runs" / run_hash(config))
    if w is None or not w.is_file():
        raise FileNotFoundError(f"the run's weights are not in {home / 'runs' / run_hash(config)} (deleted?)")
    model, data = load_run_model(config, w)
    x, y = data.split(split)
    idx = np.random.default_rng(seed).choice(len(y), size=min(n, len(y)), replace=False)
    xs = x[torch.as_tensor(idx)]
    info = data.info
    out = {"x": xs.numpy(), "y": y[torch.as_tensor(idx)].numpy(), "index": idx.tolist(), "kind": info.kind,
           "input_shape": list(info.input_shape), "class_names": list(info.class_names),
           "student": predict_logits(model, xs).numpy(), "teacher": None, "teacher_reason": None}
    if config.get("teacher"):
        tw = teacher_weights(config, home)
        if tw is None:
            out["teacher_reason"] = "the teacher's weights are no longer stored (its run or cache entry was deleted)"
        else:
            teacher, _ = load_run_model(config["teacher"], tw)
            out["teacher"] = predict_logits(teacher, xs).numpy()
    else:
        out["teacher_reason"] = "this run is the teacher itself"
    return out


# ------------------------------------------------------------------------------- progress


def progress_fraction(status: str, event: dict | None) -> float:
    """How far a run is, 0..1, from its status and latest progress event."""
    if status == "done":
        return 1.0
    if not event or status != "running":
        return 0.0
    if event.get("steps"):
        return max(0.0, min(0.99, event.get("step", 0) / event["steps"]))
    if event.get("epochs"):
        return max(0.0, min(0.99, event.get("epoch", 0) / event["epochs"]))
    return 0.0


def progress_text(status: str, event: dict | None) -> str:
    """A short line for a run's progress: 'student epoch 12/30, val 0.953'."""
    if status != "running":
        return status
    if not event or event.get("phase") == "start":
        return "starting"
    bits = [str(event.get("phase", ""))]
    if event.get("epochs"):
        bits.append(f"epoch {event.get('epoch', 0)}/{event['epochs']}")
    if event.get("val_accuracy") is not None:
        bits.append(f"val {event['val_accuracy']:.3f}")
    return " ".join(b for b in bits if b)


def curves_from_events(events: list[dict]) -> dict:
    """Live curves from progress events: loss per step and validation accuracy per epoch,
    separately for each phase (a student run may train its teacher first)."""
    out: dict[str, dict] = {}
    for e in events:
        phase = e.get("phase")
        if phase in (None, "start") or "step" not in e:
            continue
        c = out.setdefault(phase, {"step": [], "loss": [], "epoch": [], "val_accuracy": []})
        losses = e.get("losses") or {}
        if "loss" in losses:
            c["step"].append(e["step"])
            c["loss"].append(losses["loss"])
        if e.get("epoch_end") and e.get("val_accuracy") is not None:
            c["epoch"].append(e["epoch"])
            c["val_accuracy"].append(e["val_accuracy"])
    return out
