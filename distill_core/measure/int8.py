"""int8 ONNX models, as a device would run them: static (calibrated, QDQ) and dynamic.

static   ONNX Runtime's `quantize_static` in QDQ format: weights int8 per output channel
         (symmetric), activations uint8 per tensor with ranges calibrated on a seeded sample of
         the training split (MinMax by default; Entropy or Percentile on request). This is what
         deployments run: every activation has its scale before the model ever sees an input.
dynamic  `quantize_dynamic`: int8 weights, activations quantised at run time from each batch's
         own range (no calibration; the fit for large matrix products, not for convolutions).

Two edits make the static file what a device should get; both are checked to leave the outputs
exactly as they were (`deployable`):
  - a convolution whose input has a channel count that is not a multiple of 4 (the first layer:
    1 channel for digits and MNIST, 3 for CIFAR) gets zero channels added, its input padded
    by a Pad node: ONNX Runtime's fast int8 convolution needs channels in fours, and without
    them the first layer alone is slower in int8 than the whole network in fp32;
  - names are shortened and what ONNX Runtime does not read (doc strings, shape annotations,
    all-zero optional zero points) is dropped: in a small network they fill a third of the file.

Each function returns a dict with "ok" and, on failure, "reason"; none raises.
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import paths
from .attempt import attempt
from .latency import ort_latency, ort_predict, ort_session, with_throughput
from .shared import graph_fingerprint

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_BATCH = 64


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:400]


@contextmanager
def _quiet():
    """ONNX Runtime's quantiser warns about pre-processing on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def calibration_sample(x_train: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """`n` training samples drawn without replacement by a generator seeded with `seed` (all of
    them when the split is smaller): the same run calibrates on the same samples every time."""
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(int(seed)))[: min(n, len(x_train))]
    return np.ascontiguousarray(x_train[order.sort().values].numpy(), dtype=np.float32)


def _reader(x: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            self.i += CALIBRATION_BATCH
            return {input_name: x[self.i - CALIBRATION_BATCH : self.i]}

        def rewind(self):
            self.i = 0

    return Batches()


@functools.cache
def reduced_range() -> bool:
    """Whether to quantise weights to 7 bits (ONNX Runtime's `reduce_range`): on an x86 CPU
    without VNNI, ORT's uint8 x int8 kernels multiply with VPMADDUBSW, whose 16-bit sums
    saturate on 8-bit weights (a dense layer of 400 inputs was 15 % off fp32 on an AVX2 EPYC);
    7-bit weights cannot saturate. ORT's quantisation guide gives this remedy."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # not Linux: leave ORT's default
    return "vnni" not in flags


def range_note() -> dict:
    return {"reduce_range": True, "why": "7-bit weights: this CPU has no VNNI, and ORT's uint8 x int8 kernels "
            "saturate on 8-bit weights without it"} if reduced_range() else {"reduce_range": False}


def calibrated_qdq(onnx_path: str | Path, path: str | Path, calibration: np.ndarray, method: str = "minmax") -> None:
    """ONNX Runtime's static QDQ quantisation of an fp32 model (made int8-friendly first),
    calibrated on `calibration`, as the quantiser writes it (not yet `deployable`)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    # The calibrator writes its augmented model and histograms next to the model it is given.
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp, _quiet():
        friendly = Path(tmp) / "fp32.onnx"
        int8_friendly(onnx_path, friendly)
        quantize_static(str(friendly), str(path), _reader(calibration, "input"), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib, reduce_range=reduced_range())


def static_record(path: str | Path, calibration: np.ndarray, method: str, seed: int | None, edits: list[str]) -> dict:
    return {"ok": True, "variant": "static", "path": str(path), "bytes": os.path.getsize(path),
            "method": "onnxruntime quantize_static, QDQ", "weights": "int8, per output channel, symmetric",
            "activations": "uint8, per tensor", "calibration": {"method": method, "samples": int(len(calibration)),
                                                                "split": "train", "seed": seed},
            "edits": edits, "range": range_note()}


def quantize_static_qdq(onnx_path: str | Path, path: str | Path, calibration: np.ndarray, method: str = "minmax",
                        seed: int | None = None) -> dict:
    """Static QDQ int8 of an fp32 ONNX model, calibrated on `calibration`, made deployable."""
    path = Path(path)
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            raw = Path(tmp) / "quantized.onnx"
            calibrated_qdq(onnx_path, raw, calibration, method)
            edits = deployable(raw, path, calibration[: 2 * CALIBRATION_BATCH])
    except Exception as exc:
        return {"ok": False, "reason": f"static int8 quantisation failed: {_reason(exc)}"}
    return static_record(path, calibration, method, seed, edits)


def quantize_dynamic_int8(onnx_path: str | Path, path: str | Path) -> dict:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised on the fly."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8, reduce_range=reduced_range())
        return {"ok": True, "variant": "dynamic", "path": str(path), "bytes": os.path.getsize(path),
                "method": "onnxruntime quantize_dynamic", "weights": "int8, per tensor",
                "activations": "quantised at run time, per batch", "range": range_note()}
    except Exception as exc:
        return {"ok": False, "reason": f"dynamic int8 quantisation failed: {_reason(exc)}"}


# -- measuring the variants -----------------------------------------------------------------------------


def _accuracy(pred: np.ndarray, y: torch.Tensor) -> float:
    return float((pred == y.numpy()).mean()) if len(y) else float("nan")


def measure_int8(folder, onnx_path, threads, s, data, xs, fp32_pred, teacher_logits_test, latency, seed, parts,
                 shared=None):
    """The int8 variants of `int8_mode`, each quantised, run on the test set beside fp32 and timed;
    returns (the deployed one, every one measured by name). The deployed file is paths.INT8.
    A variant's latency is shared (measure/shared.py) between graphs of the same structure."""
    wanted = ("static", "dynamic") if s["int8_mode"] == "auto" else (s["int8_mode"],)
    variants = {}
    for name in wanted:
        t = time.perf_counter()
        target = folder / paths.int8_variant(name)
        if name == "static":
            calib = calibration_sample(data.x_train, s["calibration_samples"], seed)
            q = quantize_static_qdq(onnx_path, target, calib, s["calibration_method"], seed)
        else:
            q = quantize_dynamic_int8(onnx_path, target)
        if q["ok"]:
            q = measure_variant(q, threads, s, data, xs, fp32_pred, teacher_logits_test, shared)
        variants[name] = q
        parts[f"int8_{name}"] = time.perf_counter() - t
    chosen, why = pick_int8(variants, s["int8_mode"])
    deployed = dict(variants[chosen])
    if deployed.get("ok"):
        os.replace(deployed["path"], folder / paths.INT8)
        deployed["path"] = variants[chosen]["path"] = str(folder / paths.INT8)
    deployed["chosen_by"] = why
    if s["latency"] and deployed.get("ok"):
        latency["onnx_int8"], latency["onnx_int8_batch"] = deployed.pop("latency"), deployed.pop("latency_batch")
        deployed["latency_ms"] = latency["onnx_int8"].get("median_ms")
    return deployed, variants


def measure_variant(q, threads, s, data, xs, fp32_pred, teacher_logits_test, shared=None) -> dict:
    """Add to a variant's record: test accuracy, its drop from fp32, agreement with fp32 (and
    the teacher), batch-1 and batch latency in ONNX Runtime (from `shared` when a graph of the
    same structure was timed by another run)."""
    try:
        session = ort_session(q["path"], threads)
        pred = ort_predict(session, data.x_test.numpy()).argmax(1)
        q["accuracy"] = _accuracy(pred, data.y_test)
        q["fp32_accuracy"] = _accuracy(fp32_pred, data.y_test)
        q["accuracy_drop"] = q["fp32_accuracy"] - q["accuracy"]
        q["agreement_with_fp32"] = float((pred == fp32_pred).mean()) if len(pred) else float("nan")
        if teacher_logits_test is not None:
            q["teacher_agreement"] = float((pred == teacher_logits_test.argmax(1).numpy()).mean())
    except Exception as exc:
        q.update(ok=False, reason=f"ONNX Runtime cannot run the int8 model: {type(exc).__name__}: {exc}"[:400])
        return q
    if s["latency"]:
        names = [f"int8:{graph_fingerprint(q['path'])}:{k}" for k in ("latency", "latency_batch")] if shared else None
        carried = shared.take(names) if shared else None
        if carried:
            q["latency"], q["latency_batch"] = carried
        else:
            q["latency"] = attempt(ort_latency, session, xs["one"].numpy(), s["latency_seconds"])
            q["latency_batch"] = attempt(lambda: with_throughput(
                ort_latency(session, xs["batch"].numpy(), s["latency_seconds"] / 2, min_reps=3), len(xs["batch"])))
            if shared:
                for name, key in zip(names, ("latency", "latency_batch")):
                    shared.put(name, q[key])
    return q


def pick_int8(variants: dict, mode: str) -> tuple[str, str]:
    """The deployed variant and why: the one asked for; with "auto", the faster at batch 1 unless
    its accuracy is more than 1 point below the other's (static when latency is off)."""
    if mode != "auto":
        return mode, f"int8_mode = {mode}"
    ok = {k: v for k, v in variants.items() if v.get("ok")}
    if not ok:
        return "static", "auto: no variant could be quantised"
    ms = {k: (v.get("latency") or {}).get("median_ms") for k, v in ok.items()}
    if any(m is None for m in ms.values()):
        name = "static" if "static" in ok else next(iter(ok))
        return name, f"auto: latency not measured; {name} kept"
    best = max(v["accuracy"] for v in ok.values())
    near = {k: m for k, m in ms.items() if ok[k]["accuracy"] >= best - 0.01}
    name = min(near, key=near.get)
    others = ", ".join(f"{k} {m:.4g} ms" for k, m in ms.items() if k != name)
    return name, (f"auto: {name} at {ms[name]:.4g} ms batch 1" + (f" (vs {others})" if others else "")
                  + ", the faster of those within 1 point of the best int8 accuracy")


# -- the fp32 graph the quantiser is given ----------------------------------------------------------


def int8_friendly(src: str | Path, dst: str | Path) -> list[str]:
    """Write the fp32 graph of `src` to `dst` with global average pooling spelled as ONNX Runtime's
    int8 kernels know it: the dynamo exporter writes AdaptiveAvgPool(1) + Flatten as ReduceMean
    over the spatial axes + Reshape, which stay fp32 between a DequantizeLinear and a
    QuantizeLinear (and keep the classifier out of int8); GlobalAveragePool + Flatten compute the
    same and have int8 kernels. Returns the rewrites made."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*g.input, *g.value_info)
            if v.type.tensor_type.HasField("shape")}
    dims = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim] for v in g.value_info
            if v.type.tensor_type.HasField("shape")}
    done = []
    for i, node in enumerate(g.node):
        if node.op_type not in ("ReduceMean", "Reshape"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        r = rank.get(node.input[0])
        if node.op_type == "ReduceMean" and r and r >= 3 and attrs.get("keepdims", 1) == 1:
            axes = attrs.get("axes") if len(node.input) < 2 else inits.get(node.input[1])
            if axes is not None and sorted(int(a) % r for a in np.ravel(axes)) == list(range(2, r)):
                g.node[i].CopyFrom(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output)))
                done.append("ReduceMean -> GlobalAveragePool")
        elif node.op_type == "Reshape" and node.input[1] in inits:
            shape, d = inits[node.input[1]], dims.get(node.input[0])
            if d and len(d) >= 3 and all(x == 1 for x in d[2:]) and shape.ndim == 1 and len(shape) == 2 \
                    and (shape[0] in (-1, 0) and shape[1] in (-1, d[1]) or shape[1] == -1 and shape[0] == 0):
                g.node[i].CopyFrom(helper.make_node("Flatten", [node.input[0]], list(node.output), axis=1))
                done.append("Reshape -> Flatten")
    used = {name for node in g.node for name in node.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    onnx.save(model, str(dst))
    return done


# -- making a QDQ file deployable ---------------------------------------------------------------------


def deployable(src: str | Path, dst: str | Path, check: np.ndarray) -> list[str]:
    """Write `src` to `dst` with the first convolutions' input channels padded to fours and the
    file compacted. Each edit is kept only if ONNX Runtime's outputs on `check` stay identical
    and it leaves no more QuantizeLinear / DequantizeLinear nodes unfused in the graph ONNX Runtime
    optimises (fewer int8 kernels would be slower, with outputs that can still be identical).
    Returns the edits made."""
    import onnx

    model = onnx.load(str(src))
    want, unfused = _run(model, check)
    edits = []
    for name, edit in (("input channels padded to a multiple of 4", pad_input_channels),
                       ("all-zero optional zero points dropped", drop_zero_points),
                       ("names shortened, unread fields dropped", compact)):
        trial = onnx.ModelProto()
        trial.CopyFrom(model)
        if not edit(trial):
            continue
        got, left = _run(trial, check)
        if got.shape == want.shape and np.array_equal(got, want) and left <= unfused:
            model, unfused = trial, left
            edits.append(name)
    onnx.save(model, str(dst))
    return edits


def _run(model, x: np.ndarray) -> tuple[np.ndarray, int]:
    """ONNX Runtime's outputs on `x`, and how many QuantizeLinear / DequantizeLinear nodes are
    left in the graph it optimised (those it could not fuse into int8 kernels)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path, optimised = Path(tmp) / "m.onnx", Path(tmp) / "opt.onnx"
        onnx.save(model, str(path))
        out = ort_predict(ort_session(path, 1, optimised_path=optimised), x)
        left = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(optimised)).graph.node)
    return out, left


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def pad_input_channels(model, multiple: int = 4) -> bool:
    """Pad the input channels of each QDQ convolution fed by the graph input (input -> Q -> DQ ->
    Conv, group 1) to a multiple of `multiple`: zero weights for the new channels, a Pad node
    on the quantised input (filled with its zero point, i.e. 0.0). Returns whether it changed."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    made = _producers(g)
    inputs = {i.name for i in g.input}
    changed = False
    for conv in [n for n in g.node if n.op_type == "Conv"]:
        if any(a.name == "group" and a.i != 1 for a in conv.attribute):
            continue
        x_dq, w_dq = made.get(conv.input[0]), made.get(conv.input[1])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear" and w_dq.input[0] in inits):
            continue
        x_q = made.get(x_dq.input[0])
        if not (x_q and x_q.op_type == "QuantizeLinear" and x_q.input[0] in inputs and len(x_dq.input) > 2):
            continue
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        c = w.shape[1]
        if c % multiple == 0:
            continue
        extra = -c % multiple
        # Both the weights and the quantised input get the new channels through a Pad node: the
        # weights' Pad is folded when ONNX Runtime loads the model, so the file keeps the small tensor.
        for tensor, consumer, fill in ((w_dq.input[0], w_dq, None), (x_dq.input[0], x_dq, x_dq.input[2])):
            pads = np.zeros(2 * w.ndim, np.int64)
            pads[w.ndim + 1] = extra  # after the existing channels (axis 1)
            pads_name, out_name = f"{tensor}_pads", f"{tensor}_padded"
            g.initializer.append(numpy_helper.from_array(pads, pads_name))
            pad = helper.make_node("Pad", [tensor, pads_name] + ([fill] if fill else []), [out_name], mode="constant")
            g.node.insert(list(g.node).index(consumer), pad)
            consumer.input[0] = out_name
        changed = True
    return changed


def drop_zero_points(model) -> bool:
    """Drop the all-zero zero points of convolution weights and biases: optional in the standard
    (DequantizeLinear's default is 0), and a tensor per layer in the file. (ONNX Runtime fuses a
    Gemm into its int8 kernel only with them, so those stay.)"""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, set] = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    changed = False
    for node in g.node:
        if (node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[0] in inits
                and users.get(node.output[0]) == {"Conv"}
                and node.input[2] in inits and not numpy_helper.to_array(inits[node.input[2]]).any()):
            del node.input[2]
            changed = True
    used = {name for node in g.node for name in node.input}
    for init in list(g.initializer):
        if init.name not in used:
            g.initializer.remove(init)
    return changed


def compact(model) -> bool:
    """Short tensor names; no node names, doc strings, shape annotations or metadata. The
    graph's input and output keep their names."""
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    used = {name for node in g.node for name in node.input}
    for init in list(g.initializer):
        if init.name not in used and init.name not in keep:
            g.initializer.remove(init)
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = np.base_repr(len(names), 36).lower()
        return names[name]

    for init in g.initializer:
        init.name = short(init.name)
        init.doc_string = ""
        del init.metadata_props[:]
    for node in g.node:
        node.name, node.doc_string = "", ""
        del node.metadata_props[:]
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del g.value_info[:]
    g.doc_string = ""
    del model.metadata_props[:]
    model.doc_string = ""
    for v in (*g.input, *g.output):
        v.doc_string = ""
        del v.metadata_props[:]
    return True
