"""Method registry. Each module in this package registers one `Method` subclass.

`make_method(name, **knobs)` builds one; `METHODS` lists them for the CLI and the pages.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..registry import Registry
from .base import ALPHA, EMBEDDING, FEATURES, LOGITS, TEMPERATURE, Method

METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    METHODS.add(cls.name, cls)
    return cls


def make_method(name: str, **knobs) -> Method:
    return METHODS.get(name)(**knobs)


def method_knob_names(name: str) -> set[str]:
    return {p.name for p in METHODS.get(name).params}


# Import every module of this package so each registers itself; the order fixes the listing order.
_ORDER = ["scratch", "label_smoothing", "kd", "takd", "logit_std", "dkd", "dist", "fitnets", "at", "rkd", "pkt", "qad"]
_found = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base",)]
for _mod in _ORDER + sorted(set(_found) - set(_ORDER)):
    importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["METHODS", "Method", "make_method", "register", "LOGITS", "EMBEDDING", "FEATURES", "TEMPERATURE", "ALPHA"]
