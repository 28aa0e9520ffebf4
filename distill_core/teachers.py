"""Teachers: the kinds of teacher a student can learn from, their one identity, and the cache.

A teacher is a run config of role teacher or assistant (`RunConfig`); its identity is that
config's `hash` (a file it comes from is in the config with its sha256). It is made once per
home folder and kept in `teachers/<hash>/` (paths.py) with its logits on every split, so every
student of the same teacher skips both the teacher's making and its forward passes.

Kinds, one `Teacher` subclass each, picked by `teacher_of(config)`:

    trained    a lab architecture trained here from the labels
    weights    a lab architecture loaded from the user's checkpoint (checked against its sha256)
    distilled  a lab architecture distilled here from another teacher (TAKD's assistant)
    sklearn    a scikit-learn model fitted here on a table (models/estimators.py), kept as ONNX
    onnx       an ONNX file run in ONNX Runtime (checked by onnx_files.py)
    outputs    a file of the teacher's outputs, one row per sample (outputs_files.py)
    ensemble   the mean of several teachers' logits or probabilities, each made and cached alone

The first three are networks of this lab: their weights are cached and every method can use
them. The others give only their logits (`TeacherOutputs.model` is None): the methods that need
a teacher's features refuse them (config.expand says which methods work).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import onnx_files, outputs_files, paths
from .data import DataBundle
from .data.cache import load_data, name_and_knobs
from .engine.device import pick_device
from .engine.train import TrainResult, train_model
from .errors import DistillError, ModelError
from .evaluate import evaluate_logits, predict_logits
from .files import file_sha256, locate, read_tree, write_atomic, write_json, write_tree
from .labels import model_label
from .methods import make_method
from .models import DistillNet, build_model, count_params, is_estimator, load_weights, save_weights
from .models.estimators import fit_estimator, log_probabilities, to_onnx_bytes
from .run_config import RunConfig

SPLITS = ("train", "val", "test")
ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


@dataclass
class TeacherOutputs:
    """What a student run needs from its teacher."""

    model: DistillNet | None  # None for a teacher without a network of this lab: logit methods only
    logits: dict[str, torch.Tensor]  # per split, for the cached-logits path of the training loop
    meta: dict  # kind, role, model, params, test_accuracy, train, phases, created (and what the kind adds)
    cached: bool  # taken from the cache (True) or made by this run
    onnx: Path | None = None  # the ONNX file that computes it, for a teacher measured through one


@dataclass
class Made:
    """What a kind makes: a network (its logits are then computed from it) or the logits alone."""

    model: DistillNet | None = None
    train: TrainResult | None = None
    logits: dict[str, torch.Tensor] | None = None
    onnx: bytes | None = None  # a fitted scikit-learn model, kept as ONNX in its cache folder
    meta: dict = field(default_factory=dict)  # what the kind adds to the meta


def build(config: RunConfig, data: DataBundle) -> DistillNet:
    """The freshly initialised network of a run config, seeded by the run's seed."""
    torch.manual_seed(config.seed)
    return build_model(config.model, data.info.input_shape, data.info.num_classes, data.info.kind)


def all_logits(model: DistillNet, data: DataBundle, device: str = "cpu") -> dict[str, torch.Tensor]:
    return {s: predict_logits(model, data.split(s)[0], device=device) for s in SPLITS}


def _split_rows(full: np.ndarray, data: DataBundle) -> dict[str, torch.Tensor]:
    """Rows computed for the splits one after another (train, val, test) cut back into splits."""
    sizes = data.sizes()
    out, start = {}, 0
    for s in SPLITS:
        out[s] = torch.from_numpy(np.ascontiguousarray(full[start : start + sizes[s]]))
        start += sizes[s]
    return out


def _unchanged(source: dict) -> Path:
    """Where a teacher file is on this machine (`files.locate`: a Ray node reads its copy);
    refused when edited after the experiment was submitted (its sha256 is its identity)."""
    path = locate(source["path"], source["sha256"])
    if path.is_file() and file_sha256(path) != source["sha256"]:
        raise ModelError(f"{source['path']}: the file changed after the experiment was submitted; submit it again")
    return path


# -- kinds -------------------------------------------------------------------------------------------


class Teacher(ABC):
    """One kind of teacher, for one teacher config."""

    kind: ClassVar[str]
    network: ClassVar[bool] = True  # a network of this lab: weights cached, features for every method

    def __init__(self, config: RunConfig):
        self.config = config

    @property
    def key(self) -> str:
        """Its identity, and the name of its cache folder."""
        return self.config.hash

    @classmethod
    @abstractmethod
    def serves(cls, config: RunConfig) -> bool:
        """Whether a teacher config is of this kind."""

    @property
    def parents(self) -> tuple[RunConfig, ...]:
        """Teachers this one is made from (made first): its own teacher, or an ensemble's members."""
        return ()

    @abstractmethod
    def make(self, data: DataBundle, recorder, parents: list[TeacherOutputs],
             on_progress: ProgressFn | None, should_stop: StopFn | None) -> Made:
        """Train, fit or load it (`recorder.phase` times the work)."""

    def load(self, data: DataBundle, folder: Path) -> DistillNet | None:
        """Its network from a cache folder (None for a teacher without one)."""
        if not self.network:
            return None
        return load_weights(build(self.config, data), folder / paths.WEIGHTS).eval()

    def onnx_file(self, folder: Path) -> Path | None:
        """The ONNX file that computes it, when it is measured through one (not a lab network)."""
        return None

    def phase(self, recorder, what: str):
        return recorder.phase(f"{self.config.role}_{what}")


class Trained(Teacher):
    kind = "trained"

    @classmethod
    def serves(cls, config):
        return config.teacher is None and config.weights is None

    def make(self, data, recorder, parents, on_progress, should_stop):
        parent = parents[0] if parents else None
        model = build(self.config, data)
        method = make_method(self.config.method_name, **self.config.method_knobs)
        with self.phase(recorder, "training"):
            train = train_model(model, data, self.config.train, method, teacher=parent.model if parent else None,
                                teacher_logits=parent.logits["train"] if parent else None, seed=self.config.seed,
                                phase=self.config.role, on_progress=on_progress, should_stop=should_stop)
        return Made(model=model, train=train)


class Distilled(Trained):
    """Trained like `Trained`, with the method (KD) learning from its own teacher."""

    kind = "distilled"

    @classmethod
    def serves(cls, config):
        return config.teacher is not None

    @property
    def parents(self):
        return (self.config.teacher,)


class Weights(Teacher):
    kind = "weights"

    @classmethod
    def serves(cls, config):
        return config.weights is not None

    def make(self, data, recorder, parents, on_progress, should_stop):
        return Made(model=load_weights(build(self.config, data), _unchanged(self.config.weights)))


class Fitted(Teacher):
    """A scikit-learn estimator fitted on the training split; stored as its ONNX file only."""

    kind = "sklearn"
    network = False

    @classmethod
    def serves(cls, config):
        return config.weights is None and config.source is None and is_estimator(config.model)

    def make(self, data, recorder, parents, on_progress, should_stop):
        flat = {s: data.split(s)[0].reshape(len(data.split(s)[0]), -1).numpy() for s in SPLITS}
        with self.phase(recorder, "training"):
            est = fit_estimator(self.config.model, flat["train"], data.y_train.numpy(), self.config.seed,
                                int(self.config.train.get("threads") or 1))
        with self.phase(recorder, "logits"):
            logits = {s: torch.from_numpy(log_probabilities(est, flat[s])) for s in SPLITS}
        onnx = to_onnx_bytes(est, flat["train"].shape[1])
        return Made(logits=logits, onnx=onnx, meta={"estimator": type(est).__name__, "onnx_bytes": len(onnx)})

    def onnx_file(self, folder):
        return folder / paths.ONNX


class OnnxFile(Teacher):
    """An ONNX model given as a file, run on every split in ONNX Runtime."""

    kind = "onnx"
    network = False

    @classmethod
    def serves(cls, config):
        return (config.source or {}).get("kind") == "onnx"

    def make(self, data, recorder, parents, on_progress, should_stop):
        src = self.config.source
        path = _unchanged(src)
        info = onnx_files.check_onnx(path, data.info.input_shape, data.info.num_classes, max_mb=src["max_mb"])
        with self.phase(recorder, "logits"):
            session = onnx_files.session(path, int(self.config.train.get("threads") or 1),
                                         self.config.train.get("device", "cpu"))
            x = torch.cat([data.split(s)[0] for s in SPLITS]).numpy()
            scores = onnx_files.run(session, info, x)
        logits, how = outputs_files.to_logits(scores, src["outputs"], src["path"])  # the name the user gave
        return Made(logits=_split_rows(logits, data),
                    meta={"outputs_taken_as": how, "onnx_bytes": info.bytes, "opsets": info.opsets,
                          "producer": info.producer, "fixed_batch": info.batch})

    def onnx_file(self, folder):
        return locate(self.config.source["path"], self.config.source["sha256"])


class OutputsFile(Teacher):
    """A file of teacher outputs, one row per sample, split with the data set's own split."""

    kind = "outputs"
    network = False

    @classmethod
    def serves(cls, config):
        return (config.source or {}).get("kind") == "outputs"

    def make(self, data, recorder, parents, on_progress, should_stop):
        src = self.config.source
        full, how = outputs_files.read_outputs(_unchanged(src), data, src["values"], src["id_column"], src["max_mb"])
        return Made(logits=outputs_files.per_split(full, data), meta={"outputs_taken_as": how})


class Ensemble(Teacher):
    """Several teachers as one: the mean of their logits, or the log of the mean of their
    probabilities. Each member is made and cached on its own (and has a run of its own)."""

    kind = "ensemble"
    network = False

    @classmethod
    def serves(cls, config):
        return bool(config.members)

    @property
    def parents(self):
        return self.config.members

    def make(self, data, recorder, parents, on_progress, should_stop):
        rule = self.config.model["combine"]
        with self.phase(recorder, "logits"):
            if rule == "mean-logits":
                logits = {s: torch.stack([p.logits[s] for p in parents]).mean(0) for s in SPLITS}
            else:
                logits = {s: torch.stack([p.logits[s].float().softmax(1) for p in parents]).mean(0).clamp_min(
                    outputs_files.EPS).log() for s in SPLITS}
        agreement = lambda p: float((p.logits["test"].argmax(1) == logits["test"].argmax(1)).float().mean())
        members = [{"hash": m.hash, "kind": teacher_of(m).kind, "model": model_label(m.model),
                    "test_accuracy": p.meta.get("test_accuracy"), "agreement_with_ensemble": agreement(p)}
                   for m, p in zip(self.config.members, parents)]
        return Made(logits=logits, meta={"members": members, "combine": rule})


# The first that serves a config wins.
KINDS: tuple[type[Teacher], ...] = (Ensemble, OnnxFile, OutputsFile, Weights, Distilled, Fitted, Trained)


def teacher_of(config: RunConfig) -> Teacher:
    """The teacher a teacher config describes, as its kind."""
    return next(kind(config) for kind in KINDS if kind.serves(config))


def kind_of(config: RunConfig) -> str:
    """A teacher config's kind: trained, weights, distilled, sklearn, onnx, outputs or ensemble."""
    return teacher_of(config).kind


def teacher_kind(config: RunConfig) -> str:
    """The kind of the teacher a run is (a teacher or assistant run) or learns from (a student)."""
    return kind_of(config.teacher if config.is_student else config)


def check_weights(model_spec: dict, path: str | Path, input_shape, num_classes: int) -> None:
    """Raise ModelError (saying which tensors) when a weight file does not fit an architecture."""
    load_weights(build_model(model_spec, tuple(input_shape), num_classes), path)


# -- the cache -----------------------------------------------------------------------------------------

_lock = threading.Lock()


class TeacherCache:
    """Teachers already made, by their key: weights, logits per split, meta and config."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = paths.teachers_root(home)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, key: str) -> Path:
        return paths.teacher_folder(self.home, key)

    def has(self, key: str) -> bool:
        return (self.folder(key) / paths.META).is_file()

    def logits(self, key: str) -> dict[str, torch.Tensor] | None:
        """A cached teacher's logits per split, or None when it is not cached."""
        path = self.folder(key) / paths.LOGITS
        return load_file(str(path)) if path.is_file() else None

    def load(self, teacher: Teacher, data: DataBundle) -> TeacherOutputs:
        folder = self.folder(teacher.key)
        meta = json.loads((folder / paths.META).read_text())
        return TeacherOutputs(teacher.load(data, folder), self.logits(teacher.key), meta, cached=True,
                              onnx=teacher.onnx_file(folder))

    def save(self, teacher: Teacher, made: Made, logits: dict, meta: dict) -> None:
        """Write into a temporary folder, then rename it into place (atomic)."""
        final = self.folder(teacher.key)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        if made.model is not None:
            save_weights(made.model, tmp / paths.WEIGHTS)
        if made.onnx is not None:
            write_atomic(tmp / paths.ONNX, made.onnx)
        save_file({k: v.contiguous() for k, v in logits.items()}, str(tmp / paths.LOGITS))
        write_json(tmp / paths.CONFIG, teacher.config.to_dict())
        write_json(tmp / paths.META, meta)
        with _lock:
            if final.exists():  # another worker finished the same teacher first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, final)

    def files(self, key: str) -> dict[str, bytes] | None:
        """A cached teacher's files, to copy it into another home (a Ray node's), or None."""
        return read_tree(self.folder(key)) if self.has(key) else None

    def add_files(self, key: str, files: dict[str, bytes]) -> None:
        """Put a teacher that `files` gave (from another home's cache) into this cache, atomically;
        kept as it is when this cache has it already."""
        if self.has(key):
            return
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            write_tree(tmp, files)
            with _lock:
                if not self.folder(key).exists():
                    os.replace(tmp, self.folder(key))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def drop(self, key: str) -> None:
        """Remove a cache entry (moved aside first, so a reader never sees half of one)."""
        folder = self.folder(key)
        if not folder.exists():
            return
        aside = folder.with_name(f".old-{key}-{os.getpid()}-{time.time_ns()}")
        try:
            os.replace(folder, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def list(self) -> list[dict]:
        """Every cached teacher's meta, with its "hash" (key) and "config"; unreadable entries are skipped."""
        out = []
        for meta in sorted(self.root.glob(f"*/{paths.META}")):
            try:
                config = json.loads((meta.parent / paths.CONFIG).read_text())
                out.append({"hash": meta.parent.name, **json.loads(meta.read_text()), "config": config})
            except (OSError, ValueError):
                continue
        return out


def obtain(config: RunConfig, cache: TeacherCache, recorder, on_progress: ProgressFn | None = None,
           should_stop: StopFn | None = None) -> TeacherOutputs:
    """The teacher of a teacher config: from the cache, or made now (the teachers it is made from
    first) and cached. `recorder` (measure.phases.PhaseRecorder) gets the phases of the work."""
    teacher = teacher_of(config)
    data = load_data(config.dataset)
    if cache.has(teacher.key):
        return cache.load(teacher, data)
    parents = []
    for p in teacher.parents:  # each in a recorder of its own, so its cache entry keeps its own phases
        own = recorder.fresh()
        parents.append(obtain(p, cache, own, on_progress, should_stop))
        recorder.absorb(own)
    made = teacher.make(data, recorder, parents, on_progress, should_stop)
    logits = made.logits
    if logits is None:
        with teacher.phase(recorder, "logits"):  # on the training device: a big teacher's forward passes are not cheap
            device = pick_device(config.train["device"])
            logits = all_logits(made.model.to(device), data, device)
            made.model.cpu()
    meta = {"kind": teacher.kind, "role": config.role, "model": config.model, "dataset": config.dataset["name"],
            "params": count_params(made.model) if made.model is not None else None,
            "test_accuracy": evaluate_logits(logits["test"], data.y_test)["accuracy"],
            "train": made.train.as_dict() if made.train else None, "phases": dict(recorder.phases),
            "created": time.time(), **made.meta}
    cache.save(teacher, made, logits, meta)
    return TeacherOutputs(made.model, logits, meta, cached=False, onnx=teacher.onnx_file(cache.folder(teacher.key)))


def export_outputs(home: str | Path, config: RunConfig, path: str | Path) -> Path:
    """A cached teacher's logits as an outputs file (NPZ, `logits` (N, K) float32, one row per
    sample in the data set's original order): what a `teacher: {outputs: PATH}` reads back."""
    logits = TeacherCache(home).logits(config.hash)
    if logits is None:
        raise ModelError(f"teacher {config.hash} is not in the cache of {home}: run it first")
    full = outputs_files.in_data_order(logits, load_data(config.dataset))
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, logits=full)
    return path


# -- what the pages look up ------------------------------------------------------------------------------


def teacher_weights(home: str | Path, config: RunConfig, own: bool = False) -> Path | None:
    """Where the weights of a run's teacher are (with `own`, of the teacher run `config` itself):
    the teacher cache, else the teacher run's folder. None for a teacher without weights."""
    if not own and config.teacher is None:
        return None
    key = config.hash if own else config.teacher_hash
    for folder in (paths.teacher_folder(home, key), paths.run_folder(home, key)):
        if (folder / paths.WEIGHTS).is_file():
            return folder / paths.WEIGHTS
    return None


def spec_fields(config: RunConfig) -> dict:
    """The ExperimentSpec fields that name this very teacher (so a new experiment reuses it):
    `teacher`, or for an ensemble `teachers` and `ensemble`."""
    kind, src = kind_of(config), config.source or {}
    if kind == "ensemble":
        return {"teachers": [spec_fields(m)["teacher"] for m in config.members], "ensemble": config.model["combine"]}
    if kind in ("onnx", "outputs"):
        return {"teacher": {kind: src["path"], **{k: v for k, v in src.items() if k not in ("kind", "path", "sha256")}}}
    if kind == "weights":
        return {"teacher": {"weights": config.weights["path"], "model": config.model}}
    return {"teacher": config.model}


def reusable(home: str | Path, dataset: str | None = None) -> list[dict]:
    """Cached teachers a new experiment can reuse, newest first. Each: hash, kind, role, dataset,
    model (short name), model_spec, params, test_accuracy, created, config, and spec_fields:
    the ExperimentSpec fields (dataset, dataset_knobs, teacher or teachers and ensemble,
    teacher_train) that make a new experiment reuse this very teacher instead of making one."""
    out = []
    for t in TeacherCache(home).list():
        cfg = t["config"]
        if not cfg.get("dataset"):
            continue
        name, knobs = name_and_knobs(cfg["dataset"])
        if dataset is not None and name != dataset:
            continue
        try:
            config = RunConfig.from_dict(cfg)
        except DistillError:  # written by another version of the lab
            continue
        out.append({
            "hash": t["hash"], "kind": kind_of(config), "role": t.get("role"), "dataset": name,
            "model": model_label(cfg.get("model")), "model_spec": cfg.get("model"), "params": t.get("params"),
            "test_accuracy": t.get("test_accuracy"), "created": t.get("created"), "config": cfg,
            "spec_fields": {"dataset": name, "dataset_knobs": knobs, "teacher_train": cfg.get("train"), "teachers": [],
                            **spec_fields(config)},
        })
    return sorted(out, key=lambda t: -(t["created"] or 0))
