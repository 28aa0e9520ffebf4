"""Before anything runs: model sizes and FLOPs, and a rough time estimate for a launch.

Figures a helper cannot obtain are None (with a reason), never 0.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from .constants import SCRATCH, STUDENT
from .measure.compute import count_flops
from .methods import EMBEDDING, FEATURES, METHODS
from .models import build_model, count_params, describe_spec, is_estimator, is_network, normalise_spec
from .run_config import RunConfig

# Rough speeds for the run-time estimate, measured on one thread of a shared 2-core CPU with
# the digits-quick preset (MLP and CNN students): each optimiser step costs a fixed overhead
# plus forward and backward passes (about 3x the forward FLOPs per sample).
STEP_OVERHEAD_S = 7e-4
TRAIN_FLOPS_PER_S = 1.0e9
RUN_OVERHEAD_S = 4.0  # loading, evaluation, measurement and exports of one run
CALIBRATION_RUNS = 50  # the latest finished runs of a data set that calibrate the speeds


# -- models ----------------------------------------------------------------------------------------


def model_summary(spec, input_shape, num_classes: int) -> dict:
    """Parameters, FLOPs per sample and fp32 bytes of a model spec, built but not trained.

    The byte figure is 4 bytes per parameter (the .safetensors file adds a small header), so it
    is labelled an estimate; a trained run's page shows the real file size.
    """
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


def spec_key(spec) -> str:
    """A model spec as the key of `estimate_runs`'s summaries (a teacher's that only describes
    it, e.g. an ONNX file's, as it is)."""
    return json.dumps(normalise_spec(spec) if is_network(spec) or is_estimator(spec) else spec, sort_keys=True)


def ratio(a, b) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or not b:
        return None
    return a / b


def compare_to_teacher(student: dict, teacher: dict) -> dict:
    """How much smaller a student is: teacher / student for params and FLOPs (x times)."""
    return {"compression": ratio(teacher.get("params"), student.get("params")),
            "flops_reduction": ratio(teacher.get("flops"), student.get("flops"))}


# -- time -----------------------------------------------------------------------------------------


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


def estimate_runs(runs: list[RunConfig], n_train: int, summaries: dict[str, dict], skip: set[str] = frozenset(),
                  factor: float = 1.0, workers: int = 1, threads: int = 1) -> dict:
    """A rough time estimate for an experiment's runs (from `config.expand`).

    `summaries` maps a model spec (see `spec_key`) to its `model_summary`; `skip` are run hashes
    already done (reused, they cost nothing); `factor` scales the default speeds (see
    `calibration`). Returns per-run seconds, the serial total and the wall time with `workers`
    runs side by side (the teacher first: every student waits for it).
    """
    per_run, teacher_s, students_s = [], 0.0, 0.0
    for run in runs:
        if run.hash in skip:
            per_run.append({"hash": run.hash, "seconds": 0.0, "reused": True})
            continue
        if not is_network(run.model):  # fitted, loaded or combined, not trained epoch by epoch: its overhead
            per_run.append({"hash": run.hash, "seconds": RUN_OVERHEAD_S, "reused": False})
            teacher_s += RUN_OVERHEAD_S
            continue
        summary = summaries.get(spec_key(run.model)) or {}
        t = run.train
        teacher_flops = None
        method = METHODS.get(run.method_name)
        if run.teacher and method.uses_teacher and (method.needs in (EMBEDDING, FEATURES) or t.get("augment")):
            teacher_flops = (summaries.get(spec_key(run.teacher.model)) or {}).get("flops")
        seconds = factor * estimate_train_seconds(summary.get("flops"), n_train, int(t.get("epochs", 30)),
                                                  int(t.get("batch_size", 64)), teacher_flops, threads) + RUN_OVERHEAD_S
        per_run.append({"hash": run.hash, "seconds": seconds, "reused": False})
        if run.role == STUDENT:
            students_s += seconds
        else:
            teacher_s += seconds
    return {"runs": per_run, "serial_seconds": teacher_s + students_s,
            "wall_seconds": teacher_s + students_s / max(1, workers), "factor": factor}


def calibration(pairs: list[tuple[float, float]]) -> tuple[float, int]:
    """Median of actual / predicted training seconds over finished runs: (factor, runs used).
    Without usable runs the factor is 1 (the default speeds)."""
    ratios = [a / p for p, a in pairs if p and p > 0 and a is not None and a == a and a > 0]
    if not ratios:
        return 1.0, 0
    return float(np.median(ratios)), len(ratios)


def calibration_pairs(frame: pd.DataFrame, dataset: str, n_train: int) -> list[tuple[float, float]]:
    """(predicted, actual) training seconds of the latest finished runs of a data set, from the
    results frame (Store.results_frame)."""
    if frame.empty or "measure.compute.flops" not in frame:
        return []
    same = frame[(frame.dataset == dataset) & frame["measure.compute.flops"].notna() & frame.train_seconds.notna()]
    pairs = []
    for _, row in same.tail(CALIBRATION_RUNS).iterrows():
        pred = estimate_train_seconds(row["measure.compute.flops"], n_train, int(row.epochs_run or 1),
                                      int(row.get("train.batch_size", 64) or 64))
        pairs.append((pred, row.train_seconds))
    return pairs


def launch_estimate(runs: list[RunConfig], done: set[str], frame: pd.DataFrame, n_train: int,
                    summaries: dict[str, dict], workers: int = 1, threads: int = 1) -> dict:
    """What a launch of these runs means: how many teachers, scratch baselines and distilled
    students, how many are already `done` (hashes; reused, not repeated), and the rough time,
    its default speeds calibrated on the finished runs of the same data set in `frame`.

    Returns {runs, teachers, baselines, distilled, reused, wall_seconds, serial_seconds,
    calibrated_on} (calibrated_on: finished runs used, 0 for the default speeds).
    """
    teachers = sum(not r.is_student for r in runs)
    baselines = sum(r.is_student and r.method_name == SCRATCH for r in runs)
    dataset = runs[0].dataset["name"] if runs else ""
    factor, used = calibration(calibration_pairs(frame, dataset, n_train))
    est = estimate_runs(runs, n_train, summaries, skip=done, factor=factor, workers=workers, threads=threads)
    return {"runs": len(runs), "teachers": teachers, "baselines": baselines, "distilled": len(runs) - teachers - baselines,
            "reused": sum(r.hash in done for r in runs), "wall_seconds": est["wall_seconds"],
            "serial_seconds": est["serial_seconds"], "calibrated_on": used}
