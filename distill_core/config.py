"""Experiments and the runs they expand into.

An experiment (`ExperimentSpec`) names a data set, a teacher, students, methods, temperatures,
alphas and seeds; a page, the CLI or a file builds one. `expand` validates it and turns it into
typed runs (`run_config.RunConfig`), once per launch: the teacher, a scratch baseline per student
and seed, and one run per student x method x temperature x alpha x seed. Each run's `hash` is
its identity: an identical run is the same run.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .constants import SCRATCH, STUDENT, TEACHER
from .data import DATASETS, dataset_knobs, load_dataset
from .errors import ConfigError
from .files import file_sha256
from .methods import ALPHA, METHODS, TEMPERATURE
from .models import build_model, check_input_kind, normalise_spec
from .recipes import apply_recipe
from .registry import Param
from .run_config import RunConfig
from .train_params import train_settings

SEED = Param("seed", 0, "random seed of a run (initialisation and batch order)", "int", 0, 2**31 - 1)


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
    def from_dict(cls, d: dict) -> ExperimentSpec:
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
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        if yaml_file:
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid {'YAML' if yaml_file else 'JSON'}: {exc}") from None
    try:
        return ExperimentSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def sweep(values: list, param: Param, what: str) -> list:
    """The values of a sweep (temperatures, alphas, seeds), each checked by its Param, in
    order and without repeats; a bad one is a ConfigError naming `what`."""
    if not values:
        raise ConfigError(f"{what}: give at least one value")
    out = []
    for v in values:
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: {v!r} is not a number") from None
        try:
            out.append(param.coerce(v))
        except ConfigError as exc:
            if param.min is not None and number < param.min or param.max is not None and number > param.max:
                shown = number if param.kind == "float" else v
                raise ConfigError(f"{what}: {shown} is outside [{param.min}, {param.max}]") from None
            raise ConfigError(f"{what}: {exc}") from None
    return list(dict.fromkeys(out))


def _teacher_config(spec: ExperimentSpec, dataset: dict, kind: str) -> RunConfig:
    teacher = spec.teacher
    settings = train_settings(spec.teacher_train if spec.teacher_train is not None else spec.train)
    weights = None
    if isinstance(teacher, dict) and "weights" in teacher:
        path = Path(teacher["weights"])
        if not path.is_file():
            raise ConfigError(f"teacher weights {path}: no such file")
        teacher = teacher.get("model") or {}
        weights = {"path": str(path), "sha256": file_sha256(path)}
    model = normalise_spec(teacher)
    check_input_kind(model, kind)
    return RunConfig(role=TEACHER, dataset=dataset, model=model, method={"name": SCRATCH},
                     train=apply_recipe(settings, model, kind), seed=0, weights=weights)


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


def expand(spec: ExperimentSpec) -> list[RunConfig]:
    """Validate an experiment and list its runs, dependencies first (teacher, then students).

    Raises ConfigError (a DistillError) with a message fit for the widget it concerns.
    """
    if spec.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {spec.dataset!r}; available: {', '.join(DATASETS.names())}")
    knobs = dataset_knobs(spec.dataset, spec.dataset_knobs)
    dataset = {"name": spec.dataset, **knobs}
    if knobs.get("path") and Path(knobs["path"]).is_file():
        # A user's file is part of the run's identity: edited in place, it makes new runs (and a
        # new teacher), and a worker refuses it if it changed after submission (data/cache.py).
        dataset["sha256"] = file_sha256(knobs["path"])
    info = load_dataset(spec.dataset, **knobs).info  # the data set must load: its errors belong to validation
    teacher = _teacher_config(spec, dataset, info.kind)
    if not spec.students:
        raise ConfigError("students: choose at least one student architecture")
    students = []
    for s in spec.students:
        model = normalise_spec(s)
        check_input_kind(model, info.kind)
        students.append(model)
    students = list({json.dumps(s, sort_keys=True): s for s in students}.values())
    temperatures = sweep(spec.temperatures, TEMPERATURE, "temperatures")
    alphas = sweep(spec.alphas, ALPHA, "alphas")
    seeds = sweep(spec.seeds, SEED, "seeds")
    transfer = _check_transfer(spec.transfer, info.num_classes) or None  # students only
    settings = train_settings(spec.train)
    if not spec.methods:
        raise ConfigError("methods: choose at least one method")

    t_model = build_model(teacher.model, info.input_shape, info.num_classes)  # milliseconds at these sizes
    runs: list[RunConfig] = [teacher]
    seen = {teacher.hash}

    def add(run: RunConfig) -> None:
        if run.hash not in seen:
            seen.add(run.hash)
            runs.append(run)

    def student(model: dict, method: dict, seed: int, run_teacher: RunConfig) -> RunConfig:
        return RunConfig(role=STUDENT, dataset=dataset, model=model, method=method,
                         train=apply_recipe(settings, model, info.kind), seed=seed, teacher=run_teacher, transfer=transfer)

    for model in students:
        s_model = build_model(model, info.input_shape, info.num_classes)
        for method_spec in spec.methods:
            if isinstance(method_spec, str):
                method_spec = {"name": method_spec}
            if not isinstance(method_spec, dict) or "name" not in method_spec:
                raise ConfigError(f"methods: each method needs a name, got {method_spec!r}")
            cls = METHODS.get(method_spec["name"])
            reason = cls.incompatibility(s_model, t_model)
            if reason:
                ok = [m.name for m in METHODS if m.incompatibility(s_model, t_model) is None]
                raise ConfigError(f"method {cls.name} cannot distil into {model['arch']}: {reason}. "
                                  f"Methods that work here: {', '.join(ok)}")
            knobs = {k: v for k, v in method_spec.items() if k != "name"}
            # The experiment's temperature and alpha grids apply to methods whose knobs are the
            # shared TEMPERATURE / ALPHA (KD's meaning); a method's own "alpha" (DKD's) is its own.
            grid_t = temperatures if TEMPERATURE in cls.params and "temperature" not in knobs else [None]
            grid_a = alphas if ALPHA in cls.params and "alpha" not in knobs else [None]
            for t in grid_t:
                for a in grid_a:
                    given = {**knobs, **({"temperature": t} if t is not None else {}), **({"alpha": a} if a is not None else {})}
                    valid = cls.coerce(given)
                    run_teacher = cls.teacher_for(valid, teacher, info.kind)
                    for seed in seeds:
                        add(student(model, {"name": cls.name, **valid}, seed, run_teacher))
        if spec.baseline:
            for seed in seeds:
                add(student(model, {"name": SCRATCH}, seed, teacher))
    # Every student names the teacher, also those that do not learn from it: their agreement
    # with it is measured. Dependencies come first: the teacher, then the students in order.
    return runs


def incompatibilities(method: str, students: list, teacher, input_shape, num_classes: int) -> dict[int, str]:
    """Why `method` cannot distil into each student (by index) from this teacher, for the
    students that cannot; the same check `expand` makes, on a form not yet complete (a student
    given as None is skipped)."""
    cls = METHODS.get(method)
    t_model = build_model(teacher, tuple(input_shape), num_classes)
    out = {}
    for i, spec in enumerate(students):
        if spec is None:
            continue
        why = cls.incompatibility(build_model(spec, tuple(input_shape), num_classes), t_model)
        if why:
            out[i] = why
    return out
