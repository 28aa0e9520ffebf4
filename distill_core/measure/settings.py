"""Measurement settings: what to measure and how long to spend on it.

A run config may carry a `measure` dict; anything it leaves out takes the default below. The
default is everything on, so every run is measured the same way; tests turn the heavy parts off.
"""
from __future__ import annotations

import json
import os

from ..errors import ConfigError
from ..registry import Param, coerce_knobs


def iso_country(code: str) -> str:
    """An ISO 3166 alpha-3 country code, upper case ("fra" -> "FRA"); ValueError otherwise."""
    country = str(code).strip().upper()
    if len(country) != 3 or not country.isalpha():
        raise ValueError(f"must be a 3-letter ISO code such as USA, FRA or DEU; got {code!r}")
    return country


COUNTRY = Param("country", "", "ISO 3166 alpha-3 country code for carbon intensity (empty: $DISTILL_COUNTRY, else USA)",
                "str", check=lambda code: iso_country(code) if code.strip() else "")
MEASURE_PARAMS = (
    Param("threads", 1, "CPU threads for latency and throughput (0 = all cores); fixed and recorded", "int", 0, 256),
    Param("latency_seconds", 0.05, "time spent on each latency measurement (repetitions adapt to it, at least 20)", "float", 0.01, 60.0),
    Param("throughput_batch", 256, "batch size for throughput and the inference-energy loop", "int", 1, 65536),
    Param("inference_seconds", 0.2, "length of the timed inference loop whose energy is measured", "float", 0.05, 600.0),
    Param("latency", True, "measure latency and throughput", "bool"),
    Param("share", True, "measure the figures that depend only on the architecture (FLOPs, latency, inference "
          "energy) once per architecture, threads and runtime, and reuse them in its other runs", "bool"),
    Param("energy", True, "measure energy per phase with CodeCarbon (offline)", "bool"),
    COUNTRY,
    Param("power_secs", 0.5, "CodeCarbon's power-measurement interval in seconds", "float", 0.05, 60.0),
    Param("onnx", True, "export ONNX and time it in ONNX Runtime", "bool"),
    Param("exporter", "dynamo", "ONNX exporter: dynamo (PyTorch's maintained one; TorchScript if it fails, the reason "
          "recorded) or torchscript (the legacy one)", "choice", choices=("dynamo", "torchscript")),
    Param("int8", True, "quantise the ONNX model to int8 and measure it", "bool"),
    Param("int8_mode", "static", "int8 variant: static (activations calibrated, QDQ: what devices run), dynamic "
          "(activations quantised at run time) or auto (both measured; the deployed one is the faster at batch 1 "
          "unless it is more than 1 point less accurate)", "choice", choices=("static", "dynamic", "auto")),
    Param("calibration_samples", 256, "training samples that calibrate static int8's activation ranges (a seeded "
          "draw: the run's seed)", "int", 1, 100_000),
    Param("calibration_method", "minmax", "how static int8 turns the calibration activations into ranges: minmax, "
          "entropy or percentile", "choice", choices=("minmax", "entropy", "percentile")),
    Param("pt2", False, "save a torch.export program (.pt2) for every run (off: made on demand, from a run's Files "
          "tab or `python -m distill_core export ID --pt2`)", "bool"),
    Param("pt2_dynamic", False, "give the .pt2 program a free batch axis (export about 3x slower); else batch 1", "bool"),
    Param("card", True, "write a model card (Markdown and JSON)", "bool"),
    Param("budgets", True, "check the deployment budgets", "bool"),
)


def default_country() -> str:
    return (os.environ.get("DISTILL_COUNTRY") or "USA").strip().upper()


def env_defaults() -> dict:
    """Defaults from $DISTILL_MEASURE: a JSON object of settings, or "quick" (no energy,
    no .pt2, short timings, the fast exporter) for test suites and CI. A run config's own
    settings win."""
    raw = os.environ.get("DISTILL_MEASURE", "").strip()
    if not raw:
        return {}
    if raw.lower() == "quick":
        return dict(QUICK)
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"DISTILL_MEASURE must be a JSON object of measure settings or 'quick'; got {raw!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"DISTILL_MEASURE must be a JSON object of measure settings or 'quick'; got {raw!r}")
    return value


# Quick also exports with the TorchScript exporter (tens of ms; the dynamo one takes seconds for each
# new architecture) and calibrates static int8 on fewer samples.
QUICK = {"energy": False, "pt2": False, "latency_seconds": 0.02, "inference_seconds": 0.05, "throughput_batch": 32,
         "exporter": "torchscript", "calibration_samples": 64}


def measure_settings(given: dict | None = None) -> dict:
    """Validated settings: defaults, then $DISTILL_MEASURE, then `given`.

    A bad value is a ConfigError saying which setting and why.
    """
    if given is not None and not isinstance(given, dict):
        raise ConfigError(f"measure: settings must be a mapping, got {type(given).__name__}")
    s = coerce_knobs(MEASURE_PARAMS, {**env_defaults(), **(given or {})}, "measure")
    if not s["country"]:
        s["country"] = COUNTRY.coerce(default_country(), "measure")
    return s
