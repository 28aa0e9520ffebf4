"""A run: the one typed object that flows from `config.expand` to the loss.

`expand` makes every `RunConfig` of an experiment, validated; the store keeps it as JSON
(`to_dict`), and a worker rebuilds it (`from_dict`) and hands it to the engine. Its `hash` is
its identity: two runs with the same hash are the same run, and a teacher's hash is the key of
its cache entry (teachers.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from .constants import STUDENT
from .errors import ConfigError
from .files import content_hash
from .train_params import ADDED_LATER, DEFAULTS, NON_SEMANTIC

# Execution settings: they change where and how fast a run goes (or when), not its numbers.
_NOT_IDENTITY = ("measure", "after")


@dataclass(frozen=True, eq=True)
class RunConfig:
    """What one run trains and how. The dict fields are the run's knobs, already validated:
    treat them as read-only (use `dataclasses.replace` for a changed copy)."""

    role: str  # constants.TEACHER, ASSISTANT or STUDENT
    dataset: dict  # {"name": ..., **knobs} and, for a user's file, its "sha256"
    model: dict  # a normalised model spec {"arch": ..., **knobs}
    method: dict  # {"name": ..., **knobs}, knobs filled in by the method's Params
    train: dict  # training settings (train_params.TRAIN_PARAMS)
    seed: int = 0
    teacher: RunConfig | None = None  # whom a student (or an assistant) learns from
    start: RunConfig | None = None  # the run whose trained weights a student starts from (QAD's fp32 student)
    weights: dict | None = None  # {"path", "sha256"}: a teacher loaded from the user's file
    # A teacher that is not a network of this lab, given as a file: {"kind": "onnx" or "outputs",
    # "path", "sha256", **its options} (teachers.py); its `model` then only describes it.
    source: dict | None = None
    members: tuple[RunConfig, ...] = ()  # an ensemble's teachers, each a teacher config of its own
    transfer: dict | None = None  # students only: {"omit_class": k} (Hinton et al. 2015, sec. 3)
    measure: dict | None = None  # measurement settings (measure.settings); not part of the identity
    # Scheduling only (not part of the identity): the hash of a run that must finish first when
    # it is not this run's teacher. An ensemble makes its members, so their own runs wait for it.
    after: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The run a `to_dict` made (as the store keeps it)."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"run config: unknown field(s) {', '.join(unknown)}")
        teacher, start = d.get("teacher"), d.get("start")
        members = tuple(cls.from_dict(m) for m in d.get("members") or ())
        return cls(**{**d, "teacher": cls.from_dict(teacher) if teacher else None,
                      "start": cls.from_dict(start) if start else None, "members": members})

    def to_dict(self) -> dict:
        """Plain JSON-able dict; optional fields only when set (the stored shape, hashed)."""
        d = {"role": self.role, "dataset": self.dataset, "model": self.model, "method": self.method,
             "train": self.train, "seed": self.seed, "teacher": self.teacher.to_dict() if self.teacher else None}
        for key in ("weights", "source", "transfer", "measure", "after"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.start is not None:
            d["start"] = self.start.to_dict()
        if self.members:
            d["members"] = [m.to_dict() for m in self.members]
        return d

    @cached_property
    def hash(self) -> str:
        """Content hash of everything that changes the run's numbers (its teacher's included)."""
        return content_hash(self._identity())

    def _identity(self) -> dict:
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY}
        d["train"] = {k: v for k, v in self.train.items()
                      if k not in NON_SEMANTIC and not (k in ADDED_LATER and v == DEFAULTS[k])}
        d["teacher"] = self.teacher._identity() if self.teacher else None
        if self.start is not None:
            d["start"] = self.start._identity()
        if self.members:
            d["members"] = [m._identity() for m in self.members]
        return d

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def teacher_hash(self) -> str | None:
        """The identity of the teacher this run learns from (None for a teacher run)."""
        return self.teacher.hash if self.teacher else None

    @property
    def depends_on(self) -> str | None:
        """The hash of the run that must be done before this one starts: the run it starts from,
        else its teacher (which the start run itself depends on), else the ensemble that makes
        this member (`after`)."""
        return self.start.hash if self.start is not None else self.teacher_hash or self.after

    @property
    def method_name(self) -> str:
        return self.method["name"]

    @property
    def method_knobs(self) -> dict:
        return {k: v for k, v in self.method.items() if k != "name"}

    @property
    def is_student(self) -> bool:
        return self.role == STUDENT

    def with_threads(self, threads: int | None) -> RunConfig:
        """Threads = 0 ("all cores") filled with a worker's share, its teachers' too. Threads are
        not part of the hash."""
        if not threads:
            return self
        train = self.train if self.train.get("threads") else {**self.train, "threads": threads}
        teacher = self.teacher.with_threads(threads) if self.teacher else None
        start = self.start.with_threads(threads) if self.start else None
        members = tuple(m.with_threads(threads) for m in self.members)
        return dataclasses.replace(self, train=train, teacher=teacher, start=start, members=members)
