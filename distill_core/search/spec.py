"""A search: what the user asks for (`SearchSpec`) and the same, checked (`Plan`).

A search file (JSON or YAML) holds the fields of `SearchSpec`; the CLI builds one from flags and
the Search page from its form. `make_plan` checks it once: the data set loads, the teacher and
training settings validate, the space is neither empty nor contradictory, the budget exists,
the objectives are known. Every problem is a ConfigError saying what to change.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from ..config import ENSEMBLE, SEED, ExperimentSpec, black_box, expand, teacher_runs
from ..data import DATASETS, DatasetInfo, load_dataset
from ..errors import ConfigError, DistillError
from ..measure.budgets import load_profiles, validate_profiles
from ..registry import Param, coerce_knobs
from ..run_config import RunConfig
from ..train_params import train_settings
from .costs import check_objectives
from .space import Candidate, SearchSpace, build_space

NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SAMPLERS = ("tpe", "nsga2", "random")

SEARCH_PARAMS = (
    Param("trials", 30, "students to train; candidates the budget rejects before training do not count", "int", 1, 10000),
    Param("sampler", "tpe", "tpe: multi-objective TPE; nsga2: NSGA-II; random: random search (the baseline)", "choice",
          choices=SAMPLERS),
    Param("prune", True, "stop trials whose validation curve trails the finished trials that cost no more", "bool"),
    Param("seed", 0, "seed of the sampler and of every trial's training", "int", SEED.min, SEED.max),
    Param("parallel", 0, "trials trained at once (0 = as many as there are workers)", "int", 0, 256),
    Param("confirm_seeds", 3, "seeds the best student and its scratch twin are trained on", "int", 1, 10),
)


@dataclass
class SearchSpec:
    name: str = ""  # empty: the next free "search-N"
    dataset: str = "digits"
    dataset_knobs: dict = field(default_factory=dict)
    teacher: dict | str = "cnn-large"  # any teacher an ExperimentSpec takes; trained (or loaded) once
    teachers: list = field(default_factory=list)  # two or more: an ensemble, instead of `teacher` (as in ExperimentSpec)
    ensemble: str = ENSEMBLE.default
    teacher_train: dict | None = None  # None: the students' settings (their searched lr left out)
    train: dict = field(default_factory=dict)  # the students' settings; lr is searched unless the space fixes it
    space: dict = field(default_factory=dict)  # see search/space.py
    budget: dict | str = "mcu"  # a profile name (measure/budgets.py, budgets.json) or its limits
    objectives: list = field(default_factory=lambda: ["int8_bytes"])  # one or two costs to minimise
    trials: int = 30
    time_limit: float | None = None  # minutes; None: no limit
    sampler: str = "tpe"
    prune: bool = True
    seed: int = 0
    parallel: int = 0
    confirm_seeds: int = 3

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpec:
        if not isinstance(d, dict):
            raise ConfigError(f"a search must be a mapping of settings, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown search field(s) {', '.join(unknown)}; known: {', '.join(cls.__dataclass_fields__)}")
        d = copy.deepcopy(d)
        if isinstance(d.get("objectives"), str):
            d["objectives"] = [d["objectives"]]
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def load_search_file(path: str | Path) -> SearchSpec:
    """A search from JSON or YAML; a malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such search file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
        return SearchSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except Exception as exc:  # a YAML or JSON syntax error
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None


def check_name(name: str) -> str:
    if not NAME_RULE.match(name or ""):
        raise ConfigError(f"name: {name!r} is not a usable search name: letters, digits, '.', '_' and '-', "
                          "at most 64, starting with a letter or digit")
    return name


def check_time_limit(minutes) -> float | None:
    """Minutes, or None for no limit; zero or less is a ConfigError (nothing could train)."""
    if minutes is None or minutes == "":
        return None
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        raise ConfigError(f"time_limit: {minutes!r} is not a number of minutes") from None
    if not value > 0:
        raise ConfigError(f"time_limit: {value:g} minutes leaves no time to train anything; give a positive number "
                          "of minutes, or no limit")
    return value


def resolve_budget(budget, home) -> tuple[str, dict]:
    """(name, limits) of a profile name or of custom limits; ConfigError naming the problem."""
    if isinstance(budget, str):
        profiles = load_profiles(home)
        if budget not in profiles:
            raise ConfigError(f"budget: no profile {budget!r}; profiles: {', '.join(profiles)} (add yours to budgets.json)")
        return budget, profiles[budget]
    if isinstance(budget, dict):
        limits = {k: v for k, v in budget.items() if k != "name"}
        name = str(budget.get("name") or "custom")
        return name, validate_profiles({name: limits}, "budget")[name]
    raise ConfigError(f"budget: a profile name or a mapping of limits, got {budget!r}")




@dataclass(frozen=True)
class Plan:
    """A checked search: everything the driver needs to ask, reject and submit candidates."""

    spec: SearchSpec
    settings: dict  # trials, sampler, prune... (SEARCH_PARAMS)
    time_limit: float | None  # minutes
    info: DatasetInfo
    space: SearchSpace
    budget_name: str
    budget: dict
    objectives: list[str]
    train: dict  # the students' settings (lr filled per candidate)
    teacher_train: dict

    @cached_property
    def teacher(self) -> RunConfig:
        """The teacher run every trial learns from (the same hash: trained or loaded once)."""
        return expand(self.experiment(self.space.smallest()[0]))[0]

    def experiment(self, cand: Candidate, seeds: list[int] | None = None, baseline: bool = False,
                   name: str = "") -> ExperimentSpec:
        """The experiment that trains `cand` (one run per seed; with `baseline`, its scratch twins)."""
        s = self.spec
        return ExperimentSpec(name=name, dataset=s.dataset, dataset_knobs=dict(s.dataset_knobs), teacher=s.teacher,
                              teachers=copy.deepcopy(s.teachers), ensemble=s.ensemble, teacher_train=dict(self.teacher_train), students=[cand.model], methods=[cand.method],
                              seeds=list(seeds if seeds is not None else [self.settings["seed"]]),
                              train={**self.train, "lr": cand.lr}, baseline=baseline)


def make_plan(spec: SearchSpec, home=None) -> Plan:
    """Check a search (see the module docstring); ConfigError when something does not fit."""
    if spec.name:
        check_name(spec.name)
    settings = coerce_knobs(SEARCH_PARAMS, {k: getattr(spec, k) for k in (p.name for p in SEARCH_PARAMS)}, "search")
    time_limit = check_time_limit(spec.time_limit)
    objectives = check_objectives(list(spec.objectives or []))
    budget_name, budget = resolve_budget(spec.budget, home)
    DATASETS.get(spec.dataset)
    if not isinstance(spec.dataset_knobs, dict) or not isinstance(spec.train, dict):
        raise ConfigError("dataset_knobs and train must be mappings of settings")
    info = load_dataset(spec.dataset, **spec.dataset_knobs).info
    train = train_settings(spec.train)
    teacher_train = train_settings(spec.teacher_train if spec.teacher_train is not None else spec.train)
    raw_space = dict(spec.space or {})
    if train["recipe"] != "default":  # the recipe sets the learning rate: searching it would change nothing
        raw_space["lr"] = train["lr"]
    try:
        teacher = teacher_runs(ExperimentSpec(dataset=spec.dataset, dataset_knobs=dict(spec.dataset_knobs),
                                              teacher=spec.teacher, teachers=copy.deepcopy(spec.teachers),
                                              ensemble=spec.ensemble, teacher_train=teacher_train))[0]
    except DistillError as exc:
        raise ConfigError(str(exc)) from None
    without = black_box(teacher)
    space = build_space(raw_space, info, None if without else teacher.model, train["lr"], without)
    plan = Plan(spec, settings, time_limit, info, space, budget_name, budget, objectives, train, teacher_train)
    try:
        plan.teacher  # the teacher, the data set and the training settings validate as any experiment's do
    except DistillError as exc:
        raise ConfigError(str(exc)) from None
    return plan
