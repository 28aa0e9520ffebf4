"""The search space: which students, methods and training knobs a search may try.

It is built from the registries, so a new architecture or method joins a search without a change
here:

- **families**: every architecture that takes the data's kind of input and whose default model
  builds on the data's shape (an architecture made for larger images says why it does not fit);
- each family's **knobs**, read from its `Param`s: a number ranges from a quarter of its default
  to four times it (half to twice for a single integer, which counts something: a kernel size,
  blocks), within the knob's own limits; a list of widths (`hidden=[256, 256]`) ranges in depth
  (one layer fewer to one more) and in width like a number. Knobs whose default is 0, switches
  and choices keep their default;
- **methods**: every method that learns from the teacher, where it fits the family
  (`Method.incompatibility`); a method that trains another model for each run (TAKD's
  assistant) only when asked for;
- the **temperature** and **alpha** of the methods that have them, and the **learning rate**.

A user narrows or fixes any of these with a `space` mapping (docs/guide.md, "Searching for a
student"): a number fixes a knob, `[low, high]` is a range, `{choices: [...]}` a list of values,
`{depth: [1, 2], width: [16, 256]}` a range of layer widths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import method_problem
from ..constants import SCRATCH
from ..data import DatasetInfo
from ..errors import ConfigError, DistillError
from ..labels import method_label, model_label
from ..methods import ALPHA, METHODS, TEMPERATURE, Method
from ..models import ARCHITECTURES, build_model, is_network, normalise_spec
from ..registry import Param
from ..train_params import TRAIN_PARAMS

LR = next(p for p in TRAIN_PARAMS if p.name == "lr")
MAX_DEPTH = 8  # layers of a searched list of widths


@dataclass(frozen=True)
class Dim:
    """One searched value: fixed, an int or float range, or a list of choices. `name` is its
    Optuna parameter name ("cnn.kernel", "temperature")."""

    name: str
    kind: str  # "fixed" | "int" | "float" | "choice"
    value: Any = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        if self.kind == "float":  # three significant digits: readable labels, no false precision
            return float(f"{trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log):.3g}")
        return trial.suggest_categorical(self.name, list(self.choices))

    def lowest(self) -> Any:
        """The value at the cheap end: the low end of a range, the first choice."""
        if self.kind == "fixed":
            return self.value
        if self.kind in ("int", "float"):
            return int(self.low) if self.kind == "int" else float(self.low)
        return self.choices[0]

    def as_given(self) -> Any:
        """In the `space` format a user writes."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        out = [_plain(self.low, self.kind), _plain(self.high, self.kind)]
        return out if self.log == _auto_log(self.low, self.high) else {"low": out[0], "high": out[1], "log": self.log}


@dataclass(frozen=True)
class Widths:
    """A list of layer widths: its depth and each layer's width are searched."""

    name: str
    depth: Dim
    width: Dim

    def suggest(self, trial) -> list[int]:
        n = self.depth.suggest(trial)
        return [Dim(f"{self.name}.{i}", **_fields(self.width)).suggest(trial) for i in range(n)]

    def lowest(self) -> list[int]:
        return [self.width.lowest()] * self.depth.lowest()

    def as_given(self) -> dict:
        return {"depth": self.depth.as_given(), "width": self.width.as_given()}


@dataclass(frozen=True)
class Family:
    arch: str
    knobs: dict  # knob name -> Dim or Widths
    method: Dim  # the methods that fit this family


@dataclass(frozen=True)
class Candidate:
    """What one trial trains: a student, a method with its knobs, a learning rate."""

    family: str
    model: dict  # normalised model spec
    method: dict  # {"name": ..., **knobs}
    lr: float

    @property
    def label(self) -> str:
        return f"{model_label(self.model)} · {method_label(self.method)} · lr {self.lr:.3g}"

    def to_dict(self) -> dict:
        return {"family": self.family, "model": self.model, "method": self.method, "lr": self.lr, "label": self.label}


@dataclass(frozen=True)
class SearchSpace:
    families: tuple[Family, ...]
    family: Dim
    method_knobs: dict  # method name -> the knobs the user fixed for it
    temperature: Dim
    alpha: Dim
    lr: Dim
    notes: tuple[str, ...] = field(default=())  # what was left out, and why

    def sample(self, trial) -> Candidate:
        """The candidate an Optuna trial asks for (define-by-run: only the knobs of the chosen
        family and method are suggested)."""
        fam = self._family(self.family.suggest(trial))
        return self._candidate(fam, lambda dim: dim.suggest(trial))

    def smallest(self) -> list[Candidate]:
        """Each family's cheapest candidate: every size knob at the low end of its range."""
        return [self._candidate(fam, lambda dim: dim.lowest()) for fam in self.families]

    def _family(self, arch: str) -> Family:
        return next(f for f in self.families if f.arch == arch)

    def _candidate(self, fam: Family, pick) -> Candidate:
        model = normalise_spec({"arch": fam.arch, **{k: pick(d) for k, d in fam.knobs.items()}})
        name = pick(fam.method)
        cls = METHODS.get(name)
        knobs = dict(self.method_knobs.get(name, {}))
        if TEMPERATURE in cls.params and "temperature" not in knobs:
            knobs["temperature"] = pick(self.temperature)
        if ALPHA in cls.params and "alpha" not in knobs:
            knobs["alpha"] = pick(self.alpha)
        return Candidate(fam.arch, model, {"name": name, **cls.coerce(knobs)}, float(pick(self.lr)))

    def as_given(self) -> dict:
        """The whole space in the format a user writes (the page shows it to edit)."""
        out: dict = {"students": {f.arch: {k: d.as_given() for k, d in f.knobs.items()} for f in self.families}}
        names = list(dict.fromkeys(n for f in self.families for n in _names(f.method)))
        out["methods"] = [{"name": n, **self.method_knobs[n]} if self.method_knobs.get(n) else n for n in names]
        for dim in (self.temperature, self.alpha, self.lr):
            out[dim.name] = dim.as_given()
        return out

    def size(self) -> str:
        """How many families and methods, for a summary line."""
        methods = sorted({n for f in self.families for n in _names(f.method)})
        return f"{len(self.families)} student famil{'y' if len(self.families) == 1 else 'ies'} " \
               f"({', '.join(f.arch for f in self.families)}), {len(methods)} method(s) ({', '.join(methods)})"


def _names(dim: Dim) -> tuple:
    return (dim.value,) if dim.kind == "fixed" else dim.choices


def _fields(dim: Dim) -> dict:
    return {k: getattr(dim, k) for k in ("kind", "value", "low", "high", "log", "choices")}


def _plain(v, kind):
    return int(v) if kind == "int" else float(f"{v:.6g}")


def _auto_log(low, high) -> bool:
    """Log scale for ranges spanning an order of magnitude (widths, learning rates, T)."""
    return low is not None and low > 0 and high / low >= 8


# -- a knob's dimension: derived from its Param, or as the user gave it --------------------------


def derived(name: str, p: Param, default=None) -> Dim | Widths:
    """The default range of a knob (see the module docstring)."""
    d = p.default if default is None else default
    if p.kind == "ints":
        if not d:
            return Dim(name, "fixed", [])
        depth = _range(f"{name}.depth", max(1, len(d) - 1), min(MAX_DEPTH, len(d) + 1), "int")
        width = _clip(p, f"{name}.width", min(d) / 4, max(d) * 4, "int")
        return Widths(name, depth, width)
    if p.kind not in ("int", "float") or not d:
        return Dim(name, "fixed", d)
    factor = 2 if p.kind == "int" else 4
    return _clip(p, name, d / factor, d * factor, p.kind)


def _clip(p: Param, name: str, low: float, high: float, kind: str) -> Dim:
    low = max(low, p.min) if p.min is not None else low
    high = min(high, p.max) if p.max is not None else high
    if kind == "int":
        low, high = math.ceil(low), math.floor(high)
    return _range(name, low, high, kind)


def _range(name: str, low, high, kind: str, log: bool | None = None) -> Dim:
    if low == high:
        return Dim(name, "fixed", int(low) if kind == "int" else float(low))
    return Dim(name, kind, low=low, high=high, log=_auto_log(low, high) if log is None else bool(log))


def given(name: str, raw, p: Param) -> Dim | Widths:
    """A knob as the user gave it, each value checked by its Param; ConfigError naming it."""
    where = f"space: {name}"
    if raw is None:
        return derived(name, p)
    if p.kind == "ints" and isinstance(raw, dict) and set(raw) <= {"depth", "width"}:
        depth = given(f"{name}.depth", raw.get("depth", 1), Param("depth", 1, kind="int", min=1, max=MAX_DEPTH))
        width = given(f"{name}.width", raw.get("width", p.default[0] if p.default else 16),
                      Param("width", 16, kind="int", min=p.min, max=p.max))
        return Widths(name, depth, width)
    if isinstance(raw, dict):
        if set(raw) == {"choices"}:
            if p.kind == "ints":
                raise ConfigError(f"{where}: a list of widths is searched with {{depth: [low, high], width: [low, high]}}")
            values = raw["choices"] if isinstance(raw["choices"], list) else [raw["choices"]]
            if not values:
                raise ConfigError(f"{where}: give at least one choice")
            picked = list(dict.fromkeys(_coerce(p, v, where) for v in values))
            return Dim(name, "fixed", picked[0]) if len(picked) == 1 else Dim(name, "choice", choices=tuple(picked))
        if {"low", "high"} <= set(raw) <= {"low", "high", "log"} and p.kind in ("int", "float"):
            return _checked_range(name, raw["low"], raw["high"], p, raw.get("log"))
        raise ConfigError(f"{where}: expected a value, [low, high], {{choices: [...]}} or {{low, high, log}}; got {raw!r}")
    if isinstance(raw, list) and p.kind in ("int", "float"):
        if len(raw) != 2:
            raise ConfigError(f"{where}: a range is [low, high], got {raw!r}")
        return _checked_range(name, raw[0], raw[1], p)
    if isinstance(raw, list) and p.kind not in ("ints",):
        return given(name, {"choices": raw}, p)
    return Dim(name, "fixed", _coerce(p, raw, where))


def _checked_range(name: str, low, high, p: Param, log=None) -> Dim:
    where = f"space: {name}"
    lo, hi = _coerce(p, low, where), _coerce(p, high, where)
    if lo > hi:
        raise ConfigError(f"{where}: the range [{lo:g}, {hi:g}] is empty (low is above high)")
    if log and lo <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0, got {lo:g}")
    return _range(name, lo, hi, p.kind, log)


def _coerce(p: Param, value, where: str):
    try:
        return p.coerce(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def buildable(arch: str, knobs: dict, info: DatasetInfo) -> dict:
    """Each knob's range narrowed to the values the architecture builds with, the other knobs at
    their defaults: a rule its factory checks (a ResNet's depth is 6n + 2, a stem and three stage
    widths are four numbers) keeps invalid candidates out of the space. Integer ranges of at most
    64 values are probed; a wider one is kept, and an invalid candidate is rejected when asked."""
    defaults = {p.name: p.default for p in ARCHITECTURES.get(arch).params}

    def builds(name: str, value) -> bool:
        try:
            build_model({"arch": arch, **defaults, name: value}, info.input_shape, info.num_classes)
            return True
        except DistillError:
            return False

    def narrowed(dim: Dim, make) -> Dim:
        if dim.kind != "int" or dim.high - dim.low > 64:
            return dim
        values = range(int(dim.low), int(dim.high) + 1)
        ok = [v for v in values if builds(name, make(v))]
        if not ok or len(ok) == len(values):
            return dim
        return Dim(dim.name, "fixed", ok[0]) if len(ok) == 1 else Dim(dim.name, "choice", choices=tuple(ok))

    out = {}
    for name, dim in knobs.items():
        if isinstance(dim, Widths):
            width = dim.width.lowest()
            dim = Widths(dim.name, narrowed(dim.depth, lambda d: [width] * d), dim.width)
        elif isinstance(dim, Dim):
            dim = narrowed(dim, lambda v: v)
        out[name] = dim
    return out


# -- the space of one search -----------------------------------------------------------------------


def default_methods() -> list[str]:
    """Methods that learn from the teacher and need no model of their own per run (TAKD's
    assistant, QAD's fp32 start): those join only when named."""
    return [m.name for m in METHODS if m.uses_teacher and m.teacher_for.__func__ is Method.teacher_for.__func__
            and m.start_from.__func__ is Method.start_from.__func__]


def build_space(raw: dict | None, info: DatasetInfo, teacher_model: dict | None, lr_default: float,
                without_network: str | None = None) -> SearchSpace:
    """The space of a search on data `info` with this teacher architecture (None, with
    `without_network` saying what the teacher is instead, for one that gives only its outputs),
    narrowed by the user's `raw` mapping. ConfigError when it is malformed, contradictory or empty."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {"students", "methods", "temperature", "alpha", "lr"})
    if unknown:
        raise ConfigError(f"space: unknown key(s) {', '.join(unknown)}; known: students, methods, temperature, alpha, lr")
    notes: list[str] = []
    students = raw.get("students")
    if students is not None and not isinstance(students, dict):
        raise ConfigError("space: students must map a family (an architecture) to its knobs, e.g. {mlp: {hidden: "
                          "{depth: [1, 2], width: [16, 256]}}}")
    if students is not None and not students:
        raise ConfigError("space: students is empty: name at least one family, or leave students out for every family "
                          "that fits the data")
    wanted = list(students) if students else [e.name for e in ARCHITECTURES if is_network(e.name)]  # no estimators
    fitting: dict[str, dict] = {}
    for arch in wanted:
        entry = ARCHITECTURES.get(arch)  # an unknown family: ConfigError naming the known ones
        if not is_network(arch):
            raise ConfigError(f"space: {arch} is a scikit-learn model: it can teach, but a student learns by gradient "
                              "descent; choose a network family")
        if info.kind not in entry.extra["kinds"]:
            why = f"{arch} takes {' and '.join(entry.extra['kinds'])} inputs, not {info.kind}"
            if students:
                raise ConfigError(f"space: {why}")
            notes.append(why)
            continue
        knobs_raw = (students or {}).get(arch) or {}
        if not isinstance(knobs_raw, dict):
            raise ConfigError(f"space: students.{arch} must map its knobs to values or ranges, got {knobs_raw!r}")
        params = {p.name: p for p in entry.params}
        bad = sorted(set(knobs_raw) - set(params))
        if bad:
            raise ConfigError(f"space: {arch} has no knob {', '.join(bad)}; its knobs: {', '.join(params) or 'none'}")
        knobs = {k: given(f"{arch}.{k}", knobs_raw.get(k), p) for k, p in params.items()}
        try:
            model = build_model({"arch": arch}, info.input_shape, info.num_classes)
            knobs = buildable(arch, knobs, info)
        except DistillError as exc:
            if students:
                raise ConfigError(f"space: {arch} does not fit this data: {exc}") from None
            notes.append(f"{arch} does not fit this data: {exc}")
            continue
        fitting[arch] = (knobs, model)
    if not fitting:
        raise ConfigError("space: no student family fits this data" + (f" ({'; '.join(notes)})" if notes else ""))

    methods_raw = raw.get("methods")
    if methods_raw is not None and not methods_raw:
        raise ConfigError("space: methods is empty: name at least one, or leave methods out for every method that fits")
    method_knobs: dict[str, dict] = {}
    for m in methods_raw if methods_raw is not None else default_methods():
        m = {"name": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or "name" not in m:
            raise ConfigError(f"space: each method is a name or {{name: ..., knob: value}}, got {m!r}")
        cls = METHODS.get(m["name"])
        if cls.name == SCRATCH or not cls.uses_teacher:
            raise ConfigError(f"space: {cls.name} does not learn from the teacher; every front member is compared with "
                              "its scratch twin automatically, so leave it out")
        knobs = {k: v for k, v in m.items() if k != "name"}
        try:
            cls.coerce(knobs)
        except ConfigError as exc:
            raise ConfigError(f"space: {exc}") from None
        method_knobs[cls.name] = knobs

    families = []
    teacher = None if without_network else build_model(teacher_model, info.input_shape, info.num_classes)
    for arch, (knobs, model) in fitting.items():
        why = {m: method_problem(METHODS.get(m), model, teacher, without_network) for m in method_knobs}
        ok = [m for m, reason in why.items() if reason is None]
        for m, reason in why.items():
            if reason:
                notes.append(f"{m} cannot distil into {arch}: {reason}")
        if not ok:
            if students:
                raise ConfigError(f"space: no chosen method can distil into {arch}: "
                                  + "; ".join(f"{m}: {r}" for m, r in why.items()))
            continue
        method = Dim(f"{arch}.method", "fixed", ok[0]) if len(ok) == 1 else Dim(f"{arch}.method", "choice", choices=tuple(ok))
        families.append(Family(arch, knobs, method))
    if not families:
        raise ConfigError("space: no chosen method can distil into any student family: " + "; ".join(notes))
    archs = tuple(f.arch for f in families)
    family = Dim("student", "fixed", archs[0]) if len(archs) == 1 else Dim("student", "choice", choices=archs)
    lr = given("lr", raw.get("lr"), LR) if "lr" in raw else derived("lr", LR, lr_default)
    return SearchSpace(tuple(families), family, method_knobs, given("temperature", raw.get("temperature"), TEMPERATURE),
                       given("alpha", raw.get("alpha"), ALPHA), lr, tuple(notes))
