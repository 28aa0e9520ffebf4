"""Experiments and runs: the one object that flows from a page (or the CLI) to a worker.

An experiment (`ExperimentSpec`) names a data set, a teacher, students, methods, temperatures,
alphas and seeds. `expand` turns it into run configs (plain dicts): the teacher, a scratch
baseline per student and seed, and one run per student x method x temperature x alpha x seed.
Each run config has a content hash (`run_hash`): an identical run is the same run.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import DATASETS, dataset_knobs
from .engine.recipe import apply_recipe
from .engine.train import NON_SEMANTIC, train_settings
from .errors import ConfigError, DistillError
from .methods import ALPHA, METHODS, TEMPERATURE
from .methods.takd import assistant_config
from .models import check_input_kind, normalise_spec

TEACHER, ASSISTANT, STUDENT = "teacher", "assistant", "student"


@dataclass
class ExperimentSpec:
    dataset: str = "digits"
    dataset_knobs: dict = field(default_factory=dict)
    teacher: dict | str = "cnn-large"  # a model spec, or {"weights": PATH, "model": spec} to load one
    students: list = field(default_factory=lambda: ["mlp-small"])
    methods: list = field(default_factory=lambda: [{"name": "kd"}])  # {"name": ..., **knobs}
    temperatures: list = field(default_factory=lambda: [4.0])
    alphas: list = field(default_factory=lambda: [0.9])
    seeds: list = field(default_factory=lambda: [0])
    train: dict = field(default_factory=dict)  # student training settings
    teacher_train: dict | None = None  # None: same as `train`
    name: str = ""
    baseline: bool = True  # add the scratch student per student and seed
    # The students' transfer set: {"omit_class": k} leaves class k out of their training and
    # validation data (not the teacher's, not the test set): Hinton et al. 2015, section 3.
    transfer: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentSpec":
        if not isinstance(d, dict):
            raise ConfigError(f"an experiment must be a mapping of settings, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown experiment field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        d = copy.deepcopy(d)
        if isinstance(d.get("methods"), list):
            d["methods"] = [{"name": m} if isinstance(m, str) else m for m in d["methods"]]
        for key in ("students", "temperatures", "alphas", "seeds"):
            if key in d and not isinstance(d[key], list):
                d[key] = [d[key]]
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def load_experiment_file(path: str | Path) -> ExperimentSpec:
    """Read an experiment from JSON or YAML; a malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {exc}") from None
    try:
        return ExperimentSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def run_hash(config: dict) -> str:
    """Content hash of a run config, ignoring settings that do not change its numbers."""
    def strip(c):
        c = dict(c)
        c["train"] = {k: v for k, v in c["train"].items() if k not in NON_SEMANTIC}
        if c.get("teacher"):
            c["teacher"] = strip(c["teacher"])
        c.pop("label", None)
        return c

    blob = json.dumps(strip(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_name_and_knobs(dataset: dict) -> tuple[str, dict]:
    """(name, knobs) of a run config's data set, as `load_dataset` and an ExperimentSpec take
    them: without the fingerprint of a user's file that `expand` adds."""
    knobs = {k: v for k, v in dataset.items() if k not in ("name", "sha256")}
    return dataset["name"], knobs


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_list(name: str, values: list, lo: float, hi: float, kind=float) -> list:
    if not values:
        raise ConfigError(f"{name}: give at least one value")
    out = []
    for v in values:
        try:
            v = kind(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {v!r} is not a number") from None
        if not lo <= v <= hi:
            raise ConfigError(f"{name}: {v} is outside [{lo}, {hi}]")
        out.append(v)
    return list(dict.fromkeys(out))


def _teacher_config(spec: ExperimentSpec, dataset: dict, info) -> dict:
    teacher = spec.teacher
    settings = train_settings(spec.teacher_train if spec.teacher_train is not None else spec.train)
    if isinstance(teacher, dict) and "weights" in teacher:
        path = Path(teacher["weights"])
        if not path.is_file():
            raise ConfigError(f"teacher weights {path}: no such file")
        model = normalise_spec(teacher.get("model") or {})
        check_input_kind(model, info.kind)
        weights = {"path": str(path), "sha256": file_sha256(path)}
    else:
        model = normalise_spec(teacher)
        check_input_kind(model, info.kind)
        weights = None
    cfg = {"role": TEACHER, "dataset": dataset, "model": model, "method": {"name": "scratch"},
           "train": apply_recipe(settings, model, info.kind), "seed": 0, "teacher": None}
    if weights:
        cfg["weights"] = weights
    return cfg


def _check_transfer(transfer, num_classes: int) -> dict:
    if not transfer:
        return {}
    if not isinstance(transfer, dict) or set(transfer) - {"omit_class"}:
        raise ConfigError(f"transfer: expected {{'omit_class': class index}}, got {transfer!r}")
    k = transfer.get("omit_class")
    if k is None:
        return {}
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_classes:
        raise ConfigError(f"transfer: omit_class must be a class index from 0 to {num_classes - 1}, got {k!r}")
    return {"omit_class": k}


def expand(spec: ExperimentSpec) -> list[dict]:
    """Validate an experiment and list its runs, dependencies first (teacher, then students).

    Raises ConfigError (a DistillError) with a message fit for the widget it concerns.
    """
    if spec.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {spec.dataset!r}; available: {', '.join(DATASETS.names())}")
    knobs = dataset_knobs(spec.dataset, spec.dataset_knobs)
    dataset = {"name": spec.dataset, **knobs}
    if knobs.get("path") and Path(knobs["path"]).is_file():
        # A user's file is part of the run's identity: edited in place, it makes new runs (and a
        # new teacher), and a worker refuses it if it changed after submission (runner.load_data).
        dataset["sha256"] = file_sha256(knobs["path"])
    from .data import load_dataset  # the data set must load: its errors belong to validation

    info = load_dataset(spec.dataset, **knobs).info
    teacher = _teacher_config(spec, dataset, info)
    if not spec.students:
        raise ConfigError("students: choose at least one student architecture")
    students = []
    for s in spec.students:
        model = normalise_spec(s)
        check_input_kind(model, info.kind)
        students.append(model)
    students = list({json.dumps(s, sort_keys=True): s for s in students}.values())
    temperatures = _check_list("temperatures", spec.temperatures, 0.1, 100.0)
    alphas = _check_list("alphas", spec.alphas, 0.0, 1.0)
    seeds = _check_list("seeds", spec.seeds, 0, 2**31 - 1, int)
    extra = {"transfer": tr} if (tr := _check_transfer(spec.transfer, info.num_classes)) else {}  # students only
    settings = train_settings(spec.train)
    if not spec.methods:
        raise ConfigError("methods: choose at least one method")

    from .models import build_model  # cheap: models of these sizes build in milliseconds

    t_model = build_model(teacher["model"], info.input_shape, info.num_classes)
    runs: list[dict] = [teacher]
    seen = {run_hash(teacher)}

    def add(cfg):
        h = run_hash(cfg)
        if h not in seen:
            seen.add(h)
            runs.append(cfg)

    for student in students:
        s_model = build_model(student, info.input_shape, info.num_classes)
        s_settings = apply_recipe(settings, student, info.kind)
        for method_spec in spec.methods:
            if isinstance(method_spec, str):
                method_spec = {"name": method_spec}
            if not isinstance(method_spec, dict) or "name" not in method_spec:
                raise ConfigError(f"methods: each method needs a name, got {method_spec!r}")
            cls = METHODS.get(method_spec["name"])
            reason = cls.incompatibility(s_model, t_model)
            if reason:
                ok = [m.name for m in METHODS if m.incompatibility(s_model, t_model) is None]
                raise ConfigError(f"method {cls.name} cannot distil into {student['arch']}: {reason}. "
                                  f"Methods that work here: {', '.join(ok)}")
            knobs = {k: v for k, v in method_spec.items() if k != "name"}
            # The experiment's temperature and alpha grids apply to methods whose knobs are the
            # shared TEMPERATURE / ALPHA (KD's meaning); a method's own "alpha" (DKD's) is its own.
            grid_t = temperatures if TEMPERATURE in cls.params and "temperature" not in knobs else [None]
            grid_a = alphas if ALPHA in cls.params and "alpha" not in knobs else [None]
            for t in grid_t:
                for a in grid_a:
                    k = dict(knobs)
                    if t is not None:
                        k["temperature"] = t
                    if a is not None:
                        k["alpha"] = a
                    method = {"name": cls.name, **cls(**k).knobs}  # validates and fills defaults
                    # takd learns from an assistant, itself distilled from the teacher (cached like one).
                    run_teacher = assistant_config(method, teacher, info.kind) if cls.name == "takd" else teacher
                    for seed in seeds:
                        add({"role": STUDENT, "dataset": dataset, "model": student, "method": method,
                             "train": s_settings, "seed": seed, "teacher": run_teacher, **extra})
        if spec.baseline:
            for seed in seeds:
                add({"role": STUDENT, "dataset": dataset, "model": student, "method": {"name": "scratch"},
                     "train": s_settings, "seed": seed, "teacher": teacher, **extra})
    # Every student names the teacher, also those that do not learn from it: their agreement
    # with it is measured. Dependencies come first: the teacher, then the students in order.
    return runs


def validate(spec: ExperimentSpec) -> list[str]:
    """Error messages (empty when the experiment can run)."""
    try:
        expand(spec)
    except DistillError as exc:
        return [str(exc)]
    return []
