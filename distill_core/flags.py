"""Command-line values shared by the `run` and `measure` commands."""
from __future__ import annotations

import json

from .errors import DistillError


def parse_named(text: str, key: str) -> dict:
    """'mlp:hidden=64-64' -> {key: 'mlp', 'hidden': '64-64'}; JSON objects are accepted too."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DistillError(f"{text!r}: not valid JSON ({exc})") from None
    name, _, rest = text.partition(":")
    out = {key: name}
    for part in filter(None, rest.split(",")):
        k, eq, v = part.partition("=")
        if not eq:
            raise DistillError(f"{text!r}: expected key=value, got {part!r}")
        out[k.strip()] = v.strip()
    return out


def parse_model_flag(text: str):
    """'mlp:hidden=64-64,dropout=0.1' -> {'arch': 'mlp', 'hidden': '64-64', ...}; a bare name stays a name."""
    return parse_named(text, "arch") if ":" in text or text.strip().startswith("{") else text


TEACHER_FILE_FLAGS = ("onnx", "outputs")  # --teacher onnx:path=model.onnx, --teacher outputs:path=outputs.npz


def parse_teacher_flag(text: str):
    """A model flag, or a teacher given as a file: 'onnx:path=m.onnx,outputs=probabilities' ->
    {'onnx': 'm.onnx', 'outputs': 'probabilities'} (the experiment file's syntax)."""
    spec = parse_model_flag(text)
    if isinstance(spec, dict) and spec.get("arch") in TEACHER_FILE_FLAGS:
        kind = spec.pop("arch")
        if "path" not in spec:
            raise DistillError(f"--teacher {text!r}: give the file, e.g. --teacher {kind}:path=my_{kind}.{'onnx' if kind == 'onnx' else 'npz'}")
        return {kind: spec.pop("path"), **spec}
    return spec
