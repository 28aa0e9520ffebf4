"""Architecture registry and named sizes.

A model spec is a dict `{"arch": NAME, **knobs}` or the name of a named size (e.g.
"hinton-teacher"). `build_model(spec, input_shape, num_classes)` returns a `DistillNet`.
"""
from __future__ import annotations

import copy

import torch

from ..errors import ConfigError, ModelError
from ..registry import Entry, Registry, coerce_knobs
from .base import DistillNet, ModelOutput, count_params

ARCHITECTURES: Registry[Entry] = Registry("architecture")


def register(name: str, description: str, params=(), kinds=("vector", "signal", "image"), **extra):
    """Register `fn(input_shape, num_classes, **knobs)`: a DistillNet, or with estimator=True an
    unfitted scikit-learn estimator (a teacher only: estimators.py)."""
    def deco(fn):
        ARCHITECTURES.add(name, Entry(name, description, tuple(params), fn, {"kinds": tuple(kinds), **extra}))
        return fn

    return deco


# Named sizes: the ones from papers, and a ladder of sensible teachers / students.
NAMED_SIZES: dict[str, dict] = {
    "hinton-teacher": {"arch": "mlp", "hidden": [1200, 1200], "dropout": 0.5,
                       "_about": "Hinton et al. 2015 MNIST teacher: 2x1200 ReLU, dropout"},
    "hinton-student": {"arch": "mlp", "hidden": [800, 800], "dropout": 0.0,
                       "_about": "Hinton et al. 2015 small net: 2x800 ReLU, no regularisation"},
    "hinton-tiny": {"arch": "mlp", "hidden": [30, 30], "dropout": 0.0,
                    "_about": "Hinton et al. 2015 speech-style tiny net: 2x30"},
    "mlp-small": {"arch": "mlp", "hidden": [64], "dropout": 0.0, "_about": "one hidden layer of 64"},
    "mlp-medium": {"arch": "mlp", "hidden": [256, 256], "dropout": 0.1, "_about": "2x256, dropout 0.1"},
    "cnn-small": {"arch": "cnn", "channels": [16, 32], "kernel": 3, "_about": "2 conv blocks, 16-32 channels"},
    "cnn-large": {"arch": "cnn", "channels": [64, 128, 256], "kernel": 3, "_about": "3 conv blocks, 64-128-256"},
    "resnet-8": {"arch": "resnet", "depth": 1, "width": 16, "_about": "ResNet-8-style, width 16"},
    "resnet-14": {"arch": "resnet", "depth": 2, "width": 16, "_about": "ResNet-14-style, width 16"},
    "mobile-0.5": {"arch": "mobile", "width_mult": 0.5, "blocks": 3, "_about": "mobile CNN at half width"},
    "logistic": {"arch": "linear", "_about": "logistic regression"},
}


def normalise_spec(spec: dict | str) -> dict:
    """A full, validated spec: named sizes expanded, knobs typed, defaults filled."""
    if isinstance(spec, str):
        if spec in NAMED_SIZES:
            spec = NAMED_SIZES[spec]
        elif spec in ARCHITECTURES:
            spec = {"arch": spec}
        else:
            raise ConfigError(
                f"unknown model {spec!r}; architectures: {', '.join(ARCHITECTURES.names())}; "
                f"named sizes: {', '.join(NAMED_SIZES)}"
            )
    if not isinstance(spec, dict) or "arch" not in spec:
        raise ConfigError(f"a model spec needs an 'arch' (one of {', '.join(ARCHITECTURES.names())}); got {spec!r}")
    spec = {k: v for k, v in copy.deepcopy(spec).items() if not k.startswith("_")}
    arch = spec.pop("arch")
    entry = ARCHITECTURES.get(arch)
    return {"arch": arch, **coerce_knobs(entry.params, spec, f"architecture {arch}")}


def check_input_kind(spec: dict | str, kind: str) -> None:
    """Raise ModelError if the architecture cannot take this kind of input."""
    spec = normalise_spec(spec)
    kinds = ARCHITECTURES.get(spec["arch"]).extra["kinds"]
    if kind not in kinds:
        raise ModelError(
            f"{spec['arch']} works on {' and '.join(kinds)} inputs, not {kind} inputs; "
            f"architectures for {kind} inputs: "
            + ", ".join(e.name for e in ARCHITECTURES if kind in e.extra["kinds"])
        )


def _arch(spec) -> str | None:
    if isinstance(spec, str):
        return NAMED_SIZES[spec]["arch"] if spec in NAMED_SIZES else spec
    return spec.get("arch") if isinstance(spec, dict) else None


def is_estimator(spec: dict | str | None) -> bool:
    """Whether a model spec names a scikit-learn teacher (registered, but not a network)."""
    arch = _arch(spec)
    return arch in ARCHITECTURES and bool(ARCHITECTURES.get(arch).extra.get("estimator"))


def is_network(spec: dict | str | None) -> bool:
    """Whether a model spec is a network of this lab: not an estimator, nor a teacher that only
    gives outputs (whose spec names no registered architecture)."""
    arch = _arch(spec)
    return arch in ARCHITECTURES and not is_estimator(spec)


def build_model(spec: dict | str, input_shape: tuple[int, ...], num_classes: int, kind: str | None = None) -> DistillNet:
    spec = normalise_spec(spec)
    if is_estimator(spec):
        raise ModelError(f"{spec['arch']} is a scikit-learn model, not a network: it can be a teacher, not a student "
                         "(a student learns by gradient descent)")
    if kind is not None:
        check_input_kind(spec, kind)
    knobs = {k: v for k, v in spec.items() if k != "arch"}
    return ARCHITECTURES.get(spec["arch"]).factory(tuple(input_shape), num_classes, **knobs)


def describe_spec(spec: dict | str) -> str:
    """Short human label, e.g. 'mlp 1200-1200 d0.5' or 'cnn 16-32' ('onnx model.onnx' for a
    teacher whose spec only describes it)."""
    if isinstance(spec, dict) and spec.get("arch") not in ARCHITECTURES:
        return " ".join(str(v) for v in spec.values())
    spec = normalise_spec(spec)
    a = spec["arch"]
    if a == "mlp":
        s = "mlp " + ("-".join(map(str, spec["hidden"])) or "none")
        return s + (f" d{spec['dropout']:g}" if spec["dropout"] else "")
    if a == "cnn":
        return "cnn " + "-".join(map(str, spec["channels"]))
    if a == "resnet":
        return f"resnet d{spec['depth']} w{spec['width']}"
    if a == "mobile":
        return f"mobile x{spec['width_mult']:g} b{spec['blocks']}"
    if a in zoo.DESCRIBE:
        return zoo.DESCRIBE[a](spec)
    return a


from . import architectures, estimators, zoo  # noqa: E402,F401  (registers the entries; zoo adds its named sizes)
from .checkpoint import load_weights, save_weights  # noqa: E402

__all__ = ["ARCHITECTURES", "NAMED_SIZES", "DistillNet", "ModelOutput", "build_model", "normalise_spec",
           "describe_spec", "check_input_kind", "is_estimator", "is_network", "count_params", "load_weights", "save_weights", "torch", "ModelError"]
