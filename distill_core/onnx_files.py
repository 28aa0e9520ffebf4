"""ONNX models as teachers: checked before anything runs, then run in ONNX Runtime.

An ONNX file is untrusted input. `check_onnx` refuses, with a ModelError naming the file and the
problem: a file that is not ONNX, one that fails `onnx.checker`, an operator from a domain that
needs a custom-op library (only the standard domains, ONNX Runtime's built-in com.microsoft and
the model's own functions are allowed), external data that is not a file inside the model's own
folder (an absolute path, "..", or a link out of it), and an input or output that does not fit
the data set. `session` never registers a custom-op library.

The model gets the data set's inputs exactly as the lab's own networks do: float32, normalised
with the training split's statistics, in the lab's layout (N, *input_shape), e.g. (N, 1, 8, 8)
for digits, with a dynamic or a fixed batch dimension.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from .errors import ModelError
from .registry import Param

ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}  # TensorProto element types an input may have
OUTPUTS = ("auto", "logits", "probabilities")

OUTPUTS_PARAM = Param("outputs", "auto", "what the model outputs: logits, probabilities, or auto (probabilities when "
                      "every row lies in [0, 1] and sums to 1, said so on the run)", "choice", choices=OUTPUTS)
MAX_MB_PARAM = Param("max_mb", 2000.0, "refuse larger models (with their external data)", "float", 0.001, 1e6)
ONNX_PARAMS = (OUTPUTS_PARAM, MAX_MB_PARAM)


@dataclass(frozen=True)
class OnnxInfo:
    """What the lab needs to know to run a checked model."""

    path: str
    input_name: str
    input_dtype: str  # numpy dtype name
    batch: int | None  # a fixed batch size, or None for a dynamic one
    output_index: int  # which output holds the class scores
    output_name: str
    opsets: dict  # domain -> version
    producer: str
    bytes: int  # the model file and its external data


def _shape(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _shown(shape) -> str:
    return "(" + ", ".join("N" if i == 0 and not isinstance(d, int) else str(d if d is not None else "?")
                           for i, d in enumerate(shape)) + ")"


def _graphs(graph):
    """A graph and every subgraph inside its nodes' attributes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(g)


def _tensors(model):
    """Every tensor that may keep its data outside the file: initializers and Constant values."""
    for g in _graphs(model.graph):
        yield from g.initializer
        yield from (s.values for s in g.sparse_initializer)
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _check_domains(model, where: str) -> None:
    local = {(f.domain, f.name) for f in model.functions}
    nodes = [n for g in _graphs(model.graph) for n in g.node] + [n for f in model.functions for n in f.node]
    for node in nodes:
        if node.domain not in ALLOWED_DOMAINS and (node.domain, node.op_type) not in local:
            raise ModelError(f"{where}: operator {node.op_type!r} of domain {node.domain!r} needs a custom-op library, "
                             f"which the lab does not load; only the standard domains ({', '.join(repr(d) for d in ALLOWED_DOMAINS)}) "
                             "are run")


def _check_external_data(model, folder: Path, where: str) -> dict[str, Path]:
    """Each external data file must be a file inside the model's folder; returns them by the
    location the model names."""
    from onnx.external_data_helper import uses_external_data

    found = {}
    for tensor in _tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        unsafe = (not location or os.path.isabs(location) or location.startswith(("/", "\\"))
                  or PureWindowsPath(location).drive or ".." in location.replace("\\", "/").split("/"))
        target = (folder / location).resolve()
        if unsafe or not target.is_relative_to(folder.resolve()):
            raise ModelError(f"{where}: tensor {tensor.name!r} keeps its data in {location!r}, outside the model's folder; "
                             "external data must be files beside the model (no absolute paths, no '..')")
        if not target.is_file():
            raise ModelError(f"{where}: tensor {tensor.name!r} keeps its data in {location!r}, which is not there "
                             "(upload the data file beside the model, or save the model with its data inside)")
        found[location] = target
    return found


def external_data(path: str | Path) -> dict[str, Path]:
    """The external data files of a checked ONNX file, by the location the model names (relative
    to its folder): what travels with it to a machine that does not see the folder."""
    import onnx

    path = Path(path)
    return _check_external_data(onnx.load(str(path), load_external_data=False), path.parent, str(path))


def _pick_input(model, input_shape: tuple, where: str) -> tuple[str, str, int | None]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    want = _shown(("N", *input_shape))
    if len(inputs) != 1:
        raise ModelError(f"{where}: the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a teacher takes "
                         f"one, the samples {want}")
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        raise ModelError(f"{where}: its input {inp.name!r} is not a float tensor; the lab gives float32 samples {want}")
    shape = _shape(inp)
    fits = len(shape) == len(input_shape) + 1 and all(
        not isinstance(d, int) or d == 0 or d == w for d, w in zip(shape[1:], input_shape))
    if not fits:
        flat = f" (this data set's samples are {tuple(input_shape)}, not flat vectors: export the model for that layout)" \
            if len(shape) == 2 and len(input_shape) > 1 else ""
        raise ModelError(f"{where}: its input {inp.name!r} has shape {_shown(shape) if shape else 'unknown'}; this data set "
                         f"gives {want}: the batch first, then each sample as {tuple(input_shape)}{flat}")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return inp.name, np.dtype(FLOAT_TYPES[elem]).name, batch


def _pick_output(model, num_classes: int, where: str) -> tuple[int, str]:
    """The output holding the class scores: the first float output of shape (N, K)."""
    described = []
    for i, out in enumerate(model.graph.output):
        shape = _shape(out)
        described.append(f"{out.name} {_shown(shape) if shape else '(shape unknown)'}")
        if out.type.tensor_type.elem_type not in FLOAT_TYPES or (shape and len(shape) != 2):
            continue
        if shape and isinstance(shape[1], int) and shape[1] not in (0, num_classes):
            raise ModelError(f"{where}: its output {out.name!r} gives {shape[1]} scores per sample, but the data set has "
                             f"{num_classes} classes")
        return i, out.name
    raise ModelError(f"{where}: no output holds one score per class (float, (N, {num_classes})); its outputs are: "
                     + ", ".join(described))


def check_onnx(path: str | Path, input_shape: tuple, num_classes: int, probe: np.ndarray | None = None,
               max_mb: float = MAX_MB_PARAM.default) -> OnnxInfo:
    """A checked ONNX teacher for a data set of this input shape and class count, or ModelError.

    `probe`: a few real samples; the model is run on them to check what it gives when its
    output shape is not declared."""
    import onnx  # heavy (about 0.3 s): only when an ONNX teacher is checked
    from google.protobuf.message import DecodeError

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ModelError(f"{where}: no such ONNX file")
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise ModelError(f"{where}: {size / 1024 / 1024:.4g} MB, more than max_mb={max_mb:g} MB")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{where}: not an ONNX model (it cannot be read as one: {str(exc)[:200]})") from None
    if not model.ir_version and not len(model.graph.node):
        raise ModelError(f"{where}: not an ONNX model (it holds no graph)")
    _check_domains(model, where)
    size += sum(p.stat().st_size for p in set(_check_external_data(model, path.parent, where).values()))
    if size > max_mb * 1024 * 1024:
        raise ModelError(f"{where}: {size / 1024 / 1024:.4g} MB with its external data, more than max_mb={max_mb:g} MB")
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{where}: fails the ONNX checker: {str(exc).strip().splitlines()[0][:300]}") from None
    name, dtype, batch = _pick_input(model, tuple(input_shape), where)
    index, out_name = _pick_output(model, num_classes, where)
    info = OnnxInfo(str(path), name, dtype, batch, index, out_name, {o.domain or "ai.onnx": o.version for o in model.opset_import},
                    model.producer_name or "", size)
    if probe is not None:
        got = run(session(path), info, np.asarray(probe)[: batch or 2])
        if got.ndim != 2 or got.shape[1] != num_classes:
            raise ModelError(f"{where}: its output {out_name!r} gives shape {got.shape} for {min(len(probe), batch or 2)} "
                             f"sample(s); a teacher gives (N, {num_classes}): one score per class")
    return info


def session(path: str | Path, threads: int = 1, device: str = "cpu", optimised_path: str | Path | None = None):
    """An ONNX Runtime session: intra-op threads fixed, one inter-op thread, no custom-op library.
    With device "cuda" or "auto", the CUDA provider is used when this ONNX Runtime has it;
    `optimised_path`: where to write the graph as ONNX Runtime optimised it."""
    import onnxruntime as ort  # heavy (hundreds of ms): imported only when a session is made

    opts = ort.SessionOptions()
    if optimised_path is not None:
        opts.optimized_model_filepath = str(optimised_path)
    opts.intra_op_num_threads = threads if threads and threads > 0 else (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: ONNX Runtime cannot load the model: {str(exc).strip().splitlines()[0][:300]}") from None


def run(sess, info: OnnxInfo, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The class scores (N, K) for samples x, in batches (of the model's own size when it is
    fixed; the last one padded by repeating its last sample)."""
    step = info.batch or batch
    x = np.ascontiguousarray(x, dtype=info.input_dtype)
    out = []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        n = len(chunk)
        if info.batch and n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        try:
            scores = sess.run(None, {info.input_name: chunk})[info.output_index]
        except Exception as exc:
            raise ModelError(f"{info.path}: ONNX Runtime cannot run the model on this data set's samples: "
                             f"{str(exc).strip().splitlines()[0][:300]}") from None
        out.append(np.asarray(scores, dtype=np.float32)[:n])
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)
