"""What a search found, read from its study and the store: for the Search page and the CLI.

`report(home, name)` gives every trial as a row (its outcome, candidate, validation and test
accuracy, architecture-only costs, budget verdict, run, curve), the front (Optuna's feasible
non-dominated trials: higher validation accuracy, lower costs), the best student that fits
(the front's most accurate on validation), and that student against its scratch twin on the
same seeds: "distillation helped by X +- Y points (n seeds)", on test accuracy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd

from ..analysis import gap_closed
from ..constants import DONE
from ..jobs import Store
from ..measure.report import human_bytes, human_count
from . import study as studies
from .costs import OBJECTIVES

TrialState = optuna.trial.TrialState
COLUMNS = ["number", "outcome", "label", "family", "method", "val_accuracy", "test_accuracy", *OBJECTIVES, "fits",
           "reason", "run_id", "epochs", "curve", "on_front"]


@dataclass
class Twin:
    """The best student and its scratch twin, per seed (test accuracy)."""

    distilled: dict[int, float]
    scratch: dict[int, float]
    pending: int  # twin runs not finished yet
    teacher_accuracy: float
    delta_mean: float = math.nan
    delta_std: float = math.nan  # sample std of the per-seed differences; NaN with one seed
    n: int = 0
    gap: float = math.nan
    gap_reason: str | None = None


@dataclass
class Report:
    name: str
    state: str
    message: str
    spec: dict
    objectives: list[str]
    budget: dict
    elapsed: float
    driver_alive: bool
    trials: pd.DataFrame
    counts: dict
    best: dict | None = None
    twin: Twin | None = None
    twins: dict = field(default_factory=dict)  # trial number -> scratch twin's test accuracy (trial's seed)
    precheck: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def budget_name(self) -> str:
        return self.budget.get("name", "budget")

    @property
    def front(self) -> pd.DataFrame:
        f = self.trials[self.trials["on_front"]]
        return f.sort_values(self.objectives[0]) if len(f) else f


def _outcome(t: optuna.trial.FrozenTrial, alive: bool) -> str:
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.FAIL:
        return t.user_attrs["outcome"] if t.user_attrs.get("outcome") in ("invalid", "abandoned") else "failed"
    if t.state == TrialState.PRUNED:
        return t.user_attrs.get("outcome", "pruned")
    if t.state == TrialState.WAITING:
        return "waiting"
    return "running" if alive else "stopped"


def trial_rows(trials, front: set[int], alive: bool) -> pd.DataFrame:
    rows = []
    for t in trials:
        a = t.user_attrs
        cand = a.get("candidate") or {}
        costs = (a.get("arch") or {}).get("costs") or {}
        rows.append({"number": t.number, "outcome": _outcome(t, alive), "label": cand.get("label", ""),
                     "family": cand.get("family"), "method": (cand.get("method") or {}).get("name"),
                     "val_accuracy": a.get("val_accuracy"), "test_accuracy": a.get("test_accuracy"),
                     **{k: costs.get(k) for k in OBJECTIVES},
                     "fits": a.get("fits", (a.get("arch") or {}).get("fits")), "reason": a.get("reason", ""),
                     "run_id": a.get("run_id"), "epochs": len(a.get("curve") or []), "curve": a.get("curve") or [],
                     "on_front": t.number in front})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("val_accuracy", "test_accuracy", *OBJECTIVES):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


def seed_delta(distilled: dict[int, float], scratch: dict[int, float]) -> tuple[float, float, int]:
    """Mean and sample std of (distilled - scratch) over the seeds both have, and how many."""
    d = [distilled[s] - scratch[s] for s in sorted(set(distilled) & set(scratch))]
    if not d:
        return math.nan, math.nan, 0
    return float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else math.nan, len(d)


def _accuracies(store: Store, ids: dict) -> tuple[dict[int, float], int, float]:
    """Test accuracy per seed of finished runs; how many are unfinished; their teacher's accuracy."""
    out, pending, teacher = {}, 0, math.nan
    for seed, rid in ids.items():
        run = store.get_run(int(rid))
        if run is None:
            continue
        if run["status"] == DONE and run.get("result"):
            out[int(seed)] = float(run["result"]["metrics"]["accuracy"])
            teacher = float(run["result"].get("teacher_accuracy", teacher))
        elif run["status"] in ("queued", "running"):
            pending += 1
    return out, pending, teacher


def twin_of(store: Store, entry: dict) -> Twin:
    distilled, p1, teacher = _accuracies(store, entry.get("distilled") or {})
    scratch, p2, _ = _accuracies(store, entry.get("scratch") or {})
    twin = Twin(distilled, scratch, p1 + p2, teacher)
    twin.delta_mean, twin.delta_std, twin.n = seed_delta(distilled, scratch)
    if twin.n:
        seeds = sorted(set(distilled) & set(scratch))
        twin.gap, twin.gap_reason = gap_closed(float(np.mean([distilled[s] for s in seeds])),
                                               float(np.mean([scratch[s] for s in seeds])), teacher)
    return twin


def report(home, name: str, store: Store | None = None) -> Report:
    study = studies.load(home, name)
    attrs = study.user_attrs
    alive = studies.driver_alive(attrs)
    trials = study.get_trials(deepcopy=False)
    front = {t.number for t in study.best_trials}
    frame = trial_rows(trials, front, alive)
    spec = attrs.get("spec") or {}
    objectives = list(spec.get("objectives") or [])
    counts = frame["outcome"].value_counts().to_dict()
    elapsed = float(attrs.get("elapsed") or 0.0)
    if alive and attrs.get("heartbeat"):
        elapsed += max(0.0, time.time() - float(attrs["heartbeat"]))
    out = Report(name, attrs.get("state", studies.CREATED), attrs.get("message", ""), spec, objectives,
                 spec.get("budget") if isinstance(spec.get("budget"), dict) else {"name": spec.get("budget")},
                 elapsed, alive, frame, counts, precheck=attrs.get("precheck") or [], notes=attrs.get("notes") or [])
    ranked = frame[frame["on_front"]]
    if len(ranked):
        best = ranked.sort_values(["val_accuracy", objectives[0]], ascending=[False, True]).iloc[0]
        out.best = best.to_dict()
        store = store or Store(home)
        twins = attrs.get("twins") or {}
        seed = int(spec.get("seed", 0))
        for number, entry in twins.items():
            rid = (entry.get("scratch") or {}).get(str(seed))
            scratch = _accuracies(store, {seed: rid})[0] if rid else {}
            if seed in scratch:
                out.twins[int(number)] = scratch[seed]
        if str(int(best["number"])) in twins:
            out.twin = twin_of(store, twins[str(int(best["number"]))])
    return out


# -- words ---------------------------------------------------------------------------------------


def fmt_cost(key: str, value) -> str:
    """A cost in its unit ('24.8 KB', '12.3 K', '0.081 ms', '3.1 J' per 1,000 predictions);
    'unavailable' when missing."""
    if value is None or value != value:
        return "unavailable"
    if key.endswith("bytes"):
        return human_bytes(value)
    if key in ("params", "flops"):
        return human_count(value)
    if key.endswith("_ms"):
        return f"{value:.3g} ms"
    return f"{value * 3.6e6:.3g} J"  # kWh -> J (inference energy per 1,000 predictions)


def describe_cost(key: str, value) -> str:
    """'418 parameters', 'int8 ONNX model 24.8 KB', 'ONNX Runtime latency 0.081 ms'."""
    name = OBJECTIVES[key].title.split(" (")[0].split(",")[0]
    return f"{fmt_cost(key, value)} {name}" if key in ("params", "flops") else f"{name} {fmt_cost(key, value)}"


def fmt_delta(twin: Twin) -> str:
    """'+1.2 ± 0.8 points (3 seeds)'; one seed says it has no spread."""
    if not twin.n:
        return "unavailable (no scratch twin finished)"
    spread = f" ± {100 * twin.delta_std:.1f}" if twin.n > 1 else ""
    seeds = f"{twin.n} seeds" if twin.n > 1 else "1 seed, so no spread"
    return f"{100 * twin.delta_mean:+.1f}{spread} points ({seeds})"


def answer(r: Report) -> list[str]:
    """The answer in words: the best student that fits, its costs, what distillation gave it."""
    if r.best is None:
        if r.counts.get("complete"):
            return [f"No trained student fits {r.budget_name}: every finished trial is over it by its own measurement."]
        if r.state in (studies.CREATED, *studies.ACTIVE_STATES):
            return []
        return [f"No student was trained to the end ({r.message or r.state})."]
    b = r.best
    costs = ", ".join(describe_cost(k, b[k]) for k in r.objectives)
    lines = [f"Best student that fits {r.budget_name}: {b['label']} (trial {int(b['number'])}, run #{int(b['run_id'])}): "
             f"validation accuracy {100 * b['val_accuracy']:.1f} %, test accuracy {100 * b['test_accuracy']:.1f} %; {costs}."]
    t = r.twin
    if t is not None and t.n:
        gap = f"gap to the teacher closed {t.gap:.2f}" if t.gap == t.gap else f"gap closed {t.gap_reason}"
        lines.append(f"Distillation helped it by {fmt_delta(t)} of test accuracy over its scratch twin; {gap}.")
    elif t is not None:
        lines.append("Its scratch twin (the same network trained without the teacher, on the same seeds) "
                     + ("is training." if t.pending else "did not finish, so what distillation gave it is unavailable."))
    return lines
