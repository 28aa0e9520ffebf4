"""A run's data set, loaded once per process (a worker runs many runs on the same data).

A run config records its data set as {"name": ..., **knobs} and, for a user's file, the file's
sha256 taken when the experiment was expanded: a file edited after submission is refused.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from ..files import file_sha256
from . import load_dataset
from .base import DataBundle


def name_and_knobs(dataset: dict) -> tuple[str, dict]:
    """(name, knobs) of a run config's data set, as `load_dataset` and an ExperimentSpec take
    them: without the fingerprint of a user's file that `expand` adds."""
    knobs = {k: v for k, v in dataset.items() if k not in ("name", "sha256")}
    return dataset["name"], knobs


@lru_cache(maxsize=4)
def _load_cached(key: str) -> DataBundle:
    d = json.loads(key)
    sha = d.get("sha256")
    if sha is not None and Path(d["path"]).is_file() and file_sha256(d["path"]) != sha:
        raise DataError(f"{d['path']}: the file changed after the experiment was submitted; submit it again")
    name, knobs = name_and_knobs(d)
    return load_dataset(name, **knobs)


_provided: dict[str, DataBundle] = {}


def provide(dataset: dict, bundle: DataBundle) -> None:
    """Serve `bundle` as this data set in this process from now on: for a worker on another
    machine (a Ray node), which receives the data from its executor instead of loading it, so
    a user's file need not exist there. The last four given are kept."""
    key = json.dumps(dataset, sort_keys=True)
    _provided.pop(key, None)
    _provided[key] = bundle
    while len(_provided) > 4:
        _provided.pop(next(iter(_provided)))


def load_data(dataset: dict) -> DataBundle:
    """The data set of a run config (its `dataset` entry), cached per process."""
    key = json.dumps(dataset, sort_keys=True)
    return _provided.get(key) or _load_cached(key)
