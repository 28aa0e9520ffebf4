"""Exports a phone or a board can run: ONNX (verified) and a torch.export program (.pt2).

ONNX comes from PyTorch's maintained exporter, `torch.onnx.export(..., dynamo=True)`; where it
fails, the legacy TorchScript exporter takes over and the reason is recorded. The dynamo exporter
costs a few tenths of a second per call (with its operator registry built once per process,
`_registry`; seconds for a process's first trace) where the TorchScript one costs tens of
milliseconds, but its graph depends only on the architecture: it is exported once per
architecture and process, and a later model
of the same architecture gets a copy with its own weights swapped in (`_GRAPHS`). Every export,
fresh or swapped, is checked against PyTorch's outputs on real test inputs.

Batch norm is folded into the convolution before it (`fold_batchnorm`), so the graph's weights are
the folded model's parameters under their own names: that is what makes the swap a rename-free
copy, and what the int8 quantiser wants to see.

Each function returns a dict with "ok" and, on failure, "reason"; none of them raises, so a
model that one exporter cannot handle still gets the others (and its run still succeeds).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import write_atomic
from .compute import architecture_fingerprint
from .latency import ort_predict, ort_session

INPUT, OUTPUT = "input", "logits"
ATOL = RTOL = 1e-4  # ONNX Runtime must agree with PyTorch to this on real test inputs
EXPORTERS = ("dynamo", "torchscript")
_CONV = (nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_GRAPHS: OrderedDict[str, bytes] = OrderedDict()  # architecture key -> a dynamo graph (serialised ModelProto)
_MAX_GRAPHS = 32
# torch.export and the exporters are not thread-safe: one export at a time in a process; and none
# beside training in another thread (see warm_exporter).
_EXPORTING = threading.Lock()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:400]


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[tuple[str, str]]]:
    """An eval-mode copy with every (convolution, batch norm) pair of an nn.Sequential fused into
    one convolution with a bias, the batch norm replaced by nn.Identity; and the pairs folded, as
    (convolution name, batch-norm name). The copy computes the same function (to rounding)."""
    folded = copy.deepcopy(model).eval()
    pairs = []
    for prefix, module in folded.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, _CONV) and isinstance(bn, _BN) and bn.track_running_stats:
                module._modules[conv_name] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                module._modules[bn_name] = nn.Identity()
                pairs.append((f"{prefix}.{conv_name}".lstrip("."), f"{prefix}.{bn_name}".lstrip(".")))
    return folded, pairs


def unfold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]], folded_state: dict[str, np.ndarray]) -> nn.Module:
    """A copy of `model` (the unfolded architecture) computing what the folded network with
    `folded_state` computes: each folded convolution takes the folded weights, its batch norm
    becomes an exact identity plus the folded bias (scale 1, mean 0, variance 1 - eps)."""
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    state = {k: torch.as_tensor(v) for k, v in folded_state.items()}
    for conv_name, bn_name in pairs:
        bn = modules[bn_name]
        conv = modules[conv_name]
        conv.weight.data.copy_(state.pop(f"{conv_name}.weight"))
        if conv.bias is not None:
            conv.bias.data.zero_()
        bn.weight.data.fill_(1.0)
        bn.bias.data.copy_(state.pop(f"{conv_name}.bias"))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    missing = sorted(set(state) - set(out.state_dict()))
    if missing:
        raise KeyError(f"no tensor {missing[0]!r} in the architecture")
    out.load_state_dict(state, strict=False)
    return out


def float_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if v.is_floating_point()}


def _arch_key(model: nn.Module, sample: torch.Tensor) -> str:
    """What the dynamo graph depends on: the module tree, the parameter shapes, the input shape."""
    text = repr((architecture_fingerprint(model), tuple(sample.shape[1:]), torch.__version__))
    return hashlib.sha256(text.encode()).hexdigest()


def _torchscript_export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (sample,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False)


def _quiet_exporter() -> None:
    """The dynamo exporter logs each step at INFO and WARNING (and, building its registry, every
    torchvision operator it skips): keep its errors only."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)


_TRACED = threading.Event()  # set once this process has exported with the dynamo exporter (warm_trace)
_REGISTRY: list = []  # the dynamo exporter's operator registry, once built (_registry)
_REGISTRY_LOCK = threading.Lock()


def _registry():
    """The dynamo exporter's ONNX operator registry, built once per process (None where this
    torch lacks the exporter module torch.onnx.export is built on). torch.onnx.export builds it
    anew on every call: 0.5-0.8 s, parsing the source of some 500 torchlib functions, which is
    most of the export of a small model."""
    with _REGISTRY_LOCK:
        if not _REGISTRY:
            try:
                from torch.onnx._constants import ONNX_DEFAULT_OPSET
                from torch.onnx._internal.exporter import _core, _dynamic_shapes, _registration
            except ImportError:
                _REGISTRY.append(None)
            else:
                _REGISTRY.append((_core, _dynamic_shapes,
                                  _registration.ONNXRegistry.from_torchlib(opset_version=ONNX_DEFAULT_OPSET),
                                  ONNX_DEFAULT_OPSET))
        return _REGISTRY[0]


def _dynamo_export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    """torch.onnx.export(..., dynamo=True) with the process's one registry: the same steps as its
    export_compat for a module and tuple args (torch is pinned), without the registry rebuild."""
    _quiet_exporter()
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    found = _registry()
    if found is None:
        torch.onnx.export(model, (sample,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)
        _TRACED.set()
        return
    core, dynamic_shapes, registry, opset = found
    dims, rename = dynamic_shapes.convert_str_to_export_dim(dynamic)
    program = core.export(model, (sample,), registry=registry, dynamic_shapes=dims, input_names=[INPUT],
                          output_names=[OUTPUT], verbose=False, opset_version=opset)
    if rename:  # the batch axis named "batch" in the file, as torch.onnx.export names it
        program._rename_dynamic_axes(dynamic)
    program.save(str(path), include_initializers=True, keep_initializers_as_inputs=False, external_data=False)
    _TRACED.set()


def strip_annotations(path: Path) -> None:
    """Drop what the dynamo exporter writes for debugging (each node's stack trace, module path
    and FX node, with this machine's file paths in them): nothing a runtime reads."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for v in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info, *proto.graph.initializer):
        del v.metadata_props[:]
    del proto.graph.metadata_props[:]
    onnx.save(proto, str(path))


def _unswappable(graph, state: dict[str, np.ndarray]) -> str | None:
    """Why the weights of another model of this architecture cannot simply be copied into this
    graph (None when they can): every floating-point tensor of the model must be an initializer
    under its own name, holding exactly its values (the exporter folded nothing into it)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    missing = [k for k in state if k not in inits]
    if missing:
        return f"the exporter folded or dropped {len(missing)} weight tensor(s) (e.g. {missing[0]})"
    changed = [k for k, v in state.items() if not np.array_equal(numpy_helper.to_array(inits[k]), v)]
    if changed:
        return f"the exporter changed the values of {len(changed)} weight tensor(s) (e.g. {changed[0]})"
    return None


def _swap_weights(blob: bytes, state: dict[str, np.ndarray], path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(blob)
    for init in proto.graph.initializer:
        if init.name in state:
            init.CopyFrom(numpy_helper.from_array(state[init.name], init.name))
    onnx.save(proto, str(path))


def _remember(key: str, path: Path, state: dict[str, np.ndarray]) -> str | None:
    """Keep a fresh dynamo graph for later models of its architecture; the reason it cannot be."""
    import onnx

    blob = path.read_bytes()
    why = _unswappable(onnx.load_from_string(blob).graph, state)
    if why is None:
        _GRAPHS[key] = blob
        _GRAPHS.move_to_end(key)
        while len(_GRAPHS) > _MAX_GRAPHS:
            _GRAPHS.popitem(last=False)
    return why


def _write(model: nn.Module, sample: torch.Tensor, path: Path, exporter: str,
           graph_dir: Path | None = None) -> tuple[dict, list[str]]:
    """Write the ONNX file with `exporter` (dynamo: a remembered graph if there is one, this
    process's or one another worker left in `graph_dir`), falling back to TorchScript. Returns
    (what was done, the errors of exporters that failed)."""
    folded, _ = fold_batchnorm(model)
    errors: list[str] = []
    if exporter == "dynamo":
        state = float_state(folded)
        key = _arch_key(folded, sample)
        kept = graph_dir / f"graph-{key[:32]}.onnx" if graph_dir is not None else None
        if key not in _GRAPHS and kept is not None and kept.is_file():
            _GRAPHS[key] = kept.read_bytes()  # checked like any reused graph: verified against PyTorch below
        if key in _GRAPHS:
            try:
                _swap_weights(_GRAPHS[key], state, path)
                return {"exporter": "dynamo", "graph": "reused", "key": key}, errors
            except Exception as exc:  # a remembered graph that no longer fits: export afresh
                _GRAPHS.pop(key, None)
                errors.append(f"reusing the dynamo graph: {_reason(exc)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _dynamo_export(folded, sample, path)
            strip_annotations(path)
            done = {"exporter": "dynamo", "graph": "exported", "key": key}
            why = _remember(key, path, state)
            if why:
                done["not_reused"] = why
            elif kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(kept, _GRAPHS[key])
            return done, errors
        except Exception as exc:
            errors.append(f"dynamo exporter: {_reason(exc)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _torchscript_export(folded, sample, path)
    except Exception as exc:
        raise RuntimeError("; ".join([*errors, f"torchscript exporter: {_reason(exc)}"])) from None
    return {"exporter": "torchscript", "graph": "exported"}, errors


def export_onnx(model: nn.Module, sample: torch.Tensor, path: str | Path, check_x: torch.Tensor, threads: int = 1,
                exporter: str = "dynamo", graph_dir: str | Path | None = None) -> dict:
    """Export with a dynamic batch axis and check ONNX Runtime against PyTorch on `check_x`.

    `exporter`: "dynamo" (the maintained exporter; TorchScript if it fails, the reason kept under
    "fallback_from") or "torchscript" (the legacy one only). `graph_dir`: where dynamo graphs are
    kept for other processes (the shared-figures folder), so each architecture is exported once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    notes: list[str] = []
    for _ in range(2):
        try:
            with _EXPORTING:
                done, errors = _write(model, sample, path, exporter, Path(graph_dir) if graph_dir else None)
        except Exception as exc:  # every exporter failed: the message names each one's reason
            return {"ok": False, "reason": str(exc)[:800]}
        notes += errors
        out = _verify(model, path, check_x, threads)
        if out["ok"] or done["graph"] != "reused":
            break
        _GRAPHS.pop(done["key"], None)  # never trust a swapped graph that disagrees: export afresh
        notes.append(f"the reused dynamo graph differed from PyTorch ({out.get('reason')})")
    out.update({k: v for k, v in done.items() if k != "key"})
    if notes:
        out["fallback_from"] = notes
    return out


def _verify(model: nn.Module, path: Path, check_x: torch.Tensor, threads: int) -> dict:
    try:
        session = ort_session(path, threads)
        got = ort_predict(session, check_x.numpy())
        with torch.inference_mode():
            want = model(check_x).numpy()
    except Exception as exc:
        return {"ok": False, "path": str(path), "reason": f"ONNX Runtime cannot run the export: {_reason(exc)}"}
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    verified = bool(got.shape == want.shape and np.allclose(got, want, atol=ATOL, rtol=RTOL))
    out = {"ok": verified, "path": str(path), "bytes": os.path.getsize(path), "verified": verified,
           "max_abs_diff": diff, "checked_on": int(len(check_x)), "tolerance": {"atol": ATOL, "rtol": RTOL}}
    if not verified:
        out["reason"] = f"ONNX Runtime differs from PyTorch by up to {diff:.3g} (tolerance {ATOL} + {RTOL} x |value|)"
    return out


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
            with _EXPORTING, warnings.catch_warnings():
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


def traced() -> bool:
    """Whether this process has exported with the dynamo exporter (its first trace is paid)."""
    return _TRACED.is_set()


def warm_trace() -> None:
    """Pay the dynamo exporter's first trace in this process now (0.4-0.6 s beyond any later
    one, 2-3 s in all: torch.export's and dynamo's own start-up) by exporting a tiny
    convolutional network to a temporary file, unless the process has exported already. Only
    where nothing trains in the process (see warm_exporter): a worker calls it while idle. A run
    that arrives meanwhile waits for it, but its own first export would have paid the same.
    Never raises."""
    if traced():
        return
    import tempfile

    tiny = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(2, 2)).eval()
    try:
        with tempfile.TemporaryDirectory(prefix="distill-warm-") as tmp, _EXPORTING, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _dynamo_export(tiny, torch.zeros(2, 1, 4, 4), Path(tmp) / "warm.onnx")
    except Exception:  # the first real export will say what is wrong
        logging.getLogger(__name__).debug("exporter trace warm-up failed", exc_info=True)


def warm_exporter() -> None:
    """Pay the dynamo exporter's import cost now: importing the ONNX stack (and int8's) and
    building its operator registry (`_registry`, kept for every later export) take about 1.1
    of the 2.4 s of a worker's first export. A
    worker calls it in a background thread when it starts, beside its first run's training.

    It imports and never traces: while torch.export traces, `torch.compiler.is_exporting()`
    (a process-wide flag) is true, so every dynamo-disabled function the training thread calls
    (the optimiser's step) annotates torch.fx's process-wide node metadata beside the exporter's
    own, and one of the two fails (KeyError: 'custom'). Never raises."""
    try:
        import onnxruntime.quantization  # noqa: F401  (int8's first use)

        _quiet_exporter()
        _registry()
    except Exception:  # the first real export will say what is wrong
        logging.getLogger(__name__).debug("exporter warm-up failed", exc_info=True)
