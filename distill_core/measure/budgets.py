"""Deployment budgets: named target profiles with size and latency limits, and pass/fail.

Defaults below; a user file `<home>/budgets.json` ({"name": {field: value}, ...}) overrides
fields of a default profile or adds new ones. Latency limits are checked against what was
measured on this machine (batch 1, the recorded thread count): a proxy for the target, which
the user tightens or loosens for their board.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .. import paths
from ..registry import Param, coerce_knobs

SIZE_OF = {"fp32": "fp32 weights (.safetensors)", "int8": "int8 ONNX model", "onnx": "fp32 ONNX model"}
LATENCY_OF = {"torch": "PyTorch", "onnx": "ONNX Runtime fp32", "onnx_int8": "ONNX Runtime int8"}

PROFILE_PARAMS = (
    Param("description", "", "what the target is", "str"),
    Param("size_of", "int8", "which file must fit: fp32, int8 or onnx", "choice", choices=tuple(SIZE_OF)),
    Param("max_bytes", 0, "size limit in bytes (0 = no limit)", "int", 0, 2**50),
    Param("latency_of", "onnx_int8", "which runtime's batch-1 median counts", "choice", choices=tuple(LATENCY_OF)),
    Param("max_latency_ms", 0.0, "batch-1 median latency limit in ms (0 = no limit)", "float", 0.0, 1e7),
)

DEFAULT_PROFILES: dict[str, dict] = {
    "mcu": {"description": "microcontroller class (Cortex-M7-like): int8 weights in 256 KB of flash",
            "size_of": "int8", "max_bytes": 256 * 1024, "latency_of": "onnx_int8", "max_latency_ms": 2.0},
    "phone": {"description": "mobile phone app: int8 model under 20 MB, interactive latency",
              "size_of": "int8", "max_bytes": 20 * 1024**2, "latency_of": "onnx_int8", "max_latency_ms": 10.0},
    "cpu-server": {"description": "CPU inference server: fp32 under 500 MB, 50 ms per request",
                   "size_of": "fp32", "max_bytes": 500 * 1024**2, "latency_of": "onnx", "max_latency_ms": 50.0},
}


def budgets_file(home: str | Path | None = None) -> Path:
    return paths.home_dir(home) / paths.BUDGETS


def validate_profiles(profiles: dict, where: str = "budgets") -> dict[str, dict]:
    if not isinstance(profiles, dict):
        raise ConfigError(f"{where}: expected a mapping of profile name to limits, got {type(profiles).__name__}")
    out = {}
    for name, p in profiles.items():
        if not isinstance(p, dict):
            raise ConfigError(f"{where}: profile {name!r} must be a mapping of limits, got {p!r}")
        out[str(name)] = coerce_knobs(PROFILE_PARAMS, p, f"{where}: profile {name!r}")
    return out


def load_profiles(home: str | Path | None = None) -> dict[str, dict]:
    """Default profiles, overridden and extended by the user's budgets.json if there is one."""
    merged = {k: dict(v) for k, v in DEFAULT_PROFILES.items()}
    path = budgets_file(home)
    if path.is_file():
        try:
            user = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: expected a mapping of profile name to limits")
        for name, p in user.items():
            merged[name] = {**merged.get(name, {}), **(p if isinstance(p, dict) else {"_bad": p})}
        return validate_profiles(merged, str(path))
    return validate_profiles(merged)


def _size(m: dict, which: str) -> int | None:
    if which == "fp32":
        return (m.get("size") or {}).get("fp32_bytes")
    key = "int8" if which == "int8" else "onnx"
    part = m.get(key) or {}
    return part.get("bytes") if part.get("ok", True) else None


def _latency(m: dict, which: str) -> float | None:
    return ((m.get("latency") or {}).get(which) or {}).get("median_ms")


def check_budgets(measurements: dict, profiles: dict[str, dict]) -> list[dict]:
    """Pass/fail of one model's measurements (a run's result["measure"]) per profile.

    "fits" is True or False, or None when a needed figure is unavailable (never a guessed pass).
    """
    out = []
    for name, p in profiles.items():
        checks = []
        if p.get("max_bytes"):
            v = _size(measurements, p["size_of"])
            checks.append({"what": f"{SIZE_OF[p['size_of']]} bytes", "value": v, "limit": p["max_bytes"],
                           "ok": None if v is None else v <= p["max_bytes"]})
        if p.get("max_latency_ms"):
            v = _latency(measurements, p["latency_of"])
            checks.append({"what": f"{LATENCY_OF[p['latency_of']]} batch-1 median ms", "value": v,
                           "limit": p["max_latency_ms"], "ok": None if v is None else v <= p["max_latency_ms"]})
        oks = [c["ok"] for c in checks]
        fits = False if False in oks else (None if None in oks else True)
        entry = {"profile": name, "description": p.get("description", ""), "fits": fits, "checks": checks}
        if fits is None:
            entry["reason"] = "not measured: " + ", ".join(c["what"] for c in checks if c["ok"] is None)
        elif fits is False:
            entry["reason"] = "; ".join(f"{c['what']} {c['value']:.4g} > {c['limit']:.4g}" for c in checks if c["ok"] is False)
        out.append(entry)
    return out
