"""Short human names for run configs ("mlp-small · kd T=4 α=0.9 · seed 0")."""
from __future__ import annotations

import json
from functools import lru_cache

from .constants import STUDENT
from .errors import DistillError
from .models import ARCHITECTURES, NAMED_SIZES, describe_spec, normalise_spec
from .run_config import RunConfig


@lru_cache(maxsize=1)
def _named_sizes() -> dict[str, str]:
    """Normalised spec (as JSON) -> its named size, so a config shows as "mlp-small"."""
    out = {}
    for name in NAMED_SIZES:
        try:
            out.setdefault(json.dumps(normalise_spec(name), sort_keys=True), name)
        except DistillError:  # a named size that no longer validates has no short name
            continue
    return out


def model_label(spec: dict | str | None) -> str | None:
    """A model spec's short name: its named size if it is one, else arch(knob=value, ...)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec
    if spec.get("arch") not in ARCHITECTURES:  # a teacher given as a file, or an ensemble: its spec describes it
        return describe_spec(spec)
    named = _named_sizes().get(json.dumps(spec, sort_keys=True))
    if named:
        return named
    knobs = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "arch")
    return f"{spec.get('arch', '?')}({knobs})" if knobs else str(spec.get("arch", "?"))


def method_label(method: dict) -> str:
    name = method.get("name", "?")
    bits = []
    if "temperature" in method:
        bits.append(f"T={method['temperature']:g}")
    if "alpha" in method:
        bits.append(f"α={method['alpha']:g}")
    return " ".join([name, *bits])


# How a run's label names a teacher that was not trained here from the labels (teachers.py kinds).
KIND_NOTES = {"weights": "loaded weights", "sklearn": "scikit-learn", "onnx": "ONNX file", "outputs": "outputs file",
              "ensemble": "ensemble"}


def run_label(config: RunConfig, teacher_kind: str | None = None) -> str:
    """The label stored with a run: what it trains and how, and (for a teacher not trained here
    from the labels) the kind of teacher it is or learns from (teachers.teacher_kind)."""
    model = model_label(config.model)
    kind = teacher_kind or ("weights" if config.weights else None)
    note = KIND_NOTES.get(kind)
    if config.role != STUDENT:
        return f"{config.role} {model}" + (f" ({note})" if note and kind not in ("onnx", "outputs", "ensemble") else "")
    omitted = (config.transfer or {}).get("omit_class")
    without = f" · without class {omitted}" if omitted is not None else ""
    return f"{model} · {method_label(config.method)}{without} · seed {config.seed}" + (f" · {note} teacher" if note else "")
