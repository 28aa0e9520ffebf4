"""Running one run: load the data, get the teacher, train, evaluate, save, measure.

`run_one` needs only what it is handed: the run (a `RunConfig`), a home folder whose teacher
cache it reads and fills (teachers.py), and the folder its files go to (by default
`<home>/runs/<hash>/`, see paths.py). It returns the result, also written as result.json, so an
executor whose workers do not share the home folder can run it in a scratch home seeded with
the teacher's cache entry and ship the folder back.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from .. import paths
from ..constants import STUDENT, TEACHER
from ..data import DataBundle
from ..data.cache import load_data
from ..errors import ModelError
from ..evaluate import evaluate_logits, predict_logits
from ..files import write_json
from ..measure.hook import RunMeasurement
from ..methods import make_method
from ..models import count_params, load_weights, save_weights
from ..run_config import RunConfig
from ..teachers import TeacherCache, TeacherOutputs, build, kind_of, obtain
from .train import train_model

ProgressFn = Callable[[dict], None]


def transfer_set(data: DataBundle, teacher_train_logits: torch.Tensor, transfer: dict | None) -> tuple[DataBundle, torch.Tensor]:
    """The student's data: with {"omit_class": k}, class k leaves its training and validation
    splits (and the matching teacher logits); the test split keeps it (Hinton et al. 2015, sec. 3)."""
    k = (transfer or {}).get("omit_class")
    if k is None:
        return data, teacher_train_logits
    keep, keep_val = data.y_train != k, data.y_val != k
    raw = data.raw.select(keep, keep_val) if data.raw is not None else None
    return (dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                                x_val=data.x_val[keep_val], y_val=data.y_val[keep_val], raw=raw), teacher_train_logits[keep])


def start_model(home: Path, config: RunConfig, data: DataBundle):
    """The trained network of the run `config` starts from, from its run folder."""
    path = paths.run_folder(home, config.start.hash) / paths.WEIGHTS
    if not path.is_file():
        raise ModelError(f"this run starts from run {config.start.hash[:12]}, whose weights are not in {path.parent}: "
                         "it must finish first (in this home folder)")
    return load_weights(build(config.start, data), path).eval()


def _teacher_figures(config: RunConfig, teacher: TeacherOutputs) -> tuple[dict, dict | None]:
    """What a teacher run records about its kind, and how to measure a teacher without a network
    (through its ONNX file, or not at all: `attach`'s `onnx`)."""
    meta = teacher.meta
    about = {"kind": kind_of(config), **{k: meta[k] for k in ("outputs_taken_as", "members", "combine", "estimator",
                                                               "opsets", "producer", "fixed_batch") if k in meta}}
    if teacher.model is not None:
        return about, None
    if teacher.onnx is not None:
        made_by = "skl2onnx" if about["kind"] == "sklearn" else "given"
        return about, {"path": str(teacher.onnx), "made_by": made_by, "bytes": meta.get("onnx_bytes")}
    why = ("an ensemble's cost is its members' costs: each member's run measures its own" if config.members
           else "a teacher given as a file of outputs has no model to measure")
    return about, {"reason": why}


def run_one(config: RunConfig, home: str | Path | None = None, on_progress: ProgressFn | None = None,
            should_stop: Callable[[], bool] | None = None, *, folder: str | Path | None = None,
            measure: dict | None = None) -> dict:
    """Run one run to the end and return its result (also written to its folder).

    `measure`: measurement settings from the executor (e.g. the country for CO2), under the run
    config's own; a bad setting fails here, before any training.
    """
    home = paths.home_dir(home)
    folder = Path(folder) if folder else paths.run_folder(home, config.hash)
    folder.mkdir(parents=True, exist_ok=True)
    measurement = RunMeasurement(folder, config.measure, measure)
    rec = measurement.recorder
    cache = TeacherCache(home)
    int8_student = None
    started = time.time()
    with rec.phase("data", energy=False):
        data = load_data(config.dataset)
    result: dict = {"hash": config.hash, "role": config.role, "config": config.to_dict(), "started": started}
    onnx = None  # how a teacher without a network is measured
    if config.role == TEACHER:
        teacher = obtain(config, cache, rec, on_progress, should_stop)
        model, metrics, train = teacher.model, evaluate_logits(teacher.logits["test"], data.y_test), teacher.meta.get("train")
        teacher_test = None
        result["teacher"], onnx = _teacher_figures(config, teacher)
        if (onnx or {}).get("made_by") == "skl2onnx":  # a fitted model's only file: downloadable from its run too
            onnx["path"] = shutil.copyfile(onnx["path"], folder / paths.ONNX)
    else:
        teacher = obtain(config.teacher, cache, rec, on_progress, should_stop)
        result.update(teacher_hash=config.teacher_hash, teacher_accuracy=teacher.meta["test_accuracy"],
                      teacher_kind=kind_of(config.teacher))
        teacher_test = teacher.logits["test"]
        method = make_method(config.method_name, **config.method_knobs)
        model = build(config, data)
        start = start_model(home, config, data) if config.start is not None else None
        if start is not None:
            model.load_state_dict(start.state_dict())
        trained = model
        if method.trains_int8:  # QAD: the static int8 simulation of the start is what trains
            if start is None:
                raise ModelError(f"method {method.name} fine-tunes a trained student: its run config needs a start")
            with rec.phase("int8_simulation", energy=False):
                int8_student = measurement.int8_student(start, data, config.seed, method.ranges == "learned")
            trained = int8_student.sim
        s_data, s_logits = transfer_set(data, teacher.logits["train"], config.transfer)
        t_model = teacher.model
        if method.distils_from_start:
            t_model, s_logits = start, predict_logits(start, s_data.x_train)
        before = evaluate_logits(predict_logits(trained, data.x_test), data.y_test) if int8_student else None
        with rec.phase("student_training"):
            train = train_model(trained, s_data, config.train, method, teacher=t_model, teacher_logits=s_logits,
                                seed=config.seed, phase=STUDENT, on_progress=on_progress,
                                should_stop=should_stop).as_dict()
        with rec.phase("evaluation", energy=False):  # milliseconds: a tracker would cost more than it measures
            device = next(trained.parameters()).device  # where it trained
            metrics = evaluate_logits(predict_logits(trained, data.x_test, device=device), data.y_test, teacher_test)
        trained.cpu()
        if int8_student is not None:  # the run's fp32 weights: QAD's, unfolded into the architecture
            model, fp32_weights = int8_student.trained_fp32()
            result["qad"] = {"start": config.start.hash, "start_accuracy": evaluate_logits(
                predict_logits(start, data.x_test), data.y_test)["accuracy"], "ptq_simulated_accuracy": before["accuracy"],
                "qad_simulated_accuracy": metrics["accuracy"], "kd_from": method.kd_from, "fp32_weights": fp32_weights}
        model = model.cpu()
    result["teacher_cached"] = teacher.cached
    artifacts = {"folder": str(folder)}
    if model is not None:
        artifacts["weights"] = str(save_weights(model, folder / paths.WEIGHTS))
    result.update({
        "metrics": metrics,
        "params": count_params(model) if model is not None else teacher.meta.get("params"),
        "train": train,
        "phases": rec.phases,
        "finished": time.time(),
        "artifacts": artifacts,
    })
    if on_progress is not None:  # a teacher's cache entry is written by now: its students need no more of it
        on_progress({"phase": "measuring", **({"teacher_cached": True} if config.role == TEACHER else {})})
    # Size, FLOPs, latency, inference energy, exports, int8, budgets, model card; never raises.
    measurement.attach(result, model, data, teacher_test, {**teacher.meta, "cached": teacher.cached}, home,
                       onnx=onnx, int8_student=int8_student)
    result["artifacts"].update({k: v for k, v in result["measure"].get("exports", {}).items() if v})
    result["finished"] = time.time()
    write_json(folder / paths.CONFIG, config.to_dict())
    write_json(folder / paths.RESULT, result)
    return result
