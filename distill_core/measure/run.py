"""Measure one trained model: size, FLOPs, latency, inference energy, exports, int8, budgets.

`measure_run` never raises for a measurement that fails: the part is recorded as
{"available": False, "reason": ...} (or an export as {"ok": False, "reason": ...}) and the
rest goes on, so a model one exporter cannot handle still gets its other figures.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import paths
from ..data import DataBundle
from ..evaluate import predict_logits
from ..models import save_weights
from .attempt import attempt, unavailable
from .budgets import check_budgets, load_profiles
from .card import write_model_card
from .compute import count_flops, file_bytes, param_counts
from .energy import energy_summary
from .export import export_onnx, export_program
from .int8 import measure_int8
from .qad import measure_qad
from .latency import batch_of, ort_latency, ort_session, torch_latency, torch_threads, with_throughput
from .phases import PhaseRecorder
from .settings import measure_settings
from .shared import shared_figures


def _off(what: str) -> dict:
    return {"available": False, "reason": f"turned off (measure.{what} = false)"}


def _inference_loop(time_batches, batch: int, settings, recorder, shared=None) -> dict:
    """Batched inference for `inference_seconds` (`time_batches(seconds)` times the calls),
    inside the recorder's "inference" phase: its energy divided by the predictions made is the
    energy per 1,000 predictions. With `shared` (measure/shared.py) the phase's reading is
    filed as "inference_phase" too."""
    with recorder.phase("inference") as entry:
        timing = time_batches(settings["inference_seconds"])
    predictions = timing["calls"] * batch
    entry["predictions"] = predictions
    energy = entry.get("energy")
    if energy and energy.get("available"):
        energy["predictions"] = predictions
        energy["kwh_per_1000"] = energy["kwh"] / predictions * 1000
    if shared is not None and (energy or {}).get("available"):
        shared.put("inference_phase", dict(entry))
    return with_throughput(timing, batch)


def _carried(shared, name: str, measure):
    """A shared figure another run measured, or `measure()`'s, filed for the next run."""
    figure = shared.get(name)
    if figure is None:
        figure = measure()
        shared.put(name, figure)
    return figure


def measure_run(model: nn.Module, data: DataBundle, folder: str | Path, config: dict | None = None,
                teacher_logits_test: torch.Tensor | None = None, settings: dict | None = None, *,
                recorder=None, weights_path: str | Path | None = None, home: str | Path | None = None,
                int8_student=None, shared_dir: str | Path | None = None, run: str | None = None) -> dict:
    """All measurements of `model` (moved to the CPU), files written into `folder`.

    Figures that depend only on the architecture (FLOPs, latency, inference energy) come from
    `shared_dir` when another run of it measured them (measure/shared.py; `run`: this run's
    hash, named in what it files); out["shared"] says which were carried and from whom.

    `int8_student` (measure.qad.Int8Student, for a QAD run): its fine-tuned int8 model is the
    deployed int8, measured beside the fp32 student it started from (not beside `model`).

    `recorder` (a PhaseRecorder) gets the "inference" phase with its energy; without one, a
    recorder of its own is used and its reading returned under "inference_energy".
    out["part_seconds"] says where the measuring time went.
    """
    start = time.perf_counter()
    s = measure_settings(settings)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if recorder is None:
        recorder = PhaseRecorder(energy=s["energy"], output_dir=folder, country=s["country"], measure_power_secs=s["power_secs"])
    model = model.cpu().eval()
    weights_path = Path(weights_path) if weights_path else folder / paths.WEIGHTS
    if not weights_path.is_file():
        save_weights(model, weights_path)
    x_test = data.x_test
    xs = {"one": x_test[:1].contiguous(), "batch": batch_of(x_test, s["throughput_batch"]), "check": x_test[:256].contiguous()}
    parts: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t = time.perf_counter()
        try:
            return attempt(fn, *args, **kwargs)
        finally:
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - t

    out: dict = {"settings": s, "input_shape": list(data.info.input_shape), "part_seconds": parts}
    exports: dict = {"weights": str(weights_path)}
    with torch_threads(s["threads"]) as threads, shared_figures(
            shared_dir, model, data.info.input_shape, threads, s, len(xs["batch"]), run) as (shared, shared_key):
        out["threads"] = threads
        out["size"] = {**param_counts(model), "fp32_bytes": file_bytes(weights_path)}
        out["compute"] = _carried(shared, "compute", lambda: timed("flops", count_flops, model, tuple(data.info.input_shape)))
        latency: dict = {"threads": threads}
        latency["torch"] = _carried(shared, "torch", lambda: timed(
            "torch_latency", torch_latency, model, xs["one"], s["latency_seconds"])) if s["latency"] else _off("latency")
        if s["latency"] or s["energy"]:  # the inference loop: its timing and the energy read during it
            carried = shared.take(("torch_batch", "inference_phase") if s["energy"] else ("torch_batch",))
            if carried:
                latency["torch_batch"], out["inference_phase"] = carried[0], (carried[1:] or [None])[0]
            else:
                latency["torch_batch"] = timed("inference_loop", _inference_loop, lambda secs: torch_latency(
                    model, xs["batch"], secs, min_reps=3), len(xs["batch"]), s, recorder, shared)
                shared.put("torch_batch", latency["torch_batch"])
        fp32_pred = predict_logits(model, x_test).argmax(1).numpy() if len(x_test) else np.empty(0)
        out["onnx"], session = _measure_onnx(model, folder, threads, s, xs, latency, timed, shared,
                                             shared_dir if s["share"] else None)
        shared.publish()  # the architecture's figures are in: its other runs need not wait for this one's int8
        if out["onnx"].get("bytes"):
            exports["onnx"] = out["onnx"]["path"]
            out["size"]["onnx_bytes"] = out["onnx"]["bytes"]
        if not s["int8"]:
            out["int8"] = _off("int8")
        elif int8_student is not None:
            out["int8"], out["int8_variants"] = measure_qad(int8_student, threads, s, data, xs, teacher_logits_test,
                                                            latency, parts)
            if out["int8"].get("ok"):
                exports["int8"] = out["int8"]["path"]
                out["size"]["int8_bytes"] = out["int8"]["bytes"]
        elif session is None:
            out["int8"] = {"ok": False, "reason": "needs the ONNX export, which " + ("is turned off" if not s["onnx"] else "failed")}
        else:
            seed = int((config or {}).get("seed") or 0)
            out["int8"], out["int8_variants"] = measure_int8(folder, out["onnx"]["path"], threads, s, data, xs, fp32_pred,
                                                             teacher_logits_test, latency, seed, parts, shared)
            if out["int8"].get("ok"):
                exports["int8"] = out["int8"]["path"]
                out["size"]["int8_bytes"] = out["int8"]["bytes"]
        if s["int8"] and "onnx_int8" not in latency:
            latency["onnx_int8"] = _off("latency") if not s["latency"] else {"available": False, "reason": out["int8"].get("reason")}
        out["latency"] = latency
        if s["pt2"]:
            out["pt2"] = timed("pt2", export_program, model, xs["batch"][:2] if s["pt2_dynamic"] else xs["one"],
                               folder / paths.PT2, s["pt2_dynamic"])
            if out["pt2"].get("ok"):
                exports["pt2"] = out["pt2"]["path"]
        else:
            out["pt2"] = {"available": False, "reason": "not made for every run (measure.pt2 = false): make it from "
                          "the run's Files tab or with `python -m distill_core export ID --pt2`"}
        out["shared"] = shared.summary(shared_key)
    if s["budgets"]:
        try:
            out["budgets"] = check_budgets(out, load_profiles(home))
        except Exception as exc:  # a broken budgets.json: say so, measure on
            out["budgets"], out["budgets_error"] = [], str(exc)
    out["exports"] = exports
    out["export_errors"] = {k: out[k].get("reason") for k in ("onnx", "int8", "pt2")
                            if s[k] and isinstance(out.get(k), dict) and not out[k].get("ok")}
    if "inference" in recorder.phases:
        out["inference_energy"] = recorder.phases["inference"].get("energy")
    elif out.get("inference_phase"):  # carried: another run of this architecture measured it
        out["inference_phase"]["energy"]["shared_from"] = out["shared"]["carried"]["inference_phase"]
        out["inference_energy"] = out["inference_phase"]["energy"]
    out["seconds"] = time.perf_counter() - start
    return out


def measure_onnx_model(path: str | Path, data: DataBundle, folder: str | Path, settings: dict | None = None, *,
                       recorder=None, home: str | Path | None = None, made_by: str = "given",
                       nbytes: int | None = None) -> dict:
    """The measurements of a model known only as an ONNX file (a teacher given as ONNX, or a
    scikit-learn model converted to it): its bytes, its latency and throughput in ONNX Runtime and
    its inference energy, as `measure_run` measures a network's ONNX export. Its FLOPs are not
    counted (a black box), and nothing is exported from it. `nbytes`: its size with its external
    data, when it has some. Never raises."""
    start = time.perf_counter()
    s = measure_settings(settings)
    folder, path = Path(folder), Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if recorder is None:
        recorder = PhaseRecorder(energy=s["energy"], output_dir=folder, country=s["country"], measure_power_secs=s["power_secs"])
    xs = {"one": data.x_test[:1].numpy(), "batch": batch_of(data.x_test, s["throughput_batch"]).numpy()}
    parts: dict[str, float] = {}
    nbytes = nbytes or file_bytes(path)
    out: dict = {"settings": s, "input_shape": list(data.info.input_shape), "part_seconds": parts,
                 "size": {"onnx_bytes": nbytes},
                 "compute": {"available": False, "reason": "unavailable: black-box teacher (FLOPs are not counted from its ONNX graph)"},
                 "onnx": {"ok": True, "path": str(path), "bytes": nbytes, "exporter": made_by},
                 **{k: {"ok": False, "reason": f"not made from a teacher known only as an ONNX file ({k})"} for k in ("int8", "pt2")}}
    with torch_threads(s["threads"]) as threads:
        out["threads"] = threads
        latency: dict = {"threads": threads, "torch": {"available": False, "reason": "not a PyTorch model: see ONNX Runtime"}}
        t = time.perf_counter()
        session = attempt(ort_session, path, threads)
        parts["onnx_session"] = time.perf_counter() - t
        if isinstance(session, dict):
            latency["onnx"] = session
        else:
            t = time.perf_counter()
            latency["onnx"] = attempt(ort_latency, session, xs["one"], s["latency_seconds"]) if s["latency"] else _off("latency")
            if s["latency"] or s["energy"]:
                latency["onnx_batch"] = attempt(_inference_loop, lambda secs: ort_latency(session, xs["batch"], secs, min_reps=3),
                                             len(xs["batch"]), s, recorder)
            parts["onnx_latency"] = time.perf_counter() - t
        out["latency"] = latency
    if s["budgets"]:
        try:
            out["budgets"] = check_budgets(out, load_profiles(home))
        except Exception as exc:  # a broken budgets.json: say so, measure on
            out["budgets"], out["budgets_error"] = [], str(exc)
    out["exports"] = {"onnx": str(path)}
    out["export_errors"] = {}
    if "inference" in recorder.phases:
        out["inference_energy"] = recorder.phases["inference"].get("energy")
    out["seconds"] = time.perf_counter() - start
    return out


def _measure_onnx(model, folder, threads, s, xs, latency, timed, shared, graph_dir=None):
    """Export and verify ONNX; time it in ONNX Runtime. Returns (export dict, session or None)."""
    if not s["onnx"]:
        latency["onnx"] = _off("onnx")
        return _off("onnx"), None
    onnx = timed("onnx_export", export_onnx, model, xs["check"][:2], folder / paths.ONNX, xs["check"], threads, s["exporter"],
                 graph_dir)
    onnx.setdefault("ok", False)
    session = timed("onnx_export", ort_session, onnx["path"], threads) if onnx.get("bytes") else None
    if session is None or isinstance(session, dict):
        latency["onnx"] = session or {"available": False, "reason": onnx.get("reason", "no ONNX model")}
        return onnx, None
    if s["latency"]:
        latency["onnx"] = _carried(shared, "onnx", lambda: timed(
            "onnx_latency", ort_latency, session, xs["one"].numpy(), s["latency_seconds"]))
        latency["onnx_batch"] = _carried(shared, "onnx_batch", lambda: timed("onnx_latency", lambda: with_throughput(
            ort_latency(session, xs["batch"].numpy(), s["latency_seconds"] / 2, min_reps=3), len(xs["batch"]))))
    else:
        latency["onnx"] = _off("latency")
    return onnx, session


def reused_phases(meta: dict | None) -> dict | None:
    """A cached teacher's training and logit phases (with their energy), for the summary."""
    if not meta or not meta.get("cached"):
        return None
    return {k: v for k, v in (meta.get("phases") or {}).items() if k.endswith(("_training", "_logits"))}


def attach_measurements(result: dict, model: nn.Module | None, data: DataBundle, folder: str | Path, settings: dict,
                        recorder, teacher_logits_test: torch.Tensor | None = None, teacher_meta: dict | None = None,
                        home: str | Path | None = None, onnx: dict | None = None, int8_student=None,
                        shared_dir: str | Path | None = None) -> dict:
    """The runner's one hook: measure, sum up energy per phase, write the model card.

    Figures shared by the runs of one architecture are kept in `shared_dir`, by default
    <home>/cache/measure/ (none without a home).

    A teacher without a network of this lab is measured through its ONNX file, `onnx` =
    {"path", "made_by", "bytes"}, or not at all (`onnx` = {"reason": why}). Fills result["measure"] and
    result["energy"]; returns `result`. Never raises.
    """
    folder = Path(folder)
    try:
        if model is not None:
            if shared_dir is None and home is not None:
                shared_dir = paths.shared_measures(home)
            result["measure"] = measure_run(model, data, folder, result.get("config"), teacher_logits_test, settings,
                                            recorder=recorder, weights_path=folder / paths.WEIGHTS, home=home,
                                            int8_student=int8_student, shared_dir=shared_dir, run=result.get("hash"))
        elif (onnx or {}).get("path"):
            result["measure"] = measure_onnx_model(onnx["path"], data, folder, settings, recorder=recorder, home=home,
                                                   made_by=onnx.get("made_by", "given"), nbytes=onnx.get("bytes"))
        else:
            result["measure"] = {"available": False, "reason": (onnx or {}).get("reason", "no model to measure"), "exports": {}}
    except Exception as exc:
        result["measure"] = {**unavailable(exc), "exports": {"weights": str(folder / paths.WEIGHTS)} if model is not None else {}}
    reused = reused_phases(teacher_meta) or {}
    shared_phase = result["measure"].pop("inference_phase", None)
    if shared_phase:  # this run spent no energy on it: shown as reused, not counted
        reused["inference"] = shared_phase
    result["energy"] = energy_summary(recorder.phases, reused, enabled=settings["energy"])
    result["phases"] = recorder.phases
    if settings["card"] and model is not None:
        t = time.perf_counter()
        try:
            result["measure"].setdefault("exports", {}).update(write_model_card(folder, result, data.info))
        except Exception as exc:
            result["measure"].setdefault("export_errors", {})["card"] = f"{type(exc).__name__}: {exc}"
        if "seconds" in result["measure"]:
            result["measure"]["seconds"] += time.perf_counter() - t
    return result
