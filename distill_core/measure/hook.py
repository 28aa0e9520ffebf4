"""The engine's one way into measurement: `engine/runner.py` imports this module and nothing
else of `measure`, and nothing in `measure` imports the engine.

    measurement = RunMeasurement(folder, config.measure, defaults)   # a bad setting fails here
    with measurement.recorder.phase("student_training"): ...          # time (and energy) per phase
    measurement.attach(result, model, data, ...)                      # size, latency, exports, card

A method that trains the int8 model (QAD) gets it from `int8_student` and hands it back to
`attach`, which measures it as the run's deployed int8.
"""
from __future__ import annotations

from pathlib import Path

from .phases import PhaseRecorder
from .qad import Int8Student, prepare
from .run import attach_measurements
from .settings import measure_settings


class RunMeasurement:
    """One run's measurement settings, its phase recorder, and the measurements at its end."""

    def __init__(self, folder: str | Path, given: dict | None = None, defaults: dict | None = None):
        """`given`: the run config's own settings; `defaults`: the executor's (e.g. the country
        chosen on the Settings page), under `given`."""
        self.folder = Path(folder)
        self.settings = measure_settings({**(defaults or {}), **(given or {})})
        s = self.settings
        self.recorder = PhaseRecorder(energy=s["energy"], output_dir=self.folder, country=s["country"],
                                      measure_power_secs=s["power_secs"])

    def int8_student(self, model, data, seed: int, learn_ranges: bool = True) -> Int8Student:
        """The static int8 simulation of a trained fp32 `model` (unchanged), calibrated with these
        settings and `seed`; ModelError if the model cannot be exported or simulated."""
        return prepare(model, data, self.folder, self.settings, seed, learn_ranges)

    def attach(self, result: dict, model, data, teacher_logits_test=None, teacher_meta: dict | None = None,
               home: str | Path | None = None, onnx: dict | None = None,
               int8_student: Int8Student | None = None, shared_dir: str | Path | None = None) -> dict:
        """Fill result["measure"], ["energy"] and ["phases"]; never raises. `model` None: a
        teacher measured through its ONNX file, onnx={"path", "made_by"}, or not (onnx={"reason"}).
        `shared_dir`: where runs of one architecture share their figures (default: the home's)."""
        return attach_measurements(result, model, data, self.folder, self.settings, self.recorder,
                                   teacher_logits_test, teacher_meta, home, onnx, int8_student, shared_dir)
