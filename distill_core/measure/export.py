"""Exports a phone or a board can run: ONNX (verified), int8 ONNX, a torch.export program.

Each function returns a dict with "ok" and, on failure, "reason"; none of them raises, so a
model that one exporter cannot handle still gets the others (and its run still succeeds).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .latency import ort_predict, ort_session

INPUT, OUTPUT = "input", "logits"
ATOL = RTOL = 1e-4  # ONNX Runtime must agree with PyTorch to this on real test inputs


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:400]


def _torchscript_export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (sample,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False)


def _dynamo_export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (sample,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, dynamo=True, verbose=False)


def export_onnx(model: nn.Module, sample: torch.Tensor, path: str | Path, check_x: torch.Tensor, threads: int = 1) -> dict:
    """Export with a dynamic batch axis and check ONNX Runtime against PyTorch on `check_x`.

    The TorchScript-based exporter is tried first (fast: tens of milliseconds, and enough for
    these architectures); the dynamo exporter (seconds, needs onnxscript) is the fallback.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    errors = []
    for name, fn in (("torchscript", _torchscript_export), ("dynamo", _dynamo_export)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(model, sample, path)
            exporter = name
            break
        except Exception as exc:
            errors.append(f"{name} exporter: {_reason(exc)}")
    else:
        return {"ok": False, "reason": "; ".join(errors)}
    try:
        session = ort_session(path, threads)
        got = ort_predict(session, check_x.numpy())
        with torch.inference_mode():
            want = model(check_x).numpy()
    except Exception as exc:
        return {"ok": False, "path": str(path), "reason": f"ONNX Runtime cannot run the export: {_reason(exc)}"}
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    verified = bool(np.allclose(got, want, atol=ATOL, rtol=RTOL))
    out = {"ok": verified, "path": str(path), "bytes": os.path.getsize(path), "exporter": exporter,
           "verified": verified, "max_abs_diff": diff, "checked_on": int(len(check_x)), "tolerance": {"atol": ATOL, "rtol": RTOL}}
    if errors:
        out["fallback_from"] = errors
    if not verified:
        out["reason"] = f"ONNX Runtime differs from PyTorch by up to {diff:.3g} (tolerance {ATOL} + {RTOL} x |value|)"
    return out


def quantize_int8(onnx_path: str | Path, path: str | Path) -> dict:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised on the fly."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy: imported only when quantising

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # it warns about pre-processing on the root logger
        try:
            quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return {"ok": True, "path": str(path), "bytes": os.path.getsize(path), "method": "onnxruntime quantize_dynamic, QInt8 weights"}
    except Exception as exc:
        return {"ok": False, "reason": f"int8 quantisation failed: {_reason(exc)}"}


def export_program(model: nn.Module, sample: torch.Tensor, path: str | Path, dynamic: bool = False) -> dict:
    """A torch.export program (.pt2) for inputs shaped like `sample`.

    With `dynamic`, the batch axis is left free (about three times slower to export); if the
    model does not allow it, a fixed-batch program is saved instead and the reason kept.
    """
    path = Path(path)
    model.eval()
    errors = []
    for dyn in ((True, False) if dynamic else (False,)):
        try:
            shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dyn else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(model, (sample,), dynamic_shapes=shapes)
                torch.export.save(program, str(path))
            out = {"ok": True, "path": str(path), "bytes": os.path.getsize(path), "dynamic_batch": dyn,
                   "input_shape": [None if dyn else sample.shape[0], *sample.shape[1:]]}
            if errors:
                out["note"] = errors[0]
            return out
        except Exception as exc:
            errors.append(f"{'dynamic' if dyn else 'fixed'} batch: {_reason(exc)}")
    return {"ok": False, "reason": "torch.export failed: " + "; ".join(errors)}
