"""Measurement and export: parameters, bytes, FLOPs, latency, energy, ONNX / int8 / .pt2,
model cards and deployment budgets. See DESIGN.md, "Measurement honesty".

Every run gets (engine/runner.run_one calls `attach_measurements`):

result["measure"]
  size      params, trainable_params, fp32_bytes (the .safetensors file), onnx_bytes, int8_bytes
  compute   flops, macs (per sample, FlopCounterMode), by_op
  latency   threads; torch / onnx / onnx_int8: batch 1 {median_ms, p95_ms, mean_ms, reps, ...};
            torch_batch / onnx_batch / onnx_int8_batch: {batch, samples_per_s, median_ms, ...}
  onnx      ok, verified, max_abs_diff, path, bytes, exporter (dynamo | torchscript), graph (exported | reused)
            [, fallback_from: why the dynamo exporter was not used]
  int8      the deployed int8 model: ok, variant (static | dynamic | qad), chosen_by, path, bytes, accuracy,
            fp32_accuracy, accuracy_drop, agreement_with_fp32[, teacher_agreement], calibration (static:
            method, samples, split, seed), edits; QAD also ptq_accuracy, agreement_with_simulation
  int8_variants  every int8 variant measured, by name, each as `int8` with its own latency / latency_batch
  pt2       ok, path, bytes, dynamic_batch (made on demand by default: on_demand.py, then on_demand: True)
  shared    key, measured: the shared figures this run measured, carried: {figure: run hash that measured
            it}, measured_by: those runs (shared.py: FLOPs, latency and inference energy, once per architecture)
  exports   paths: weights, onnx, int8, pt2, card_md, card_json;  export_errors: {part: reason}
  budgets   [{profile, description, fits: True/False/None, checks: [...], reason}]
  seconds, part_seconds, settings
result["energy"]
  available, label ("measured" | "estimated"), method (how CodeCarbon measured), country,
  total_kwh, total_kg_co2eq (this run), saved_kwh (reused teacher phases),
  inference_kwh_per_1000, phases: {name: {available, kwh, kg_co2eq, seconds, label, reused, ...}}
A figure that could not be obtained is {"available": False, "reason": ...}, never 0.

Settings: config["measure"] (see settings.MEASURE_PARAMS), over $DISTILL_MEASURE, over defaults.
Budgets: budgets.DEFAULT_PROFILES, extended by <home>/budgets.json.
"""
from .budgets import DEFAULT_PROFILES, check_budgets, load_profiles
from .card import write_model_card
from .compute import count_flops, file_bytes, param_counts
from .energy import EnergyMeter, energy_summary
from .report import format_measurements
from .run import attach_measurements, measure_run
from .settings import MEASURE_PARAMS, measure_settings

__all__ = ["DEFAULT_PROFILES", "check_budgets", "load_profiles", "write_model_card", "count_flops", "file_bytes",
           "param_counts", "EnergyMeter", "energy_summary", "format_measurements", "attach_measurements",
           "measure_run", "MEASURE_PARAMS", "measure_settings"]
