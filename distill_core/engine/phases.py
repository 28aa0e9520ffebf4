"""Per-phase bookkeeping of a run: wall time now; the measurement layer adds energy."""
from __future__ import annotations

import time
from contextlib import contextmanager


class PhaseRecorder:
    """`with rec.phase("student_training"): ...` records how long each phase took."""

    def __init__(self):
        self.phases: dict[str, dict] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            entry = self.phases.setdefault(name, {"seconds": 0.0})
            entry["seconds"] += time.perf_counter() - start
