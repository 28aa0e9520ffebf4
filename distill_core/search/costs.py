"""What a candidate costs before it is trained, and whether it fits the budget.

Parameters, fp32 and int8 bytes, FLOPs, batch-1 latency and inference energy depend only on the
architecture. `measure_architecture` builds the untrained model and measures it with the lab's
own `measure.measure_run` (the exports, timers and CodeCarbon meter every run gets) on the
validation inputs, never the test split. A candidate over the budget is rejected on these
figures before anything trains. The trained run is then measured again as every run is, and a
front member must fit the budget by its own figures too.
"""
from __future__ import annotations

import dataclasses
import tempfile

from ..analysis import COSTS, Cost
from ..data import DataBundle
from ..errors import ConfigError
from ..measure import check_budgets, measure_run
from ..models import build_model

# Costs a search may minimise: every cost of the Compare page except training energy, which
# depends on the training, not the architecture.
OBJECTIVES: dict[str, Cost] = {c.key: c for c in COSTS if c.key != "train_kwh"}
ENERGY_COST = "infer_kwh"
# The cost a budget's limit bounds: its size_of and latency_of choices (measure/budgets.py).
SIZE_COST = {"fp32": "fp32_bytes", "int8": "int8_bytes"}
LATENCY_COST = {"torch": "torch_ms", "onnx": "onnx_ms", "onnx_int8": "int8_ms"}


def measure_architecture(model_spec: dict, data: DataBundle, settings: dict | None = None, energy: bool = False) -> dict:
    """The architecture-only figures of an untrained model (a compact `measure_run` result):
    size, compute, latency, onnx, int8 and, with `energy`, inference_energy."""
    model = build_model(model_spec, data.info.input_shape, data.info.num_classes)
    val = dataclasses.replace(data, x_test=data.x_val, y_test=data.y_val)
    given = {**(settings or {}), "pt2": False, "card": False, "budgets": False, "energy": energy}
    with tempfile.TemporaryDirectory(prefix="distill-arch-") as folder:
        m = measure_run(model, val, folder, settings=given)
    keep = ("ok", "bytes", "reason", "available", "median_ms", "p95_ms", "kwh_per_1000", "label")
    out = {"size": m.get("size"), "compute": {k: v for k, v in (m.get("compute") or {}).items() if k != "by_op"},
           "latency": {k: _pick(v, keep) for k, v in (m.get("latency") or {}).items() if isinstance(v, dict)},
           "onnx": _pick(m.get("onnx"), keep), "int8": _pick(m.get("int8"), keep),
           "threads": m.get("threads")}
    if energy:
        out["inference_energy"] = _pick(m.get("inference_energy"), keep)
    return out


def _pick(d, keys) -> dict:
    return {k: v for k, v in (d or {}).items() if k in keys}


def _lookup(doc: dict, dotted: str):
    """(value, reason) at a dotted path of nested dicts; the reason recorded beside a missing one."""
    node, reason = doc, None
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None, reason
        reason = node.get("reason") or reason
        node = node.get(part)
    if isinstance(node, dict):
        return None, node.get("reason") or reason
    return node, reason


def cost_values(measure: dict) -> dict[str, float | None]:
    """Each objective cost of one measurement (an architecture's or a trained run's
    result["measure"]); None where it was not obtained."""
    return {key: value for key, (value, _) in cost_table(measure).items()}


def cost_table(measure: dict) -> dict[str, tuple[float | None, str | None]]:
    """(value, why it is missing) for each objective cost of a measurement."""
    energy = measure.get("inference_energy") or {}
    doc = {"params": (measure.get("size") or {}).get("params"), "measure": measure,
           "energy": {"inference_kwh_per_1000": energy.get("kwh_per_1000"),
                      "reason": energy.get("reason") or "inference energy was not measured"}}
    out = {}
    for key, cost in OBJECTIVES.items():
        value, why = None, None
        for column in cost.columns:
            value, why = _lookup(doc, column)
            if value is not None:
                break
        out[key] = (None if value is None else float(value), None if value is not None else why or "not measured")
    return out


def budget_check(measure: dict, name: str, profile: dict) -> dict:
    """measure.check_budgets for one profile, with the constraint values Optuna takes:
    (value - limit) / limit per limit, positive when over it and 1 when the figure is missing
    (a fit is never guessed). {"fits", "reason", "checks", "constraints": {what: value}}."""
    entry = check_budgets(measure, {name: profile})[0]
    constraints = {}
    for c in entry["checks"]:
        constraints[c["what"]] = 1.0 if c["value"] is None else (float(c["value"]) - c["limit"]) / c["limit"]
    return {"fits": entry["fits"], "reason": entry.get("reason"), "checks": entry["checks"],
            "constraints": constraints or {"no limit": 0.0}}


def budget_limit(cost: str, profile: dict) -> float | None:
    """The budget's limit on this cost, when it has one (to draw it beside the trials)."""
    if profile.get("max_bytes") and SIZE_COST.get(profile.get("size_of")) == cost:
        return float(profile["max_bytes"])
    if profile.get("max_latency_ms") and LATENCY_COST.get(profile.get("latency_of")) == cost:
        return float(profile["max_latency_ms"])
    return None


def check_objectives(keys: list[str]) -> list[str]:
    """One or two objective costs, known and distinct; ConfigError otherwise."""
    keys = list(dict.fromkeys(keys or []))
    if not keys:
        raise ConfigError(f"objectives: choose one or two costs to minimise beside accuracy: {', '.join(OBJECTIVES)}")
    if len(keys) > 2:
        raise ConfigError(f"objectives: at most two costs beside accuracy, got {len(keys)} ({', '.join(keys)})")
    bad = [k for k in keys if k not in OBJECTIVES]
    if bad:
        hint = " (training energy depends on training, not on the architecture)" if "train_kwh" in bad else ""
        raise ConfigError(f"objectives: unknown cost {bad[0]!r}{hint}; choose from {', '.join(OBJECTIVES)}")
    return keys
