"""Per-phase bookkeeping of a run: wall time, and energy when asked for.

`with rec.phase("student_training"): ...` records the seconds each phase took; with
`PhaseRecorder(energy=True, output_dir=folder)` each phase also gets a CodeCarbon reading
(see measure/energy.py), stopped when the phase ends, also when it raises.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from .energy import EnergyMeter, add_energy
from .settings import default_country


class PhaseRecorder:
    def __init__(self, energy: bool = False, output_dir: str | Path | None = None, country: str | None = None,
                 measure_power_secs: float = 0.5):
        self.phases: dict[str, dict] = {}
        self.energy = energy
        self.output_dir = output_dir
        self.country = country
        self.measure_power_secs = measure_power_secs

    def fresh(self) -> PhaseRecorder:
        """An empty recorder with the same settings: for a teacher made inside another run (an
        ensemble's member), whose own phases go into its cache entry."""
        return PhaseRecorder(self.energy, self.output_dir, self.country, self.measure_power_secs)

    def absorb(self, other: PhaseRecorder) -> None:
        """Add another recorder's phases (time and energy) to this one's: this run spent them."""
        for name, entry in other.phases.items():
            mine = self.phases.setdefault(name, {"seconds": 0.0})
            mine["seconds"] += entry.get("seconds", 0.0)
            if entry.get("energy"):
                mine["energy"] = add_energy(mine.get("energy"), entry["energy"])

    @contextmanager
    def phase(self, name: str, energy: bool | None = None):
        """Time the block; measure its energy if `energy` (default: the recorder's setting).

        Yields the phase's entry, so the block may add figures to it (e.g. predictions made).
        """
        entry = self.phases.setdefault(name, {"seconds": 0.0})
        use_energy = self.energy if energy is None else energy
        meter = None
        if use_energy:
            meter = EnergyMeter(name, self.output_dir, self.country or default_country(), self.measure_power_secs)
            meter.__enter__()
        start = time.perf_counter()
        try:
            yield entry
        finally:
            entry["seconds"] += time.perf_counter() - start
            if meter is not None:
                meter.__exit__(None, None, None)
                entry["energy"] = add_energy(entry.get("energy"), meter.result)
