"""Finished runs as one flat pandas frame: the single source for every plot.

One row per run. The fixed columns below are always present with these types (numbers are
float64 with NaN where unavailable, never 0). Then every scalar leaf of the run's nested
results is added under a dotted name:

    measure.<...>   result["measure"]  (sizes, FLOPs, latency, exports), e.g. measure.size.fp32_bytes
    energy.<...>    result["energy"]   (CodeCarbon per phase), e.g. energy.student_training.kwh
    phases.<...>    result["phases"]   e.g. phases.student_training.seconds
    metrics.<...>   any metric beyond the fixed ones
    train.<...>     the run's training settings, e.g. train.epochs, train.lr
    method.<...>    method knobs other than temperature and alpha
    dataset.<...>   data-set knobs

A dotted column whose values are all numbers (or booleans) is float64; otherwise text.
Lists (histories, confusion matrices, reliability tables) are not flattened: read them from
`Store.get_run(id)["result"]`.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..errors import DistillError
from ..labels import method_label, model_label
from ..run_config import RunConfig
from ..teachers import teacher_kind

# name -> (dtype, meaning)
RESULT_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("int64", "run id"),
    "experiment_id": ("Int64", "the experiment (the one asked for, else the first that holds the run)"),
    "hash": ("str", "content hash of the run config; artifacts in <home>/runs/<hash>/"),
    "role": ("str", "teacher, assistant or student"),
    "status": ("str", "done unless asked otherwise"),
    "label": ("str", "short human name of the run"),
    "dataset": ("str", "data set name"),
    "model": ("str", "the trained model's short name (named size or arch(knobs))"),
    "arch": ("str", "the trained model's architecture"),
    "teacher": ("str", "the teacher's short name (empty for a teacher run)"),
    "teacher_arch": ("str", "the teacher's architecture"),
    "teacher_hash": ("str", "the teacher run's hash"),
    "teacher_kind": ("str", "the kind of teacher the run is or learns from: trained, weights, distilled, sklearn, onnx, "
                            "outputs or ensemble"),
    "members": ("str", "an ensemble's members: their run hashes, comma-separated (empty for other runs)"),
    "method": ("str", "distillation method (scratch = the baseline)"),
    "method_label": ("str", "method with its temperature and alpha"),
    "temperature": ("float64", "softmax temperature (NaN when the method has none)"),
    "alpha": ("float64", "weight of the distillation term (NaN when the method has none)"),
    "seed": ("float64", "random seed"),
    "accuracy": ("float64", "test accuracy"),
    "top5_accuracy": ("float64", "test top-5 accuracy (NaN with fewer than 10 classes)"),
    "nll": ("float64", "test negative log-likelihood"),
    "ece": ("float64", "expected calibration error (15 bins)"),
    "errors": ("float64", "misclassified test samples"),
    "n_test": ("float64", "test samples"),
    "teacher_agreement": ("float64", "share of test samples where student and teacher agree"),
    "teacher_kl": ("float64", "KL(teacher || student) on the test set at T=1"),
    "teacher_accuracy": ("float64", "the teacher's test accuracy"),
    "teacher_cached": ("float64", "1 when the teacher came from the cache, 0 when trained by this run"),
    "params": ("float64", "trainable parameters of the trained model"),
    "train_seconds": ("float64", "seconds in the training loop"),
    "run_seconds": ("float64", "seconds the whole run took in its worker"),
    "epochs_run": ("float64", "epochs trained (fewer than asked when stopped early)"),
    "best_epoch": ("float64", "epoch whose weights were kept"),
    "best_val_accuracy": ("float64", "validation accuracy at the best epoch"),
    "device": ("str", "where it trained"),
    "threads": ("float64", "torch CPU threads used"),
    "attempts": ("float64", "times a worker started the run"),
    "created": ("float64", "unix time the run was queued"),
    "started": ("float64", "unix time a worker started it"),
    "finished": ("float64", "unix time it ended"),
}
_METRIC_COLUMNS = ("accuracy", "top5_accuracy", "nll", "ece", "errors", "n_test", "teacher_agreement", "teacher_kl")
_NESTED = ("measure", "energy", "phases")


def _scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def flatten(obj, prefix: str, out: dict) -> None:
    """Scalar leaves of nested dicts as {"a.b.c": value}; lists are skipped."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}", out)
    elif _scalar(obj) and obj is not None:
        out[prefix] = obj


def _num(v):
    if v is None or isinstance(v, str):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _row(r, exps: dict, experiment: int | None) -> tuple[dict, dict]:
    cfg = json.loads(r["config"])
    res = json.loads(r["result"]) if r["result"] else {}
    metrics = res.get("metrics") or {}
    train = res.get("train") or {}
    method = cfg.get("method") or {}
    teacher = cfg.get("teacher") or {}
    ids = exps.get(r["id"], [])
    row = {
        "run_id": r["id"],
        "experiment_id": experiment if experiment is not None else (ids[0] if ids else None),
        "hash": r["hash"], "role": r["role"], "status": r["status"], "label": r["label"],
        "dataset": (cfg.get("dataset") or {}).get("name"),
        "model": model_label(cfg.get("model")), "arch": (cfg.get("model") or {}).get("arch"),
        "teacher": model_label(teacher.get("model")) if teacher else None,
        "teacher_arch": (teacher.get("model") or {}).get("arch") if teacher else None,
        "teacher_hash": res.get("teacher_hash"),
        "method": method.get("name"), "method_label": method_label(method),
        "temperature": method.get("temperature"), "alpha": method.get("alpha"), "seed": cfg.get("seed"),
        **{k: metrics.get(k) for k in _METRIC_COLUMNS},
        "teacher_accuracy": res.get("teacher_accuracy"),
        "teacher_cached": res.get("teacher_cached"),
        "params": res.get("params"),
        "train_seconds": train.get("seconds"),
        "run_seconds": (res["finished"] - res["started"]) if res.get("finished") and res.get("started") else None,
        "epochs_run": len(train.get("history") or []) if train else None,
        "best_epoch": train.get("best_epoch"), "best_val_accuracy": train.get("best_val_accuracy"),
        "device": train.get("device"), "threads": train.get("threads"),
        "attempts": r["attempts"], "created": r["created"], "started": r["started"], "finished": r["finished"],
    }
    try:
        run = RunConfig.from_dict(cfg)
    except DistillError:  # a config another version of the lab wrote: its kind is unknown here
        run = None
    row["teacher_kind"] = teacher_kind(run) if run else None
    row["members"] = ",".join(m.hash for m in run.members) if run and run.members else None
    if row["teacher_hash"] is None and teacher and run:  # a run without a result yet
        row["teacher_hash"] = run.teacher_hash
    extra: dict = {}
    for key in _NESTED:
        if isinstance(res.get(key), dict):
            flatten(res[key], key, extra)
    for k, v in metrics.items():
        if k not in _METRIC_COLUMNS and k not in RESULT_COLUMNS:
            flatten(v, f"metrics.{k}", extra)
    flatten(cfg.get("train") or {}, "train", extra)
    flatten({k: v for k, v in method.items() if k not in ("name", "temperature", "alpha")}, "method", extra)
    flatten({k: v for k, v in (cfg.get("dataset") or {}).items() if k != "name"}, "dataset", extra)
    flatten(cfg.get("transfer") or {}, "transfer", extra)  # e.g. transfer.omit_class: not the same run as without
    return row, extra


def build_frame(rows, exps: dict, experiment: int | None = None):
    fixed, extras = [], []
    for r in rows:
        a, b = _row(r, exps, experiment)
        fixed.append(a)
        extras.append(b)
    cols = {}
    for name, (dtype, _) in RESULT_COLUMNS.items():
        values = [f[name] for f in fixed]
        if dtype == "float64":
            cols[name] = np.array([_num(v) for v in values], dtype="float64")
        elif dtype == "int64":
            cols[name] = np.array(values, dtype="int64")
        elif dtype == "Int64":
            cols[name] = pd.array(values, dtype="Int64")
        else:
            cols[name] = pd.Series(values, dtype="object")
    names = sorted({k for e in extras for k in e})
    for name in names:
        values = [e.get(name) for e in extras]
        present = [v for v in values if v is not None]
        if all(isinstance(v, (bool, int, float)) for v in present):
            cols[name] = np.array([_num(v) for v in values], dtype="float64")
        else:
            cols[name] = pd.Series([None if v is None else str(v) for v in values], dtype="object")
    frame = pd.DataFrame({k: (v.values if isinstance(v, pd.Series) else v) for k, v in cols.items()})
    for name, (dtype, _) in RESULT_COLUMNS.items():
        if dtype == "str":
            frame[name] = frame[name].astype("object")
    return frame
