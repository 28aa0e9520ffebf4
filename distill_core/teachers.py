"""Teachers: the kinds of teacher a student can learn from, their one identity, and the cache.

A teacher is a run config of role teacher or assistant (`RunConfig`); its identity is that
config's `hash` (a file it reads is in the config with its sha256). It is trained or loaded once
per home folder and kept in `teachers/<hash>/` (paths.py) with its logits on every split, so
every student of the same teacher skips both the teacher's training and its forward passes.

Kinds, one `Teacher` subclass each, picked by `teacher_of(config)`:

    trained    a lab architecture trained here from the labels
    weights    a lab architecture loaded from the user's checkpoint (checked against its sha256)
    distilled  a lab architecture distilled here from another teacher (TAKD's assistant)

A new kind (an ONNX file, a file of outputs, a scikit-learn model, an ensemble) is a new subclass
that says which configs it serves and how it gets its model, or only its logits: a teacher
without a network (`model` None) serves the methods that need logits only.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import torch
from safetensors.torch import load_file, save_file

from . import paths
from .data import DataBundle
from .data.cache import load_data, name_and_knobs
from .engine.device import pick_device
from .engine.train import TrainResult, train_model
from .errors import ModelError
from .evaluate import evaluate_logits, predict_logits
from .files import file_sha256, write_json
from .labels import model_label
from .methods import make_method
from .models import DistillNet, build_model, count_params, load_weights, save_weights
from .run_config import RunConfig

SPLITS = ("train", "val", "test")
ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


@dataclass
class TeacherOutputs:
    """What a student run needs from its teacher."""

    model: DistillNet | None  # None for a teacher without a network of this lab: logit methods only
    logits: dict[str, torch.Tensor]  # per split, for the cached-logits path of the training loop
    meta: dict  # role, model, params, test_accuracy, train, phases, created
    cached: bool  # taken from the cache (True) or made by this run


def build(config: RunConfig, data: DataBundle) -> DistillNet:
    """The freshly initialised network of a run config, seeded by the run's seed."""
    torch.manual_seed(config.seed)
    return build_model(config.model, data.info.input_shape, data.info.num_classes, data.info.kind)


def all_logits(model: DistillNet, data: DataBundle, device: str = "cpu") -> dict[str, torch.Tensor]:
    return {s: predict_logits(model, data.split(s)[0], device=device) for s in SPLITS}


# -- kinds -------------------------------------------------------------------------------------------


class Teacher(ABC):
    """One kind of teacher, for one teacher config."""

    kind: ClassVar[str]

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
    def parent(self) -> RunConfig | None:
        """A teacher this one learns from (trained first), if any."""
        return None

    @abstractmethod
    def make(self, data: DataBundle, recorder, parent: TeacherOutputs | None,
             on_progress: ProgressFn | None, should_stop: StopFn | None) -> tuple[DistillNet, TrainResult | None]:
        """Train or load its network (`recorder.phase` times the training)."""

    def load(self, data: DataBundle, folder: Path) -> DistillNet:
        """Its network from a cache folder."""
        return load_weights(build(self.config, data), folder / paths.WEIGHTS).eval()


class Trained(Teacher):
    kind = "trained"

    @classmethod
    def serves(cls, config):
        return config.teacher is None and config.weights is None

    def make(self, data, recorder, parent, on_progress, should_stop):
        model = build(self.config, data)
        method = make_method(self.config.method_name, **self.config.method_knobs)
        with recorder.phase(f"{self.config.role}_training"):
            train = train_model(model, data, self.config.train, method, teacher=parent.model if parent else None,
                                teacher_logits=parent.logits["train"] if parent else None, seed=self.config.seed,
                                phase=self.config.role, on_progress=on_progress, should_stop=should_stop)
        return model, train


class Distilled(Trained):
    """Trained like `Trained`, with the method (KD) learning from its own teacher."""

    kind = "distilled"

    @classmethod
    def serves(cls, config):
        return config.teacher is not None

    @property
    def parent(self):
        return self.config.teacher


class Weights(Teacher):
    kind = "weights"

    @classmethod
    def serves(cls, config):
        return config.weights is not None

    def make(self, data, recorder, parent, on_progress, should_stop):
        w = self.config.weights
        if Path(w["path"]).is_file() and file_sha256(w["path"]) != w["sha256"]:
            raise ModelError(f"{w['path']}: the weight file changed after the experiment was submitted; submit it again")
        return load_weights(build(self.config, data), w["path"]), None


KINDS: tuple[type[Teacher], ...] = (Weights, Distilled, Trained)  # the first that serves a config wins


def teacher_of(config: RunConfig) -> Teacher:
    """The teacher a teacher config describes, as its kind."""
    return next(kind(config) for kind in KINDS if kind.serves(config))


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
        return TeacherOutputs(teacher.load(data, folder), self.logits(teacher.key), meta, cached=True)

    def save(self, teacher: Teacher, model: DistillNet, logits: dict, meta: dict) -> None:
        """Write into a temporary folder, then rename it into place (atomic)."""
        final = self.folder(teacher.key)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        save_weights(model, tmp / paths.WEIGHTS)
        save_file({k: v.contiguous() for k, v in logits.items()}, str(tmp / paths.LOGITS))
        write_json(tmp / paths.CONFIG, teacher.config.to_dict())
        write_json(tmp / paths.META, meta)
        with _lock:
            if final.exists():  # another worker finished the same teacher first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, final)

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
    """The teacher of a teacher config: from the cache, or made now (its own teacher first) and
    cached. `recorder` (measure.phases.PhaseRecorder) gets the training and logits phases."""
    teacher = teacher_of(config)
    data = load_data(config.dataset)
    if cache.has(teacher.key):
        return cache.load(teacher, data)
    parent = obtain(teacher.parent, cache, recorder, on_progress, should_stop) if teacher.parent else None
    model, train = teacher.make(data, recorder, parent, on_progress, should_stop)
    role = config.role
    with recorder.phase(f"{role}_logits"):  # on the training device: a big teacher's forward passes are not cheap
        device = pick_device(config.train["device"])
        logits = all_logits(model.to(device), data, device)
        model.cpu()
    meta = {"role": role, "model": config.model, "dataset": config.dataset["name"], "params": count_params(model),
            "test_accuracy": evaluate_logits(logits["test"], data.y_test)["accuracy"],
            "train": train.as_dict() if train else None, "phases": dict(recorder.phases), "created": time.time()}
    cache.save(teacher, model, logits, meta)
    return TeacherOutputs(model, logits, meta, cached=False)


# -- what the pages look up ------------------------------------------------------------------------------


def teacher_weights(home: str | Path, config: RunConfig) -> Path | None:
    """Where the weights of a run's teacher are: the teacher cache, else the teacher run's folder."""
    if config.teacher is None:
        return None
    key = config.teacher_hash
    for folder in (paths.teacher_folder(home, key), paths.run_folder(home, key)):
        if (folder / paths.WEIGHTS).is_file():
            return folder / paths.WEIGHTS
    return None


def reusable(home: str | Path, dataset: str | None = None) -> list[dict]:
    """Cached teachers a new experiment can reuse, newest first. Each: hash, role, dataset,
    model (short name), model_spec, params, test_accuracy, created, config, and spec_fields:
    the ExperimentSpec fields (dataset, dataset_knobs, teacher, teacher_train) that make a new
    experiment reuse this very teacher instead of training one."""
    out = []
    for t in TeacherCache(home).list():
        cfg = t["config"]
        if not cfg.get("dataset"):
            continue
        name, knobs = name_and_knobs(cfg["dataset"])
        if dataset is not None and name != dataset:
            continue
        out.append({
            "hash": t["hash"], "role": t.get("role"), "dataset": name, "model": model_label(cfg.get("model")),
            "model_spec": cfg.get("model"), "params": t.get("params"), "test_accuracy": t.get("test_accuracy"),
            "created": t.get("created"), "config": cfg,
            "spec_fields": {"dataset": name, "dataset_knobs": knobs, "teacher": cfg.get("model"),
                            "teacher_train": cfg.get("train")},
        })
    return sorted(out, key=lambda t: -(t["created"] or 0))
