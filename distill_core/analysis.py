"""Analysis behind the Compare and Learn pages: plain functions of frames and tensors.

Trade-offs (on `Store.results_frame()`, one row per finished run):
    cost_columns(frame)              which cost each column measures, or why it is unavailable
    with_ensembles(frame)            each ensemble member marked, an ensemble's costs its members' sum
    pareto_mask / pareto_frontier    non-dominated runs: higher accuracy, lower cost
    config_key / aggregate_seeds     mean and spread over seeds of each configuration
    paired_deltas / delta_words      a distilled student minus scratch, seed by seed, and how to say it
    gap_closed / gap_closed_table    (acc - scratch) / (teacher - scratch), NaN with a reason
    scratch_baseline                 the scratch run a distilled run is compared with
    budget_table / best_that_fits    deployment profiles (measure.budgets) on the frame
    energy_phases / reuse_savings    energy per phase, what teacher and logit reuse saved
    carbon_intensity                 g CO2eq per kWh of a country (CodeCarbon's offline table)

The Learn page's figures are in `teaching.py`. Nothing here imports streamlit: the pages only
draw what these return.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import pandas as pd

from .constants import SCRATCH, STUDENT, TEACHER
from .errors import ConfigError
from .measure.budgets import check_budgets, validate_profiles

# -- costs --------------------------------------------------------------------------------------


INT8_ACCURACY = "measure.int8.accuracy"  # the deployed int8 model's test accuracy (ONNX Runtime)


@dataclass(frozen=True)
class Cost:
    key: str
    title: str  # axis title
    columns: tuple[str, ...]  # candidates in the results frame, first present wins
    log: bool = True  # log axis (costs span orders of magnitude)
    accuracy: str = "accuracy"  # what is plotted against it: an int8 cost against the int8 model's accuracy


COSTS: tuple[Cost, ...] = (
    Cost("params", "parameters", ("params", "measure.size.params")),
    Cost("fp32_bytes", "fp32 weights (bytes)", ("measure.size.fp32_bytes",)),
    Cost("onnx_bytes", "fp32 ONNX model (bytes)", ("measure.size.onnx_bytes",)),
    Cost("int8_bytes", "deployed int8 ONNX model (bytes)", ("measure.int8.bytes",), accuracy=INT8_ACCURACY),
    Cost("flops", "FLOPs per sample", ("measure.compute.flops", "measure.flops.flops", "measure.flops")),
    Cost("torch_ms", "PyTorch latency, batch 1 median (ms)", ("measure.latency.torch.median_ms",)),
    Cost("onnx_ms", "ONNX Runtime latency, batch 1 median (ms)", ("measure.latency.onnx.median_ms",)),
    Cost("int8_ms", "ONNX Runtime int8 latency, batch 1 median (ms)", ("measure.latency.onnx_int8.median_ms",),
         accuracy=INT8_ACCURACY),
    Cost("train_kwh", "training energy (kWh)", ("training_kwh",)),
    Cost("infer_kwh", "inference energy per 1,000 predictions (kWh)", ("energy.inference_kwh_per_1000",)),
)
TRAINING_PHASES = ("teacher_training", "assistant_training", "student_training")


def _reason_near(frame: pd.DataFrame, column: str) -> str | None:
    """A recorded reason next to a column: `a.b.reason`, `a.reason`... (first non-empty)."""
    parts = column.split(".")
    for i in range(len(parts) - 1, 0, -1):
        for word in ("reason", "error"):
            col = ".".join(parts[:i] + [word])
            if col in frame.columns:
                vals = frame[col].dropna().astype(str)
                vals = vals[vals != ""]
                if len(vals):
                    return vals.iloc[0]
    return None


def add_training_energy(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `training_kwh`: the energy of the training phases this run itself paid for
    (phases reused from the teacher cache are not counted). NaN when none was measured."""
    out = frame.copy()
    total = pd.Series(np.nan, index=out.index, dtype="float64")
    for phase in TRAINING_PHASES:
        kwh, reused = f"energy.phases.{phase}.kwh", f"energy.phases.{phase}.reused"
        if kwh not in out.columns:
            continue
        own = out[kwh].where(out[reused] != 1) if reused in out.columns else out[kwh]
        total = total.where(own.isna(), total.fillna(0.0) + own)
    out["training_kwh"] = total
    return out


def cost_columns(frame: pd.DataFrame) -> dict[str, dict]:
    """For each cost: {"cost": Cost, "column": name or None, "accuracy": the accuracy column
    plotted against it, "reason": why unavailable or None}.

    An int8 cost (bytes, latency) is drawn against the deployed int8 model's accuracy, so a
    point is what a device would run. A cost is unavailable when no candidate column exists or
    every run's value (or that accuracy) is missing;
    the reason comes from what the runs recorded when they say (e.g. "energy measurement
    turned off"), else a plain "not measured in any selected run".
    """
    out = {}
    for cost in COSTS:
        column, reason = None, None
        present = [c for c in cost.columns if c in frame.columns]
        accuracy = cost.accuracy if cost.accuracy in frame.columns else None
        for c in present:
            if accuracy is not None and (frame[c].notna() & frame[accuracy].notna()).any():
                column = c
                break
        if column is None:
            found = [r for c in cost.columns for r in [_reason_near(frame, c)] if r]
            if not found and cost.key == "train_kwh":
                found = [r for r in [_reason_near(frame, "energy.total_kwh")] if r]
            if not found and cost.key == "infer_kwh":
                found = [r for r in [_reason_near(frame, "energy.phases.inference.kwh"),
                                     _reason_near(frame, "energy.total_kwh")] if r]
            if not found and cost.accuracy != "accuracy":
                found = [r for r in [_reason_near(frame, cost.accuracy)] if r]
            reason = found[0] if found else "not measured in any selected run"
        out[cost.key] = {"cost": cost, "column": column, "accuracy": cost.accuracy, "reason": reason}
    return out


# -- ensembles -------------------------------------------------------------------------------------

# What running an ensemble costs is running each member: these add up over its members.
ADDITIVE_COSTS = ("params", "measure.size.fp32_bytes", "measure.size.onnx_bytes", "measure.latency.onnx.median_ms",
                  "measure.latency.torch.median_ms", "energy.inference_kwh_per_1000")


def with_ensembles(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `member_of` (for a teacher run that is a member of an ensemble in the frame:
    that ensemble's model label, else None) and, for an ensemble run, each additive cost as the
    sum of its members' measured figures where every member has one (`costs_from_members` True).
    A member of several ensembles is marked with the first."""
    out = frame.copy()
    out["member_of"] = pd.Series(None, index=out.index, dtype="object")
    out["costs_from_members"] = False
    if "members" not in out.columns or not out["members"].notna().any():
        return out
    by_hash = {h: i for i, h in zip(out.index, out["hash"])}
    for i, row in out[out["members"].notna()].iterrows():
        rows = [by_hash[h] for h in str(row["members"]).split(",") if h in by_hash]
        for j in rows:
            if pd.isna(out.at[j, "member_of"]):
                out.at[j, "member_of"] = row["model"]
        if not rows or len(rows) < len(str(row["members"]).split(",")):
            continue  # a member's run is not (yet) among these: no sum
        for c in (c for c in ADDITIVE_COSTS if c in out.columns):
            vals = out.loc[rows, c]
            if vals.notna().all():
                out.at[i, c] = float(vals.sum())
                out.at[i, "costs_from_members"] = True
    return out


# -- Pareto frontier ------------------------------------------------------------------------------


def pareto_mask(cost, accuracy) -> np.ndarray:
    """True for points no other point dominates (cost <= and accuracy >=, one of them strictly).

    Lower cost and higher accuracy are better. Ties (same cost and accuracy) are all kept: none
    dominates the other. Points with a missing (NaN) cost or accuracy are never on it.
    """
    c = np.asarray(cost, dtype="float64")
    a = np.asarray(accuracy, dtype="float64")
    if c.shape != a.shape or c.ndim != 1:
        raise ValueError(f"cost and accuracy must be 1-D and of equal length, got {c.shape} and {a.shape}")
    ok = ~(np.isnan(c) | np.isnan(a))
    mask = np.zeros(len(c), dtype=bool)
    idx = np.flatnonzero(ok)
    if not len(idx):
        return mask
    # Sweep by cost ascending (ties: best accuracy first); a point is on the frontier when its
    # accuracy is at least the best seen at any strictly lower cost and it equals the best at
    # its own cost.
    order = idx[np.lexsort((-a[idx], c[idx]))]
    best_before = -np.inf  # best accuracy among strictly cheaper points
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and c[order[j]] == c[order[i]]:
            j += 1
        group = order[i:j]
        top = a[group].max()
        if top > best_before:
            mask[group[a[group] == top]] = True
        best_before = max(best_before, top)
        i = j
    return mask


def pareto_frontier(frame: pd.DataFrame, cost: str, accuracy: str = "accuracy") -> pd.DataFrame:
    """The frontier's rows, sorted by cost (ready to draw as a line)."""
    if cost not in frame.columns or accuracy not in frame.columns:
        missing = cost if cost not in frame.columns else accuracy
        raise ConfigError(f"no column {missing!r} in the results")
    mask = pareto_mask(frame[cost], frame[accuracy])
    return frame[mask].sort_values([cost, accuracy], ascending=[True, False])


# -- seeds ------------------------------------------------------------------------------------------

_NOT_CONFIG = ("train.threads", "train.device")
_BASE_KEY = ("dataset", "role", "model", "teacher_hash")  # what a student is, before its method


def _config_columns(frame: pd.DataFrame, with_method: bool = True) -> list[str]:
    cols = [c for c in _BASE_KEY if c in frame.columns]
    if with_method:
        cols += [c for c in ("method", "temperature", "alpha") if c in frame.columns]
    for c in frame.columns:
        if c.startswith(("train.", "dataset.")) and c not in _NOT_CONFIG:
            cols.append(c)
        elif with_method and c.startswith("method."):
            cols.append(c)
    return cols


def config_key(frame: pd.DataFrame, with_method: bool = True) -> pd.Series:
    """A string per row naming its configuration without the seed: runs that differ only in
    their seed share it. `with_method=False` leaves the method out (the student's base)."""
    cols = _config_columns(frame, with_method)
    if not len(frame):
        return pd.Series([], dtype="object", index=frame.index)

    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v

    rows = frame[cols].astype(object).values.tolist()
    return pd.Series([json.dumps([norm(v) for v in r], default=str) for r in rows], index=frame.index, dtype="object")


def aggregate_seeds(frame: pd.DataFrame, values: list[str] | tuple[str, ...] = ("accuracy",)) -> pd.DataFrame:
    """One row per configuration: its first run's descriptive columns, then for each value
    `<v>_mean`, `<v>_std` (sample std; NaN with one seed) and `n_seeds`, `run_ids`, `seeds`."""
    if not len(frame):
        return frame.assign(n_seeds=pd.Series(dtype="int64"))
    f = frame.assign(_key=config_key(frame))
    rows = []
    for _, g in f.groupby("_key", sort=False):
        row = g.iloc[0].to_dict()
        for v in values:
            col = g[v] if v in g.columns else pd.Series(np.nan, index=g.index)
            row[f"{v}_mean"] = col.mean()
            row[f"{v}_std"] = col.std(ddof=1) if col.notna().sum() > 1 else np.nan
        row["n_seeds"] = len(g)
        row["run_ids"] = ", ".join(str(i) for i in g["run_id"]) if "run_id" in g.columns else ""
        row["seeds"] = ", ".join(f"{s:g}" for s in g["seed"].dropna()) if "seed" in g.columns else ""
        rows.append(row)
    return pd.DataFrame(rows).drop(columns=["_key"])


# -- differences from scratch ----------------------------------------------------------------------

MIN_SEEDS = 3  # fewer seeds than this and a difference's spread is unknown (two points give no spread worth showing)


def paired_deltas(distilled: dict, scratch: dict) -> dict:
    """A distilled student's accuracy minus the scratch student's, seed by seed (seed -> accuracy
    maps; seeds missing from either side are left out). Returns `deltas` (per seed), `mean`, `std`
    (sample std, NaN with fewer than MIN_SEEDS seeds) and `n`."""
    seeds = [s for s in distilled if s in scratch and np.isfinite(distilled[s]) and np.isfinite(scratch[s])]
    deltas = [float(distilled[s] - scratch[s]) for s in seeds]
    return {"deltas": deltas, "seeds": seeds, "n": len(deltas),
            "mean": float(np.mean(deltas)) if deltas else math.nan,
            "std": float(np.std(deltas, ddof=1)) if len(deltas) >= MIN_SEEDS else math.nan}


def delta_words(mean: float, std: float, n: int, against: str = "scratch") -> str:
    """A difference of accuracies as the lab shows it: in points, with the seeds it rests on and
    its spread ("+0.5 ± 0.4 pts vs scratch over 3 seeds"), or, with fewer than MIN_SEEDS seeds,
    saying that its spread is unknown."""
    n = int(n)
    if n == 0 or not np.isfinite(mean):
        return f"no difference from {against} to show (no seed has a {against} run with the same data, network and training settings)"
    if n >= MIN_SEEDS and np.isfinite(std):
        return f"{100 * mean:+.1f} ± {100 * std:.1f} pts vs {against} over {n} seeds"
    return f"{100 * mean:+.1f} pts vs {against}, resting on {n} seed{'s' if n != 1 else ''}: its spread is unknown"


def spread_words(values) -> str:
    """Mean ± sample std of accuracies over seeds ("97.4 % ± 0.4 over 3 seeds"); with fewer than
    MIN_SEEDS, the value(s) and that the spread is unknown."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return "unavailable"
    n, mean = len(vals), float(np.mean(vals))
    if n >= MIN_SEEDS:
        return f"{100 * mean:.1f} % ± {100 * float(np.std(vals, ddof=1)):.1f} over {n} seeds"
    return f"{100 * mean:.1f} % ({n} seed{'s' if n != 1 else ''}: spread unknown)"


def run_delta(frame: pd.DataFrame, run_id: int) -> dict | None:
    """For a distilled run: the difference from scratch on its own seed (`this`), and over every
    seed of its configuration that has a scratch run of the same seed (`paired_deltas`), the same
    student, data, teacher and training settings. None for runs that are not distilled students."""
    me = frame[frame["run_id"] == run_id]
    if me.empty or me.iloc[0]["role"] != STUDENT or me.iloc[0]["method"] == SCRATCH:
        return None
    students = frame[frame["role"] == STUDENT]
    f = students.assign(_base=config_key(students, with_method=False), _key=config_key(students))
    row = f[f["run_id"] == run_id].iloc[0]
    mine = f[f["_key"] == row["_key"]].groupby("seed")["accuracy"].mean()
    scratch = f[(f["_base"] == row["_base"]) & (f["method"] == SCRATCH)].groupby("seed")["accuracy"].mean()
    out = paired_deltas(mine.to_dict(), scratch.to_dict())
    if row["seed"] not in out["seeds"]:
        return None
    out["this"] = out["deltas"][out["seeds"].index(row["seed"])]
    return out


def seeds_summary(frame: pd.DataFrame) -> list[str]:
    """What an experiment's distilled students did beside the scratch students, in words (Markdown),
    one line per distilled configuration: accuracy over the seeds both have, mean ± spread, the
    teacher's, and the difference seed by seed with the seeds it rests on (Home's quick demo)."""
    if not len(frame) or "role" not in frame.columns:
        return []
    teachers = frame.loc[frame["role"] == TEACHER, "accuracy"].dropna()
    students = frame[frame["role"] == STUDENT]
    f = students.assign(_base=config_key(students, with_method=False), _key=config_key(students))
    lines = []
    for _, g in f[f["method"] != SCRATCH].groupby("_key", sort=False):
        mine = g.groupby("seed")["accuracy"].mean()
        base = f[(f["_base"] == g["_base"].iloc[0]) & (f["method"] == SCRATCH)].groupby("seed")["accuracy"].mean()
        d = paired_deltas(mine.to_dict(), base.to_dict())
        if not d["n"]:
            continue
        seeds = d["seeds"]
        text = (f"The distilled student ({g['method_label'].iloc[0]}) scored **{spread_words(mine[seeds])}** on the test "
                f"set, against {spread_words(base[seeds])} for the same network trained from scratch on the same seeds"
                + (f", and {100 * teachers.mean():.1f} % for the teacher" if len(teachers) else "") + ". "
                f"Seed by seed: {delta_words(d['mean'], d['std'], d['n'])}")
        if d["n"] >= MIN_SEEDS:
            text += (": no larger than its spread, so these seeds cannot tell it from seed-to-seed noise."
                     if abs(d["mean"]) <= d["std"] else ": larger than its spread over seeds.")
        else:
            text += "."
        lines.append(text)
    return lines


# -- gap closed ------------------------------------------------------------------------------------


def gap_closed(accuracy: float, scratch: float, teacher: float) -> tuple[float, str | None]:
    """(accuracy - scratch) / (teacher - scratch): 1 when the student matches the teacher,
    0 when distillation did nothing, negative when it hurt.

    Undefined when the teacher is no better than the scratch student (there is no gap to
    close): returns (NaN, reason). Also NaN with a reason when a figure is missing.
    """
    vals = {"accuracy": accuracy, "scratch accuracy": scratch, "teacher accuracy": teacher}
    for name, v in vals.items():
        if v is None or not np.isfinite(v):
            return math.nan, f"{name} unavailable"
    if teacher <= scratch:
        return math.nan, (f"undefined: the teacher ({teacher:.4f}) is no better than the scratch student "
                          f"({scratch:.4f}), so there is no gap to close")
    return (accuracy - scratch) / (teacher - scratch), None


def gap_closed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Gap closed for every distilled student, per seed and then per configuration.

    Each distilled run is paired with the scratch run of the same student, teacher, data and
    training settings and the same seed (the mean over the scratch seeds when that seed has
    none). Returns one row per configuration: label columns, `gap_mean`, `gap_std` (over
    seeds), `n_seeds`, `gaps` (list), `scratch_accuracy`, `teacher_accuracy`, `accuracy_mean`,
    `delta_mean`, `delta_std` and `delta_n` (accuracy minus scratch on the same seed, over the
    `delta_n` seeds that have both; the std NaN with fewer than MIN_SEEDS), `reason` (why the gap is NaN, else None).
    """
    cols = ["dataset", "model", "teacher", "method", "method_label", "temperature", "alpha", "gap_mean", "gap_std",
            "n_seeds", "gaps", "accuracy_mean", "scratch_accuracy", "teacher_accuracy", "delta_mean", "delta_std", "delta_n",
            "reason", "run_ids"]
    if not len(frame) or "method" not in frame.columns:
        return pd.DataFrame(columns=cols)
    students = frame[frame["role"] == STUDENT] if "role" in frame.columns else frame
    f = students.assign(_base=config_key(students, with_method=False), _key=config_key(students))
    scratch = f[f["method"] == SCRATCH]
    distilled = f[f["method"] != SCRATCH]
    by_seed = scratch.groupby(["_base", "seed"])["accuracy"].mean().to_dict()  # scratch accuracy per student and seed
    by_base = scratch.groupby("_base")["accuracy"].mean().to_dict()
    if "teacher_accuracy" not in f.columns:
        f = f.assign(teacher_accuracy=math.nan)
        distilled = f[f["method"] != SCRATCH]
    rows = []
    for _, g in distilled.groupby("_key", sort=False):
        first = g.iloc[0]
        gaps, reasons, scratch_accs = [], [], []
        same_seed = {seed: by_seed[(first["_base"], seed)] for seed in g["seed"] if (first["_base"], seed) in by_seed}
        delta = paired_deltas(dict(zip(g["seed"], g["accuracy"])), same_seed)
        for acc, seed, teacher in zip(g["accuracy"], g["seed"], g["teacher_accuracy"]):
            s = by_seed.get((first["_base"], seed), by_base.get(first["_base"], math.nan))
            if first["_base"] not in by_base:
                reasons.append("no scratch run of this student to compare with")
            gap, why = gap_closed(acc, s, teacher)
            scratch_accs.append(s)
            if why:
                reasons.append(why)
            else:
                gaps.append(gap)
        row = {c: first.get(c) for c in ("dataset", "model", "teacher", "method", "method_label", "temperature", "alpha")}
        row.update({
            "gap_mean": float(np.mean(gaps)) if gaps else math.nan,
            "gap_std": float(np.std(gaps, ddof=1)) if len(gaps) > 1 else math.nan,
            "n_seeds": len(gaps), "gaps": gaps,
            "accuracy_mean": float(g["accuracy"].mean()),
            "scratch_accuracy": float(np.nanmean(scratch_accs)) if np.isfinite(scratch_accs).any() else math.nan,
            "teacher_accuracy": float(g["teacher_accuracy"].mean()) if "teacher_accuracy" in g else math.nan,
            "delta_mean": delta["mean"], "delta_std": delta["std"], "delta_n": delta["n"],
            "reason": None if gaps else (reasons[0] if reasons else "no runs"),
            "run_ids": ", ".join(str(i) for i in g["run_id"]) if "run_id" in g.columns else "",
        })
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def scratch_baseline(frame: pd.DataFrame, run_id: int) -> pd.Series | None:
    """The row of the same student trained from scratch on the same data and seed, for a
    distilled run (preferably beside the same teacher); None when there is none."""
    me = frame[frame["run_id"] == run_id]
    if me.empty or me.iloc[0]["role"] != STUDENT or me.iloc[0]["method"] == SCRATCH:
        return None
    me = me.iloc[0]
    same = frame[(frame["method"] == SCRATCH) & (frame["role"] == STUDENT) & (frame["model"] == me["model"])
                 & (frame["dataset"] == me["dataset"]) & (frame["seed"] == me["seed"])]
    if same.empty:
        return None
    beside = same[same["teacher_hash"] == me["teacher_hash"]]
    return (beside if not beside.empty else same).iloc[-1]


# -- temperature sweep -------------------------------------------------------------------------------


def temperature_sweep(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of accuracy and teacher agreement per student, method and T
    (students whose method has a temperature only), sorted by T."""
    if not len(frame) or "temperature" not in frame.columns:
        return pd.DataFrame()
    f = frame[(frame.get("role") == STUDENT) & frame["temperature"].notna()]
    if not len(f):
        return pd.DataFrame()
    agg = aggregate_seeds(f, ("accuracy", "teacher_agreement"))
    return agg.sort_values(["model", "method", "temperature"]).reset_index(drop=True)


# -- budgets -------------------------------------------------------------------------------------------


def _unflatten(row: dict, prefix: str) -> dict:
    """{"measure.size.fp32_bytes": 5} -> {"size": {"fp32_bytes": 5}} (missing values left out)."""
    out: dict = {}
    for col, v in row.items():
        if not isinstance(col, str) or not col.startswith(prefix):
            continue
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        d = out
        *path, leaf = col[len(prefix):].split(".")
        for p in path:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                break
        else:
            d[leaf] = v
    return out


def budget_table(frame: pd.DataFrame, profile: dict, name: str = "profile") -> pd.DataFrame:
    """Each run against one deployment profile (measure.budgets.check_budgets on the run's
    measurements): columns run_id, fits (True / False / None when a needed figure is
    unavailable), reason."""
    profile = validate_profiles({name: profile})[name]
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith("measure.")]
    ids = frame["run_id"].tolist() if "run_id" in frame.columns else [None] * len(frame)
    rows = []
    for rid, values in zip(ids, frame[cols].to_dict("records")):
        res = check_budgets(_unflatten(values, "measure."), {name: profile})[0]
        rows.append({"run_id": rid, "fits": res["fits"], "reason": res.get("reason")})
    return pd.DataFrame(rows, columns=["run_id", "fits", "reason"], index=frame.index)


def profile_accuracy(profile: dict) -> str:
    """The accuracy a run fits a profile with: the deployed int8 model's when the profile limits
    an int8 figure (its file or its latency), else the run's own."""
    return INT8_ACCURACY if profile.get("size_of") == "int8" or profile.get("latency_of") == "onnx_int8" else "accuracy"


def best_that_fits(frame: pd.DataFrame, profile: dict, accuracy: str | None = None,
                   table: pd.DataFrame | None = None) -> pd.Series | None:
    """The most accurate run that fits the profile (ties: fewer parameters), or None; accuracy
    as `profile_accuracy` says unless given. `table`: the frame's budget_table for this profile,
    when already computed."""
    accuracy = accuracy or profile_accuracy(profile)
    if accuracy not in frame.columns:
        return None
    fits = (table if table is not None else budget_table(frame, profile))["fits"]
    ok = frame[fits.eq(True).values]
    ok = ok[ok[accuracy].notna()]
    if not len(ok):
        return None
    by = [accuracy] + (["params"] if "params" in ok.columns else [])
    return ok.sort_values(by, ascending=[False] + [True] * (len(by) - 1)).iloc[0]


# -- energy ----------------------------------------------------------------------------------------------


def energy_phases(frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per run and measured phase: run_id, label, phase, kwh, kg_co2eq,
    reused (True when the phase was done once for a cached teacher and reused here), label_how
    ("measured"/"estimated"). Phases with no reading are left out (never drawn as 0)."""
    cols = ["run_id", "label", "phase", "kwh", "kg_co2eq", "reused", "how"]
    phases = sorted({c.split(".")[2] for c in frame.columns if c.startswith("energy.phases.") and c.endswith(".kwh")})
    wanted = ["run_id", "label"] + [c for c in frame.columns if c.startswith("energy.phases.")]
    rows = []
    for r in frame[[c for c in wanted if c in frame.columns]].to_dict("records"):
        for p in phases:
            kwh = r.get(f"energy.phases.{p}.kwh")
            if kwh is None or not np.isfinite(kwh):
                continue
            reused = r.get(f"energy.phases.{p}.reused")
            rows.append({"run_id": r.get("run_id"), "label": r.get("label"), "phase": p, "kwh": float(kwh),
                         "kg_co2eq": r.get(f"energy.phases.{p}.kg_co2eq"),
                         "reused": bool(reused == 1 or reused is True),
                         "how": r.get(f"energy.phases.{p}.label") or "estimated"})
    return pd.DataFrame(rows, columns=cols)


def reuse_savings(frame: pd.DataFrame, phases: pd.DataFrame | None = None) -> dict:
    """Energy teacher and logit reuse saved: every run that took its teacher (weights and
    logits) from the cache would otherwise have trained it and computed its logits again.

    Returns {"saved_kwh", "runs_reusing", "spent_kwh" (energy the runs did spend),
    "how"}; saved_kwh is NaN when no reused phase was measured. `phases`: energy_phases(frame)
    when already computed.
    """
    long = phases if phases is not None else energy_phases(frame)
    saved = long[long["reused"]]
    spent = long[~long["reused"]]
    how = "measured" if len(long) and set(long["how"]) == {"measured"} else "estimated"
    return {"saved_kwh": float(saved["kwh"].sum()) if len(saved) else math.nan,
            "runs_reusing": int(saved["run_id"].nunique()) if len(saved) else 0,
            "spent_kwh": float(spent["kwh"].sum()) if len(spent) else math.nan,
            "how": how}


def _energy_mix() -> dict:
    """CodeCarbon's offline table of each country's energy mix and carbon intensity."""
    return json.loads(files("codecarbon").joinpath("data/private_infra/global_energy_mix.json").read_text())


def carbon_intensity(country: str) -> tuple[float | None, str]:
    """Grid carbon intensity of a country in g CO2eq per kWh, from the table CodeCarbon ships
    (no network). Returns (value or None, a note naming the source or why it is missing)."""
    code = (country or "").strip().upper()
    try:
        table = _energy_mix()
    except Exception as exc:  # CodeCarbon missing or its data moved
        return None, f"CodeCarbon's energy-mix table could not be read: {type(exc).__name__}"
    entry = table.get(code)
    if not entry or entry.get("carbon_intensity") is None:
        return None, f"no carbon intensity for {code!r} in CodeCarbon's table"
    return float(entry["carbon_intensity"]), f"{entry.get('country_name', code)}, {entry.get('year', '')} (CodeCarbon energy mix)"


def countries() -> list[str]:
    """ISO codes CodeCarbon has a carbon intensity for (empty when it is not installed)."""
    try:
        table = _energy_mix()
    except Exception:  # CodeCarbon missing or its data moved
        return []
    return sorted(k for k, v in table.items() if v.get("carbon_intensity") is not None)
