"""Energy per phase with CodeCarbon's OfflineEmissionsTracker (no network, ever).

`EnergyMeter` is a context manager around one tracker: it starts on entry, always stops on
exit (also when the block raises) and leaves `.result`:

    {"available": True, "kwh": ..., "kg_co2eq": ..., "seconds": ..., "label": "estimated",
     "method": "CPU: cpu_load (estimated from CPU load x TDP 8 W); RAM: power model (estimated)",
     "parts": {"cpu": "estimated", "ram": "estimated"}, "country": "USA", ...}

or, when CodeCarbon is missing or fails, {"available": False, "reason": "..."}: a figure that
could not be obtained is never reported as zero. The label says "measured" only when the
compute devices were read from hardware counters (RAPL, Power Gadget, powermetrics, NVML...);
CPU-load and constant-TDP figures are "estimated". RAM is always CodeCarbon's power model.

The first tracker of a process costs about two seconds (CodeCarbon probes the hardware and
caches it); later ones cost a few tens of milliseconds to start and stop. A worker pays that
probe in a background thread when it starts (`warm_energy`), not in its first run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from .. import paths

MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "windows_emi", "apple_powermetrics"}


def _hardware_method(tracker) -> tuple[str, str, dict]:
    """(label, method string, parts) from what the tracker actually used."""
    parts: dict[str, str] = {}
    words: list[str] = []
    for hw in getattr(tracker, "_hardware", None) or []:
        kind = type(hw).__name__
        if kind == "CPU":
            mode = str(getattr(hw, "_mode", "unknown"))
            measured = mode in MEASURED_CPU_MODES
            parts["cpu"] = "measured" if measured else "estimated"
            detail = {"cpu_load": f"estimated from CPU load x TDP {getattr(hw, '_tdp', '?')} W",
                      "constant": f"constant TDP {getattr(hw, '_tdp', '?')} W"}.get(mode, "hardware counter" if measured else "estimated")
            words.append(f"CPU: {mode} ({detail})")
        elif kind == "GPU":
            parts["gpu"] = "measured"
            words.append("GPU: NVML/AMD SMI power counters (measured)")
        elif kind == "RAM":
            parts["ram"] = "estimated"
            words.append("RAM: power model (estimated)")
        elif kind in ("AppleSiliconChip", "Raspberry"):
            parts[str(getattr(hw, "chip_part", kind)).lower()] = "measured"
            words.append(f"{kind} {getattr(hw, 'chip_part', '')}: power counters (measured)")
        else:
            parts[kind.lower()] = "estimated"
            words.append(f"{kind}: unknown method (estimated)")
    compute = [v for k, v in parts.items() if k != "ram"]
    label = "measured" if compute and all(v == "measured" for v in compute) else "estimated"
    return label, "; ".join(words) or "unknown", parts


class EnergyMeter:
    """`with EnergyMeter("student_training", folder) as m: ...` then `m.result`."""

    def __init__(self, phase: str, output_dir: str | Path | None = None, country: str = "USA",
                 measure_power_secs: float = 0.5, enabled: bool = True):
        self.phase = phase
        self.output_dir = Path(output_dir) if output_dir else None
        self.country = country
        self.measure_power_secs = measure_power_secs
        self.enabled = enabled
        self.tracker = None
        self.result: dict = {"available": False, "reason": "not measured yet"}
        self.overhead_s = 0.0  # time spent starting and stopping the tracker

    def __enter__(self) -> "EnergyMeter":
        if not self.enabled:
            self.result = {"available": False, "reason": "energy measurement turned off"}
            return self
        t = time.perf_counter()
        try:
            self.tracker = self._make_tracker()
            self.tracker.start()
        except Exception as exc:  # CodeCarbon missing, a bad country, a probe that failed
            self.tracker = None
            self.result = {"available": False, "reason": f"CodeCarbon could not start: {type(exc).__name__}: {exc}"[:500]}
        self.overhead_s += time.perf_counter() - t
        self._start = time.perf_counter()
        return self

    def _make_tracker(self):
        from codecarbon import OfflineEmissionsTracker  # heavy (pandas, psutil...): imported only to measure

        # Its import sets the level to INFO; quiet it before the tracker's first messages.
        logging.getLogger("codecarbon").setLevel(logging.ERROR)

        kwargs = dict(project_name=f"distill:{self.phase}", country_iso_code=self.country,
                      tracking_mode="process", measure_power_secs=self.measure_power_secs,
                      log_level="error", allow_multiple_runs=True)
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            kwargs.update(save_to_file=True, output_dir=str(self.output_dir), output_file=paths.EMISSIONS)
        else:
            kwargs.update(save_to_file=False)
        return OfflineEmissionsTracker(**kwargs)

    def __exit__(self, *exc_info) -> bool:
        if self.tracker is None:
            return False
        elapsed = time.perf_counter() - self._start
        t = time.perf_counter()
        try:
            emissions = self.tracker.stop()
            data = getattr(self.tracker, "final_emissions_data", None)
            if emissions is None or data is None:
                raise RuntimeError("the tracker returned no figures")
            label, method, parts = _hardware_method(self.tracker)
            kwh = float(data.energy_consumed)
            if not kwh >= 0:
                raise RuntimeError(f"the tracker reported {kwh} kWh")
            self.result = {
                "available": True, "kwh": kwh, "kg_co2eq": float(emissions),
                "seconds": float(getattr(data, "duration", elapsed) or elapsed),
                "label": label, "method": method, "parts": parts,
                "cpu_kwh": float(data.cpu_energy), "ram_kwh": float(data.ram_energy), "gpu_kwh": float(data.gpu_energy),
                "cpu_power_w": float(data.cpu_power), "country": getattr(data, "country_iso_code", self.country),
                "codecarbon": getattr(data, "codecarbon_version", ""),
            }
        except Exception as exc:
            self.result = {"available": False, "reason": f"CodeCarbon failed to stop: {type(exc).__name__}: {exc}"[:500]}
        finally:
            self.tracker = None
            self.overhead_s += time.perf_counter() - t
            self.result["overhead_s"] = self.overhead_s
        return False  # never swallow the block's own exception


def warm_energy(country: str = "USA", measure_power_secs: float = 0.5) -> bool:
    """Pay CodeCarbon's once-per-process hardware probe now, with a tracker that measures
    nothing: 1.6-2.9 s on a 2-core EPYC (py-cpuinfo probes the CPU in a subprocess, and pandas is
    imported to read the CPU power table), which a worker's first run otherwise waits for
    before its training starts. A worker calls it in a background thread when it starts.
    CodeCarbon keeps the probe's outcome per process under a lock (codecarbon.core.hardware_cache,
    keyed by the tracking settings, which EnergyMeter always sets alike), so a run's tracker
    that starts meanwhile waits for this probe instead of repeating it. Returns whether the
    tracker started (the probe runs in its start); never raises."""
    meter = EnergyMeter("warm-up", country=country, measure_power_secs=measure_power_secs)
    try:
        with meter:
            return meter.tracker is not None
    except Exception:  # EnergyMeter reports its own failures; the first run's tracker will too
        logging.getLogger(__name__).debug("CodeCarbon warm-up failed", exc_info=True)
        return False


def add_energy(a: dict | None, b: dict) -> dict:
    """Two readings of the same phase (it ran twice) as one."""
    if not a:
        return dict(b)
    if not (a.get("available") and b.get("available")):
        bad = a if not a.get("available") else b
        return {"available": False, "reason": bad.get("reason", "unavailable"),
                "overhead_s": a.get("overhead_s", 0) + b.get("overhead_s", 0)}
    out = dict(a)
    for k in ("kwh", "kg_co2eq", "seconds", "cpu_kwh", "ram_kwh", "gpu_kwh", "overhead_s"):
        out[k] = a.get(k, 0.0) + b.get(k, 0.0)
    if b.get("label") == "estimated":
        out["label"] = "estimated"
    return out


def energy_summary(phases: dict, reused: dict | None = None, enabled: bool = True) -> dict:
    """Energy of a run from its phases (those with an "energy" entry).

    `reused` are phases from a cached teacher (its training and logits): shown, marked
    reused, and not counted in this run's total; their sum is what the reuse saved.
    """
    if not enabled:
        return {"available": False, "reason": "energy measurement turned off (measure.energy = false)", "phases": {}}
    out: dict[str, dict] = {}
    for name, entry in (reused or {}).items():
        if isinstance(entry, dict) and "energy" in entry:
            out[name] = {**entry["energy"], "reused": True}
    for name, entry in phases.items():
        if "energy" in entry:
            out[name] = {**entry["energy"], "reused": False}
    spent = [e for e in out.values() if e.get("available") and not e["reused"]]
    saved = [e for e in out.values() if e.get("available") and e["reused"]]
    missing = {k: e.get("reason", "unavailable") for k, e in out.items() if not e.get("available")}
    summary = {"available": bool(spent), "phases": out, "unavailable": missing}
    if not spent:
        summary["reason"] = "; ".join(f"{k}: {r}" for k, r in missing.items()) or "no phase was measured"
        return summary
    labels = {e["label"] for e in spent}
    summary.update({
        "total_kwh": sum(e["kwh"] for e in spent),
        "total_kg_co2eq": sum(e["kg_co2eq"] for e in spent),
        "saved_kwh": sum(e["kwh"] for e in saved),
        "label": "measured" if labels == {"measured"} else "estimated",
        "method": spent[0]["method"],
        "country": spent[0].get("country"),
    })
    inf = out.get("inference")
    if inf and inf.get("available") and inf.get("predictions"):
        summary["inference_kwh_per_1000"] = inf["kwh_per_1000"]
    return summary
