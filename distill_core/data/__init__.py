"""Data set registry: built-in offline sets and the user's own files.

`load_dataset(name, **knobs)` returns a `DataBundle`; `DATASETS` lists what exists with knobs.
"""
from __future__ import annotations

from ..registry import Entry, Param, Registry, coerce_knobs
from .base import DataBundle, DatasetInfo

DATASETS: Registry[Entry] = Registry("data set")

# Knobs every data set has: how it is split.
SPLIT_PARAMS = (
    Param("split_seed", 0, "seed of the train / validation / test split", "int", 0),
    Param("val_fraction", 0.15, "fraction of the data held out for validation (early stopping)", "float", 0.01, 0.5),
    Param("test_fraction", 0.2, "fraction held out for the test (ignored where the set has its own test split)", "float", 0.01, 0.5),
)


def register(name: str, description: str, params=(), **extra):
    """Decorator: register `fn(**knobs) -> DataBundle` as a data set."""

    def deco(fn):
        DATASETS.add(name, Entry(name, description, tuple(params) + SPLIT_PARAMS, fn, extra))
        return fn

    return deco


def dataset_knobs(name: str, knobs: dict | None = None) -> dict:
    """The full, validated knobs of a data set (defaults filled in)."""
    entry = DATASETS.get(name)
    return coerce_knobs(entry.params, dict(knobs or {}), f"data set {name}")


def load_dataset(name: str, **knobs) -> DataBundle:
    """Load a registered data set with the given knobs (validated; defaults filled in)."""
    entry = DATASETS.get(name)
    full = dataset_knobs(name, knobs)
    bundle = entry.factory(**full)
    bundle.info.params = full
    return bundle


from . import builtin, cifar, user_files  # noqa: E402,F401  (registers the entries)

__all__ = ["DATASETS", "DataBundle", "DatasetInfo", "load_dataset", "dataset_knobs", "register"]
