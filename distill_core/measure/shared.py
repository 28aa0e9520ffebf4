"""Figures that depend only on the architecture: measured once, shared by every run of it.

Batch-1 and batch latency in PyTorch and ONNX Runtime (fp32 and each int8 variant), FLOPs and
the inference energy per 1,000 predictions are the same numbers for twenty runs of one network
shape on one machine: only the weights differ, and none of these figures reads a weight's value.
The first run that needs them measures them and files them under a key made of exactly what they
depend on (the architecture's modules and tensor shapes, the input shape, the threads, the
runtimes' versions, the machine, and the timing settings); a later run with the same key carries
them and says so, naming the run that measured them (result["measure"]["shared"]). Accuracy,
int8 accuracy and agreement, and the files stay per run.

Entries are JSON files in `<home>/cache/measure/` (a Ray node: a folder of the node's own, so the
runs one node serves share theirs). A lock per key makes a second worker wait while the first
measures, instead of measuring the same thing beside it. Deleting the folder only costs the time
to measure again.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

from torch import nn

from ..files import held_lock, write_json
from .compute import architecture_fingerprint

# The measure settings that change a shared figure (the rest change per-run files or checks).
SETTINGS_KEYS = ("latency", "latency_seconds", "throughput_batch", "inference_seconds", "energy", "country",
                 "power_secs", "onnx", "exporter", "int8", "int8_mode")


def graph_fingerprint(path: str | Path) -> str:
    """sha256 of an ONNX graph's structure: its nodes (operator, attributes, wiring) and the dtype
    and shape of each initializer, not their values. Two int8 files that differ only in weights
    and scales run alike; a change in how the graph is made changes it."""
    import onnx

    graph = onnx.load(str(path)).graph
    nodes = [(n.op_type, n.domain, list(n.input), list(n.output),
              sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute if a.type != onnx.AttributeProto.TENSOR))
             for n in graph.node]
    inits = sorted((t.name, t.data_type, list(t.dims)) for t in graph.initializer)
    return hashlib.sha256(json.dumps([nodes, inits]).encode()).hexdigest()[:16]


def runtimes() -> dict:
    """The versions and the machine the shared figures were measured with."""
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "machine": platform.node(),
            "processor": platform.machine()}


def shared_key(model: nn.Module, input_shape, threads: int, settings: dict, batch: int) -> tuple[str, dict]:
    """The key of `model`'s shared figures and what it is made of."""
    parts = {"architecture": architecture_fingerprint(model), "input_shape": list(input_shape), "threads": threads,
             "batch": batch, "runtimes": runtimes(), "settings": {k: settings[k] for k in SETTINGS_KEYS}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24], parts


class SharedFigures:
    """One architecture's shared figures during one run's measuring.

    `get(name)` gives a figure another run measured (None when there is none: measure it and
    `put` it); `summary()` says which figures this run carries and from whom. Only available
    figures are kept: one that failed is measured again by the next run.
    """

    def __init__(self, entry: dict | None, run: str | None, filer=None):
        self.entry = entry or {}
        self.run = run
        self.carried: dict[str, str | None] = {}
        self.new: dict[str, dict] = {}
        self._filer = filer  # files self.new into the entry on disk (shared_figures)

    def publish(self) -> None:
        """File the figures measured so far now, not when the block ends: a run that measured an
        architecture's first figures then stops holding the other workers' runs of it (they wait
        on the key's lock) while it does its per-run work (int8, exports, the card)."""
        if self._filer is not None:
            self._filer(self)

    def get(self, name: str):
        """The figure `name` another run measured (a copy), or None."""
        found = self.take((name,))
        return found[0] if found else None

    def take(self, names) -> list | None:
        """The figures `names`, all from the entry, or None unless every one is there (figures
        measured together, as a timing and the energy read during it, are carried together)."""
        stored = [(self.entry.get("figures") or {}).get(n) for n in names]
        if not all(isinstance(x, dict) and "figure" in x for x in stored):
            return None
        for n, x in zip(names, stored):
            self.carried[n] = x.get("measured_by")
        return [json.loads(json.dumps(x["figure"])) for x in stored]  # copies: the run may add to them

    def put(self, name: str, figure) -> None:
        if isinstance(figure, dict) and figure.get("available", True) and figure.get("ok", True):
            self.new[name] = {"figure": figure, "measured_by": self.run, "measured_at": time.time()}

    def summary(self, key: str) -> dict:
        """{"key", "measured": names this run measured and filed, "carried": {name: the run
        (hash) that measured it}, "measured_by": those runs}."""
        return {"key": key, "measured": sorted(self.new), "carried": dict(sorted(self.carried.items())),
                "measured_by": sorted({r for r in self.carried.values() if r})}


class NotShared(SharedFigures):
    """Sharing turned off (measure.share = false): every figure is measured by this run."""

    def __init__(self):
        super().__init__(None, None)

    def take(self, names) -> None:
        return None

    def summary(self, key: str | None = None) -> dict:
        return {"available": False, "reason": "turned off (measure.share = false)"}


@contextmanager
def shared_figures(folder: str | Path | None, model: nn.Module, input_shape, threads: int, settings: dict, batch: int,
                   run: str | None):
    """The shared figures of `model` for the block, which measures what is missing and `put`s it.

    Before an architecture's first entry exists, the block holds the key's lock (at most a
    minute's wait), so two workers measuring it at once do it once; it lets go as soon as the
    block calls `publish()` after measuring the shared figures, so other runs carry them
    without waiting for this run's per-run measuring. On leaving, figures the entry lacked
    are added to it. Yields (SharedFigures, key); with `folder` None or settings["share"] false,
    a NotShared."""
    if folder is None or not settings.get("share", True):
        yield NotShared(), None
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key, parts = shared_key(model, input_shape, threads, settings, batch)
    path, lock = folder / f"{key}.json", folder / f".{key}.lock"
    empty = {"key": key, "parts": parts, "figures": {}}
    with ExitStack() as waited_for:  # holds the key's lock while the first entry is being measured
        entry = _read(path)
        holding = entry is None
        if holding:  # the architecture's first entry: the others wait until it is filed
            waited_for.enter_context(held_lock(lock))
            entry = _read(path)  # another worker may have filed it while this one waited
        filed: set[str] = set()

        def filer(figures: SharedFigures) -> None:
            nonlocal holding
            if not set(figures.new) <= filed:
                with held_lock(lock) if not holding else nullcontext():
                    _file(path, figures, empty)
                filed.update(figures.new)
            if holding:  # the entry exists now: nobody need wait for it
                waited_for.close()
                holding = False

        figures = SharedFigures(entry, run, filer)
        yield figures, key
        figures.publish()


def _file(path: Path, figures: SharedFigures, empty: dict) -> None:
    """Add the figures this run measured to the entry as it is on disk now (the first kept)."""
    if figures.new:
        entry = _read(path) or empty
        entry["figures"] = {**figures.new, **entry["figures"]}
        write_json(path, entry)


def _read(path: Path) -> dict | None:
    """An entry, or None when there is none or it cannot be read (it is then measured again)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("figures"), dict) else None
