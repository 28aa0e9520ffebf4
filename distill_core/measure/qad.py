"""QAD's int8 model: a trained fp32 student's static int8 graph as a module to fine-tune, and
the deployed file afterwards, measured beside the fp32 student, its PTQ and its dynamic int8.

    student = prepare(model, data, folder, settings, seed)   # export, calibrate, simulate
    train_model(student.sim, ...)                             # the engine fine-tunes the simulation
    student.trained_fp32()                                    # its fp32 weights, as the lab's architecture
    measure_qad(student, ...)                                 # (in measure_run) the deployed file's figures

The static int8 graph is the one the static variant of the fp32 student deploys (same exporter,
calibration samples and method), its speed edits (int8.SPEED_EDITS: the first convolution in
float, float logits, the pooling folded into the classifier) made as that variant makes them,
each where its check against the fp32 start passes: QAD trains the network its file runs, and
the file runs as fast as static's. Before fine-tuning, the simulation is PTQ.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from .. import paths
from ..data import DataBundle
from ..errors import ModelError
from ..evaluate import predict_logits
from .export import export_onnx, fold_batchnorm, unfold_batchnorm
from .int8 import (CALIBRATION_BATCH, SPEED_EDITS, calibrated_qdq, calibration_sample, deployable, measure_variant,
                   quantize_dynamic_int8, static_record)
from .latency import ort_predict, ort_session
from .qdq_sim import QDQSim

START_ONNX, PTQ_ONNX = "qad-start.onnx", "qad-ptq.raw.onnx"  # working files in the run folder, removed after


@dataclass
class Int8Student:
    sim: QDQSim  # what the engine trains
    start: nn.Module  # the fp32 student it starts from (a copy: never changed)
    calibration: np.ndarray
    settings: dict
    seed: int
    folder: Path
    pairs: list = field(default_factory=list)  # batch norms folded into convolutions
    export: dict = field(default_factory=dict)  # the fp32 export of the start
    dynamic: dict = field(default_factory=dict)  # its dynamic int8, made before training
    edits: list = field(default_factory=list)  # the SPEED_EDITS made to the graph it trains
    seconds: float = 0.0

    def trained_fp32(self) -> tuple[nn.Module, str]:
        """The fine-tuned fp32 weights as the lab's architecture (batch norm unfolded again), and
        what they are: where the exporter's tensor names do not map back onto the architecture
        (the TorchScript exporter may merge equal tensors), the start's weights, saying so."""
        try:
            return unfold_batchnorm(self.start, self.pairs, self.sim.float_weights()), "fine-tuned by QAD"
        except (KeyError, RuntimeError) as exc:
            return copy.deepcopy(self.start), f"those it started from (the int8 graph's names do not map back: {exc})"


def prepare(model: nn.Module, data: DataBundle, folder: str | Path, settings: dict, seed: int,
            learn_ranges: bool = True) -> Int8Student:
    """The static int8 simulation of a trained fp32 `model` (left unchanged). Raises ModelError
    when the model cannot be exported or its int8 graph simulated."""
    t = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = copy.deepcopy(model).cpu().eval()
    check = data.x_test[:256].contiguous()
    export = export_onnx(start, check[:2], folder / START_ONNX, check, settings["threads"], settings["exporter"])
    if not export.get("ok"):
        raise ModelError(f"QAD needs the fp32 student's ONNX export, which failed: {export.get('reason')}")
    calibration = calibration_sample(data.x_train, settings["calibration_samples"], seed)
    calibrated_qdq(folder / START_ONNX, folder / PTQ_ONNX, calibration, settings["calibration_method"])
    edits = deployable(folder / PTQ_ONNX, folder / PTQ_ONNX, calibration[: 2 * CALIBRATION_BATCH],
                       fp32=folder / START_ONNX, only=SPEED_EDITS)
    import onnx
    from onnx import numpy_helper

    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(folder / START_ONNX)).graph.initializer}
    sim = QDQSim(onnx.load(str(folder / PTQ_ONNX)), fp32, learn_ranges)
    _, pairs = fold_batchnorm(start)
    dynamic = quantize_dynamic_int8(folder / START_ONNX, folder / paths.int8_variant("dynamic"))
    os.unlink(folder / START_ONNX)
    return Int8Student(sim, start, calibration, settings, seed, folder, pairs, export, dynamic, edits,
                       time.perf_counter() - t)


def measure_qad(student: Int8Student, threads: int, s: dict, data: DataBundle, xs: dict, teacher_logits_test,
                latency: dict, parts: dict) -> tuple[dict, dict]:
    """The fine-tuned int8 file (paths.INT8) measured beside the fp32 student it started from,
    with the start's static (PTQ) and dynamic int8 as the other variants; (deployed, variants)."""
    folder = student.folder
    fp32_pred = predict_logits(student.start, data.x_test).argmax(1).numpy()
    sim_pred = predict_logits(student.sim, data.x_test).argmax(1).numpy()
    check = student.calibration[: 2 * CALIBRATION_BATCH]
    variants = {}
    t = time.perf_counter()
    try:
        raw = folder / "qad.raw.onnx"
        student.sim.write(raw)
        edits = student.edits + deployable(raw, folder / paths.INT8, check)
        os.unlink(raw)
        qad = {"ok": True, "variant": "qad", "path": str(folder / paths.INT8), "bytes": os.path.getsize(folder / paths.INT8),
               "method": "quantisation-aware distillation of the static QDQ graph (weights and scales trained)",
               "weights": "int8, per output channel, symmetric", "activations": "uint8, per tensor, ranges "
               + ("learned" if any(p.requires_grad for p in student.sim.log_scales.values()) else "calibrated"),
               "calibration": {"method": s["calibration_method"], "samples": int(len(student.calibration)),
                               "split": "train", "seed": student.seed}, "edits": edits}
        qad = measure_variant(qad, threads, s, data, xs, fp32_pred, teacher_logits_test)
    except Exception as exc:
        qad = {"ok": False, "variant": "qad", "reason": f"the QAD int8 file could not be written or run: "
                                                        f"{type(exc).__name__}: {exc}"[:400]}
    if qad.get("ok"):
        ort_pred = _ort_pred(qad["path"], threads, data)
        qad["simulated_accuracy"] = float((sim_pred == data.y_test.numpy()).mean())
        qad["agreement_with_simulation"] = float((ort_pred == sim_pred).mean())
    variants["qad"] = qad
    parts["int8_qad"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        ptq_path = folder / paths.int8_variant("static")
        edits = student.edits + deployable(folder / PTQ_ONNX, ptq_path, check)
        variants["static"] = measure_variant(static_record(ptq_path, student.calibration, s["calibration_method"],
                                                           student.seed, edits), threads, s, data, xs, fp32_pred,
                                             teacher_logits_test)
        os.unlink(folder / PTQ_ONNX)
    except Exception as exc:
        variants["static"] = {"ok": False, "variant": "static", "reason": f"{type(exc).__name__}: {exc}"[:400]}
    parts["int8_static"] = time.perf_counter() - t
    t = time.perf_counter()
    variants["dynamic"] = (measure_variant(dict(student.dynamic), threads, s, data, xs, fp32_pred, teacher_logits_test)
                           if student.dynamic.get("ok") else student.dynamic)
    parts["int8_dynamic"] = time.perf_counter() - t
    deployed = dict(qad)
    deployed["chosen_by"] = "method qad: the fine-tuned int8 model"
    for k in ("static", "dynamic"):
        if variants[k].get("ok"):
            deployed[f"{k}_accuracy"] = variants[k]["accuracy"]
    if "static_accuracy" in deployed:
        deployed["ptq_accuracy"] = deployed["static_accuracy"]
    if s["latency"] and deployed.get("ok"):
        latency["onnx_int8"], latency["onnx_int8_batch"] = deployed.pop("latency"), deployed.pop("latency_batch")
        deployed["latency_ms"] = latency["onnx_int8"].get("median_ms")
    return deployed, variants


def _ort_pred(path, threads: int, data: DataBundle) -> np.ndarray:
    return ort_predict(ort_session(path, threads), data.x_test.numpy()).argmax(1)
