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


# Knobs added after runs were first stored. At their default they change nothing, so they stay
# out of a run's data set entry (and its identity): an existing home folder keeps its runs and
# its teacher cache. A knob added later goes here too.
ADDED_LATER = {"id_column": ""}


def run_entry(name: str, knobs: dict) -> dict:
    """A run config's `dataset` entry: {"name": ..., **knobs}, knobs added later left out at
    their default (load_dataset fills them in again)."""
    return {"name": name, **{k: v for k, v in knobs.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}}


def load_dataset(name: str, **knobs) -> DataBundle:
    """Load a registered data set with the given knobs (validated; defaults filled in)."""
    entry = DATASETS.get(name)
    full = dataset_knobs(name, knobs)
    bundle = entry.factory(**full)
    bundle.info.params = full
    return bundle


from . import builtin, cifar, user_files  # noqa: E402,F401  (registers the entries)

__all__ = ["DATASETS", "DataBundle", "DatasetInfo", "load_dataset", "dataset_knobs", "register", "run_entry"]
