"""Experiments and the runs they expand into.

An experiment (`ExperimentSpec`) names a data set, a teacher (or several), students, methods,
temperatures, alphas and seeds; a page, the CLI or a file builds one. `expand` validates it and
turns it into typed runs (`run_config.RunConfig`), once per launch: the teacher, a scratch
baseline per student and seed, and one run per student x method x temperature x alpha x seed.
Each run's `hash` is its identity: an identical run is the same run.

A teacher is a model spec (trained here: a network, or a scikit-learn model on a table),
{"weights": PATH, "model": spec} (a network loaded from the user's checkpoint), {"onnx": PATH}
(an ONNX model) or {"outputs": PATH} (a file of its outputs); `teachers: [...]` makes an
ensemble of several. A file is checked here, before anything trains, and is part of the
identity by its sha256.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from .constants import ENSEMBLE_RULES, SCRATCH, STUDENT, TEACHER
from .data import DATASETS, DataBundle, dataset_knobs, load_dataset, run_entry
from .errors import ConfigError, DistillError
from .files import file_sha256
from .methods import ALPHA, FEATURES, METHODS, TEMPERATURE, Method
from .models import build_model, check_input_kind, is_estimator, is_network, normalise_spec
from .onnx_files import ONNX_PARAMS, check_onnx
from .outputs_files import OUTPUTS_PARAMS, read_outputs
from .recipes import apply_recipe
from .registry import Param, coerce_knobs
from .run_config import RunConfig
from .train_params import train_settings

SEED = Param("seed", 0, "random seed of a run (initialisation and batch order)", "int", 0, 2**31 - 1)
ENSEMBLE = Param("ensemble", ENSEMBLE_RULES[0], "how several teachers become one: the mean of their logits, or of "
                 "their probabilities", "choice", choices=ENSEMBLE_RULES)
# A teacher given as a file: the key naming its path, and its options (checked by their Params).
TEACHER_FILES = {"onnx": ONNX_PARAMS, "outputs": OUTPUTS_PARAMS}


@dataclass
class ExperimentSpec:
    dataset: str = "digits"
    dataset_knobs: dict = field(default_factory=dict)
    # A model spec, {"weights": PATH, "model": spec}, {"onnx": PATH, ...} or {"outputs": PATH, ...}.
    teacher: dict | str = "cnn-large"
    teachers: list = field(default_factory=list)  # two or more teachers as above: an ensemble, instead of `teacher`
    ensemble: str = ENSEMBLE.default  # how the ensemble combines them: mean-logits or mean-probabilities
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


def _teacher_file(teacher: dict, key: str, data: DataBundle) -> tuple[dict, dict, str]:
    """(model, source, what it was found to be) of a teacher given as a file, checked against
    the data set now."""
    path = Path(str(teacher[key])).expanduser()
    what = "ONNX model" if key == "onnx" else "outputs file"
    if not path.is_file():
        raise ConfigError(f"teacher {what} {path}: no such file")
    opts = coerce_knobs(TEACHER_FILES[key], {k: v for k, v in teacher.items() if k != key}, f"teacher {what} {path.name}")
    if key == "onnx":
        info = check_onnx(path, data.info.input_shape, data.info.num_classes, probe=data.x_train[:2].numpy(),
                          max_mb=opts["max_mb"])
        note = (f"an ONNX model ({', '.join(f'{d} {v}' for d, v in info.opsets.items())}) taking {info.input_name!r} "
                f"{'in batches of ' + str(info.batch) if info.batch else 'with any batch size'}, giving {info.output_name!r}")
    else:
        _, how = read_outputs(path, data, opts["values"], opts["id_column"], opts["max_mb"])
        note = f"{data.n_rows} rows of {data.info.num_classes} outputs, taken as {how}"
    source = {"kind": key, "path": str(path), "sha256": file_sha256(path), **opts}
    return {"arch": key, "file": path.name}, source, note


def check_teacher_file(teacher: dict, dataset: str, knobs: dict | None = None) -> str:
    """What a teacher given as a file ({"onnx": PATH, ...} or {"outputs": PATH, ...}) was found to
    be on this data set; the DistillError of `expand` when it does not fit."""
    key = next((k for k in TEACHER_FILES if k in teacher), None)
    if key is None:
        raise ConfigError(f"not a teacher file: give one of {', '.join(TEACHER_FILES)}")
    return _teacher_file(teacher, key, load_dataset(dataset, **dataset_knobs(dataset, knobs)))[2]


def _teacher_config(teacher, settings: dict, dataset: dict, data: DataBundle) -> RunConfig:
    run = dict(role=TEACHER, dataset=dataset, method={"name": SCRATCH}, train=settings, seed=0)
    if isinstance(teacher, dict) and "teachers" in teacher:
        raise ConfigError("teachers: a member of an ensemble cannot be an ensemble itself")
    files = [k for k in TEACHER_FILES if isinstance(teacher, dict) and k in teacher]
    if files:
        model, source, _ = _teacher_file(teacher, files[0], data)
        return RunConfig(**run, model=model, source=source)
    weights = None
    if isinstance(teacher, dict) and "weights" in teacher:
        path = Path(teacher["weights"])
        if not path.is_file():
            raise ConfigError(f"teacher weights {path}: no such file")
        teacher = teacher.get("model") or {}
        weights = {"path": str(path), "sha256": file_sha256(path)}
    model = normalise_spec(teacher)
    check_input_kind(model, data.info.kind)
    if weights and is_estimator(model):
        raise ConfigError(f"teacher weights: {model['arch']} is a scikit-learn model; weight files are for the lab's networks")
    return RunConfig(**{**run, "train": apply_recipe(settings, model, data.info.kind)}, model=model, weights=weights)


def _teachers(spec: ExperimentSpec, dataset: dict, data: DataBundle) -> list[RunConfig]:
    """The teacher run, or an ensemble's run followed by its members' own runs (which wait for
    it: the ensemble makes them, each cached on its own)."""
    settings = train_settings(spec.teacher_train if spec.teacher_train is not None else spec.train)
    if not spec.teachers:
        return [_teacher_config(spec.teacher, settings, dataset, data)]
    if not isinstance(spec.teachers, list):
        raise ConfigError("teachers: give a list of teachers")
    members = []
    for i, t in enumerate(spec.teachers, 1):
        try:
            members.append(_teacher_config(t, settings, dataset, data))
        except DistillError as exc:
            raise type(exc)(f"teachers: teacher {i}: {exc}") from None
    if len(members) == 1:
        return members
    if len({m.hash for m in members}) < len(members):
        raise ConfigError("teachers: the same teacher is listed twice; an ensemble needs different teachers")
    rule = ENSEMBLE.coerce(spec.ensemble, "ensemble")
    ensemble = RunConfig(role=TEACHER, dataset=dataset, model={"arch": "ensemble", "combine": rule, "members": len(members)},
                         method={"name": SCRATCH}, train=settings, seed=0, members=tuple(members))
    return [ensemble] + [dataclasses.replace(m, after=ensemble.hash) for m in members]


def black_box(teacher: RunConfig) -> str | None:
    """What a teacher without a network of this lab is ("an ONNX model", ...), or None for a
    lab network: the methods that need a teacher's features refuse the first kind."""
    if teacher.members:
        return "an ensemble"
    if teacher.source:
        return "an ONNX model" if teacher.source["kind"] == "onnx" else "a file of outputs"
    if not is_network(teacher.model):
        return "a scikit-learn model"
    return None


def method_problem(cls: type[Method], student, teacher, without_network: str | None = None) -> str | None:
    """Why a method cannot distil into this student (a built network) from this teacher (a built
    network, or None with `without_network` saying what the teacher is instead), or None."""
    if without_network and cls.needs_network():
        need = "feature maps" if cls.needs == FEATURES else "embedding"
        return f"it needs the teacher's {need}, and the teacher is {without_network}, which gives only its outputs"
    return cls.incompatibility(student, teacher)


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


def _dataset_of(spec: ExperimentSpec) -> tuple[dict, DataBundle]:
    """The runs' data set entry and the loaded data (its errors belong to validation)."""
    if spec.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {spec.dataset!r}; available: {', '.join(DATASETS.names())}")
    knobs = dataset_knobs(spec.dataset, spec.dataset_knobs)
    dataset = run_entry(spec.dataset, knobs)
    if knobs.get("path") and Path(knobs["path"]).is_file():
        # A user's file is part of the run's identity: edited in place, it makes new runs (and a
        # new teacher), and a worker refuses it if it changed after submission (data/cache.py).
        dataset["sha256"] = file_sha256(knobs["path"])
    return dataset, load_dataset(spec.dataset, **knobs)


def teacher_runs(spec: ExperimentSpec) -> list[RunConfig]:
    """An experiment's teacher runs, checked as `expand` checks them; its students are not looked at."""
    dataset, data = _dataset_of(spec)
    return _teachers(spec, dataset, data)


def expand(spec: ExperimentSpec) -> list[RunConfig]:
    """Validate an experiment and list its runs, dependencies first (teacher, then students).

    Raises ConfigError (a DistillError) with a message fit for the widget it concerns.
    """
    dataset, data = _dataset_of(spec)
    info = data.info
    teacher_runs = _teachers(spec, dataset, data)
    teacher = teacher_runs[0]
    if not spec.students:
        raise ConfigError("students: choose at least one student architecture")
    students = []
    for s in spec.students:
        model = normalise_spec(s)
        check_input_kind(model, info.kind)
        if is_estimator(model):
            raise ConfigError(f"students: {model['arch']} is a scikit-learn model: it can teach, but a student is a "
                              "network that learns by gradient descent")
        students.append(model)
    students = list({json.dumps(s, sort_keys=True): s for s in students}.values())
    temperatures = sweep(spec.temperatures, TEMPERATURE, "temperatures")
    alphas = sweep(spec.alphas, ALPHA, "alphas")
    seeds = sweep(spec.seeds, SEED, "seeds")
    transfer = _check_transfer(spec.transfer, info.num_classes) or None  # students only
    settings = train_settings(spec.train)
    if not spec.methods:
        raise ConfigError("methods: choose at least one method")

    without = black_box(teacher)
    t_model = None if without else build_model(teacher.model, info.input_shape, info.num_classes)  # milliseconds
    runs: list[RunConfig] = list(teacher_runs)
    seen = {r.hash for r in runs}

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
            reason = method_problem(cls, s_model, t_model, without)
            if reason:
                ok = [m.name for m in METHODS if method_problem(m, s_model, t_model, without) is None]
                raise ConfigError(f"method {cls.name} cannot distil into {model['arch']}: {reason}. "
                                  f"Methods that work here: {', '.join(ok)}")
            if without and cls.uses_teacher and apply_recipe(settings, model, info.kind)["augment"]:
                raise ConfigError(f"method {cls.name} with augment on needs the teacher on every augmented batch, and "
                                  f"the teacher is {without}, which gives outputs for the data set's own samples only: "
                                  "turn augment off for the students")
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
                        run = student(model, {"name": cls.name, **valid}, seed, run_teacher)
                        start = cls.start_from(valid, run)
                        if start is not None:  # a run of its own, before this one (QAD's fp32 student)
                            add(start)
                            run = replace(run, start=start, train=cls.train_for(valid, run.train))
                        add(run)
        if spec.baseline:
            for seed in seeds:
                add(student(model, {"name": SCRATCH}, seed, teacher))
    # Every student names the teacher, also those that do not learn from it: their agreement
    # with it is measured. Dependencies come first: the teacher, then the students in order.
    return runs


def incompatibilities(method: str, students: list, teacher, input_shape, num_classes: int,
                      without_network: str | None = None) -> dict[int, str]:
    """Why `method` cannot distil into each student (by index) from this teacher (a model spec,
    or None with `without_network` saying what it is instead: see `black_box`), for the
    students that cannot; the same check `expand` makes, on a form not yet complete (a student
    given as None is skipped)."""
    cls = METHODS.get(method)
    t_model = None if without_network or teacher is None or not is_network(teacher) else \
        build_model(teacher, tuple(input_shape), num_classes)
    if t_model is None and without_network is None and teacher is not None:
        without_network = "a scikit-learn model"
    out = {}
    for i, spec in enumerate(students):
        if spec is None or is_estimator(spec):
            continue
        why = method_problem(cls, build_model(spec, tuple(input_shape), num_classes), t_model, without_network)
        if why:
            out[i] = why
    return out
