"""Measurement and export: FLOPs by hand, bytes on disk, int8, latency, energy, budgets, the
runner hook and the `measure` command."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from distill_core.config import ExperimentSpec, expand
from distill_core.data.cache import load_data
from distill_core import teachers
from distill_core.engine import runner
from distill_core.measure.phases import PhaseRecorder
from distill_core.errors import ConfigError
from distill_core.measure import (EnergyMeter, check_budgets, count_flops, energy_summary, format_measurements,
                                  load_profiles, measure_run, measure_settings, param_counts)
from distill_core.measure.export import export_onnx, export_program
from distill_core.measure.int8 import quantize_dynamic_int8
from distill_core.measure.latency import ort_latency, ort_predict, ort_session, time_calls, torch_latency
from distill_core.models import build_model, save_weights

TINY = {"epochs": 2, "batch_size": 64, "lr": 0.003, "threads": 1}
# Short timings; every part on explicitly, so a DISTILL_MEASURE in the environment changes nothing here
# (the TorchScript exporter, fast: tests/test_int8.py covers the dynamo one).
LIGHT = {"latency_seconds": 0.03, "inference_seconds": 0.1, "throughput_batch": 32, "power_secs": 0.1, "latency": True,
         "energy": True, "onnx": True, "int8": True, "pt2": True, "card": True, "budgets": True, "threads": 1,
         "exporter": "torchscript", "int8_mode": "static", "calibration_samples": 64}


def tiny_runs(**measure):
    spec = ExperimentSpec.from_dict(dict(dataset="digits", teacher={"arch": "mlp", "hidden": [32]},
                                         students=[{"arch": "mlp", "hidden": [16]}], methods=["kd"], temperatures=[3.0],
                                         alphas=[0.7], seeds=[0], train=TINY, baseline=False))
    return [replace(r, measure={**LIGHT, **measure}) for r in expand(spec)]


# ------------------------------------------------------------------ compute
def test_flops_of_mlp_equal_hand_count():
    model = build_model({"arch": "mlp", "hidden": [32, 16]}, (64,), 10)
    macs = 64 * 32 + 32 * 16 + 16 * 10
    got = count_flops(model, (64,))
    assert got["macs"] == macs and got["flops"] == 2 * macs
    assert model.training  # the count put it back as it was


def test_flops_of_cnn_equal_hand_count():
    model = build_model({"arch": "cnn", "channels": [4, 8], "kernel": 3}, (1, 8, 8), 10)
    conv1 = 8 * 8 * 4 * (1 * 3 * 3)  # 8x8 output, 4 channels, 1x3x3 window each
    conv2 = 4 * 4 * 8 * (4 * 3 * 3)  # after 2x2 max-pool: 4x4 output, 8 channels, 4x3x3 window
    head = 8 * 10
    got = count_flops(model, (1, 8, 8))
    assert got["macs"] == conv1 + conv2 + head
    assert got["by_op"]["convolution"] == 2 * (conv1 + conv2)
    # depthwise convolutions count one input channel per output channel
    dw = build_model({"arch": "mobile", "width_mult": 0.25, "blocks": 1}, (1, 8, 8), 3)
    stem, c, w = 4, 4, 8  # widths at 0.25: stem 16*0.25, block 32*0.25
    expect = 8 * 8 * stem * 9 + 4 * 4 * c * 9 + 4 * 4 * w * c + w * 3
    assert count_flops(dw, (1, 8, 8))["macs"] == expect


def test_param_counts_total_and_trainable():
    model = build_model({"arch": "mlp", "hidden": [8]}, (4,), 3)
    for p in model.stages.parameters():
        p.requires_grad_(False)
    c = param_counts(model)
    assert c["params"] == 4 * 8 + 8 + 8 * 3 + 3 and c["trainable_params"] == 8 * 3 + 3


# ------------------------------------------------------------------ latency
def test_latency_p95_at_least_median_and_positive():
    model = build_model({"arch": "mlp", "hidden": [32]}, (16,), 4).eval()
    t = torch_latency(model, torch.randn(1, 16), seconds=0.05)
    assert t["p95_ms"] >= t["median_ms"] > 0 and t["reps"] >= 10 and t["warmup"] >= 3
    # repetitions adapt to the cost of a call: a slow call gets fewer
    slow = time_calls(lambda: time.sleep(0.002), seconds=0.05)
    assert 10 <= slow["reps"] < t["reps"] and slow["median_ms"] >= 2.0


# ------------------------------------------------------------------ export
def test_onnx_and_int8_round_trips_agree_with_pytorch(tmp_path):
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [400, 256]}, (64,), 10).eval()  # > 100k params
    assert param_counts(model)["params"] > 100_000
    x = torch.randn(50, 64)
    save_weights(model, tmp_path / "w.safetensors")
    onnx = export_onnx(model, x[:2], tmp_path / "m.onnx", x, exporter="torchscript")
    assert onnx["ok"] and onnx["verified"] and onnx["max_abs_diff"] <= 1e-4
    q = quantize_dynamic_int8(onnx["path"], tmp_path / "m.int8.onnx")
    assert q["ok"]
    fp32_bytes = os.path.getsize(tmp_path / "w.safetensors")
    assert q["bytes"] == os.path.getsize(tmp_path / "m.int8.onnx") < fp32_bytes / 2
    want = model(x).detach().numpy()
    got = ort_predict(ort_session(q["path"], 1), x.numpy())  # any batch size: the axis is dynamic
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    t = ort_latency(ort_session(onnx["path"], 1), x[:1].numpy(), seconds=0.03)
    assert t["p95_ms"] >= t["median_ms"] > 0


def test_conv_model_exports_and_program_loads(tmp_path):
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "depth": 1, "width": 4}, (1, 8, 8), 5).eval()
    x = torch.randn(6, 1, 8, 8)
    onnx = export_onnx(model, x[:2], tmp_path / "m.onnx", x, exporter="torchscript")
    assert onnx["verified"], onnx
    q = quantize_dynamic_int8(onnx["path"], tmp_path / "q.onnx")
    got = ort_predict(ort_session(q["path"], 1), x.numpy())
    assert np.abs(got - model(x).detach().numpy()).max() < 0.1
    prog = export_program(model, x[:2], tmp_path / "m.pt2", dynamic=True)
    assert prog["ok"] and prog["dynamic_batch"]
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    assert torch.allclose(loaded(x), model(x), atol=1e-5)  # any batch size
    fixed = export_program(model, x[:1], tmp_path / "f.pt2")
    assert fixed["ok"] and not fixed["dynamic_batch"] and fixed["input_shape"] == [1, 1, 8, 8]
    one = torch.export.load(str(tmp_path / "f.pt2")).module()
    assert torch.allclose(one(x[3:4]), model(x[3:4]), atol=1e-5)


def test_worker_warm_up_imports_the_exporter_but_never_traces(monkeypatch):
    """The warm-up runs beside a worker's first training: a trace there would set torch's
    process-wide exporting flag under the optimiser's feet (KeyError: 'custom', seen in a demo)."""
    import sys

    from distill_core.measure.export import warm_exporter

    traced = []
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: traced.append("onnx"))
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: traced.append("export"))
    warm_exporter()
    assert traced == []
    assert "torch.onnx._internal.exporter._registration" in sys.modules and "onnxruntime.quantization" in sys.modules


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # torch.export's own, from torch.onnx.export
def test_the_dynamo_exporter_builds_its_registry_once_and_writes_what_torch_onnx_export_writes(tmp_path, monkeypatch):
    """torch.onnx.export rebuilds the ONNX operator registry on every call (most of a small
    model's export); the lab keeps one per process. Two architectures, one build, and the same
    graph as torch.onnx.export(..., dynamo=True) writes (the batch axis named "batch")."""
    import onnx
    from torch.onnx._internal.exporter import _registration

    from distill_core.measure import export as ex

    builds = []
    real = _registration.ONNXRegistry.from_torchlib.__func__
    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib",
                        classmethod(lambda cls, *a, **k: builds.append(1) or real(cls, *a, **k)))
    monkeypatch.setattr(ex, "_REGISTRY", [])

    def graph(path):
        g = onnx.load(path).graph
        for node in g.node:
            del node.metadata_props[:]
        return g.SerializeToString()

    monkeypatch.setattr(ex, "_TRACED", threading.Event())
    for i, (arch, shape) in enumerate([("cnn-small", (1, 8, 8)), ("hinton-tiny", (64,))]):
        torch.manual_seed(i)
        model, x = build_model(arch, shape, 10).eval(), torch.randn(2, *shape)
        before = len(builds)
        ex._dynamo_export(model, x, tmp_path / f"lab{i}.onnx")
        assert len(builds) - before == (1 if i == 0 else 0)  # torch.onnx.export below builds one per call
        torch.onnx.export(model, (x,), str(tmp_path / f"torch{i}.onnx"), input_names=[ex.INPUT], output_names=[ex.OUTPUT],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True, external_data=False)
        assert graph(tmp_path / f"lab{i}.onnx") == graph(tmp_path / f"torch{i}.onnx")
    assert onnx.load(tmp_path / "lab0.onnx").graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert ex.traced()


def test_the_idle_trace_warm_up_exports_a_tiny_network_once_and_never_raises(monkeypatch):
    """A worker with nothing to do pays the exporter's first trace (measure/export.warm_trace),
    unless its process has exported already; a failure there is left for the first real export
    to report."""
    from distill_core.measure import export as ex

    calls = []
    monkeypatch.setattr(ex, "_TRACED", threading.Event())
    monkeypatch.setattr(ex, "_dynamo_export", lambda model, x, path: calls.append((type(model).__name__, tuple(x.shape))))
    ex.warm_trace()
    assert calls == [("Sequential", (2, 1, 4, 4))]
    monkeypatch.setattr(ex, "_dynamo_export", lambda *a: 1 / 0)
    ex.warm_trace()  # no exception
    ex._TRACED.set()  # a real export happened: nothing to warm
    monkeypatch.setattr(ex, "_dynamo_export", lambda model, x, path: calls.append("again"))
    ex.warm_trace()
    assert calls == [("Sequential", (2, 1, 4, 4))]


def test_export_failure_is_recorded_not_raised(tmp_path, monkeypatch):
    data = load_data({"name": "digits"})
    model = build_model({"arch": "mlp", "hidden": [8]}, data.info.input_shape, data.info.num_classes)

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = measure_run(model, data, tmp_path, settings={**LIGHT, "energy": False, "pt2": False})
    assert not out["onnx"]["ok"] and "exporter exploded" in out["onnx"]["reason"]
    assert not out["int8"]["ok"] and "ONNX export" in out["int8"]["reason"]
    assert out["latency"]["onnx"]["available"] is False and out["latency"]["torch"]["median_ms"] > 0
    assert "onnx" in out["export_errors"] and "onnx" not in out["exports"]
    assert out["size"]["fp32_bytes"] == os.path.getsize(tmp_path / "weights.safetensors")


# ------------------------------------------------------------------ energy
def _busy(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_energy_meter_gives_kwh_and_how_it_measured(tmp_path):
    with EnergyMeter("busy", tmp_path, "FRA", measure_power_secs=0.1) as m:
        _busy(0.3)
    r = m.result
    assert r["available"], r
    assert r["kwh"] >= 0 and r["kg_co2eq"] >= 0 and r["seconds"] >= 0.25
    assert r["label"] in ("measured", "estimated") and "CPU:" in r["method"] and r["country"] == "FRA"
    if not os.path.exists("/sys/class/powercap/intel-rapl:0/energy_uj"):
        assert r["label"] == "estimated" and r["parts"]["cpu"] == "estimated"
    assert (tmp_path / "emissions.csv").is_file()  # CodeCarbon's own file lands in the run folder

def test_the_energy_warm_up_pays_codecarbons_hardware_probe_for_the_first_real_tracker(tmp_path, monkeypatch):
    """A worker probes the hardware in the background when it starts (measure/energy.warm_energy):
    the run's first tracker, made with the run's own settings, must find that probe cached (the
    probe is 1.6-2.9 s on an EPYC) and still measure; a warm-up that fails raises nothing."""
    from codecarbon.core import hardware_cache, resource_tracker

    from distill_core.jobs.worker import warm_settings, warm_up_energy
    from distill_core.measure.energy import warm_energy

    probes = []
    real = resource_tracker.ResourceTracker._run_full_hardware_setup
    monkeypatch.setattr(resource_tracker.ResourceTracker, "_run_full_hardware_setup",
                        lambda self: probes.append(1) or real(self))
    hardware_cache.clear_cache()
    assert warm_energy("FRA", 0.1) is True
    assert probes == [1]
    with EnergyMeter("student_training", tmp_path, "DEU", measure_power_secs=0.2) as m:
        _busy(0.05)
    assert probes == [1] and m.result["available"], m.result

    import distill_core.jobs.worker as worker

    started = []
    monkeypatch.setattr(worker, "warm_energy", lambda *a: started.append(a))
    warm_up_energy(warm_settings({"energy": False}))
    warm_up_energy(warm_settings({"power_secs": -1}))  # a bad setting: each run will say so
    assert started == []
    warm_up_energy(warm_settings({"country": "FRA", "energy": True, "power_secs": 0.5}))
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started == [("FRA", 0.5)]
    monkeypatch.setattr(EnergyMeter, "__enter__", lambda self: 1 / 0)
    assert warm_energy() is False  # no exception


class _FailingTracker:
    stopped = 0

    def __init__(self, **kwargs):
        assert "api_key" not in kwargs

    def start(self):
        pass

    def stop(self):
        _FailingTracker.stopped += 1
        raise RuntimeError("sensor read failed")


def test_tracker_is_stopped_when_the_phase_raises(tmp_path, monkeypatch):
    import codecarbon

    _FailingTracker.stopped = 0
    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", _FailingTracker)
    rec = PhaseRecorder(energy=True, output_dir=tmp_path)
    with pytest.raises(ValueError):
        with rec.phase("student_training"):
            raise ValueError("training diverged")
    assert _FailingTracker.stopped == 1
    e = rec.phases["student_training"]["energy"]
    assert e["available"] is False and "sensor read failed" in e["reason"] and "kwh" not in e


def test_codecarbon_failure_leaves_the_run_successful(home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import fails
    teacher, student = tiny_runs(pt2=False, onnx=False, int8=False)
    runner.run_one(teacher)
    res = runner.run_one(student)
    assert res["metrics"]["accuracy"] > 0
    e = res["energy"]
    assert e["available"] is False and "CodeCarbon could not start" in e["reason"]
    assert "total_kwh" not in e and all("kwh" not in p for p in e["phases"].values())
    assert res["measure"]["size"]["params"] > 0
    assert any("energy    unavailable" in line for line in format_measurements(res))


def test_energy_summary_counts_reused_phases_apart():
    ok = lambda kwh: {"available": True, "kwh": kwh, "kg_co2eq": kwh / 2, "seconds": 1.0, "label": "estimated",
                      "method": "CPU: cpu_load", "country": "USA"}
    phases = {"student_training": {"seconds": 1, "energy": ok(2.0)},
              "inference": {"seconds": 1, "energy": {**ok(1.0), "predictions": 1000, "kwh_per_1000": 1.0}}}
    s = energy_summary(phases, {"teacher_training": {"seconds": 5, "energy": ok(10.0)}})
    assert s["total_kwh"] == 3.0 and s["saved_kwh"] == 10.0 and s["phases"]["teacher_training"]["reused"]
    assert s["inference_kwh_per_1000"] == 1.0 and s["label"] == "estimated"
    off = energy_summary(phases, enabled=False)
    assert off["available"] is False and "turned off" in off["reason"]


# ------------------------------------------------------------------ budgets
MEAS = {"size": {"fp32_bytes": 400_000}, "int8": {"ok": True, "bytes": 120_000},
        "latency": {"onnx_int8": {"median_ms": 0.5}, "onnx": {"median_ms": 0.3}}}


def test_budgets_pass_and_fail_where_they_should():
    profiles = {"mcu": {"size_of": "int8", "max_bytes": 256 * 1024, "latency_of": "onnx_int8", "max_latency_ms": 1.0},
                "tiny": {"size_of": "int8", "max_bytes": 64 * 1024},
                "fp32-tight": {"size_of": "fp32", "max_bytes": 10**6, "latency_of": "onnx", "max_latency_ms": 0.1},
                "torch": {"latency_of": "torch", "max_latency_ms": 5.0}}
    from distill_core.measure.budgets import validate_profiles

    got = {b["profile"]: b for b in check_budgets(MEAS, validate_profiles(profiles))}
    assert got["mcu"]["fits"] is True
    assert got["tiny"]["fits"] is False and "bytes" in got["tiny"]["reason"]
    assert got["fp32-tight"]["fits"] is False and "median ms" in got["fp32-tight"]["reason"] and "bytes" not in got["fp32-tight"]["reason"]
    assert got["torch"]["fits"] is None and "not measured" in got["torch"]["reason"]  # no guessed pass


def test_user_budgets_file_overrides_and_extends(home):
    (home / "budgets.json").write_text(json.dumps({"mcu": {"max_bytes": 100_000}, "watch": {"max_bytes": 50_000}}))
    p = load_profiles(home)
    assert p["mcu"]["max_bytes"] == 100_000 and p["mcu"]["size_of"] == "int8"  # other fields kept
    assert p["watch"]["max_bytes"] == 50_000 and "phone" in p
    got = {b["profile"]: b["fits"] for b in check_budgets(MEAS, p)}
    assert got["mcu"] is False and got["watch"] is False and got["phone"] is True
    (home / "budgets.json").write_text(json.dumps({"mcu": {"max_bytes": "lots"}}))
    with pytest.raises(ConfigError, match="max_bytes"):
        load_profiles(home)


# ------------------------------------------------------------------ settings
def test_measure_settings_defaults_env_and_errors(monkeypatch):
    monkeypatch.delenv("DISTILL_MEASURE", raising=False)
    monkeypatch.setenv("DISTILL_COUNTRY", "deu")
    s = measure_settings()
    assert s["energy"] and s["onnx"] and s["int8"] and s["card"] and s["share"] and s["country"] == "DEU"
    assert not s["pt2"]  # made on demand (measure/on_demand.py)
    monkeypatch.setenv("DISTILL_MEASURE", "quick")
    assert measure_settings()["energy"] is False and measure_settings({"energy": True})["energy"] is True
    with pytest.raises(ConfigError, match="country"):
        measure_settings({"country": "France"})
    with pytest.raises(ConfigError, match="unknown setting"):
        measure_settings({"repetitions": 5})


def test_bad_measure_setting_fails_before_training(home, monkeypatch):
    teacher, _ = tiny_runs(latency_seconds=-1)
    called = []
    monkeypatch.setattr(teachers, "train_model", lambda *a, **k: called.append(1))  # a teacher run trains there
    with pytest.raises(ConfigError, match="latency_seconds"):
        runner.run_one(teacher)
    assert not called


# ------------------------------------------------------------------ the runner hook, end to end
def test_run_one_stores_every_measurement(home):
    teacher_cfg, student_cfg = tiny_runs()
    teacher = runner.run_one(teacher_cfg)
    res = runner.run_one(student_cfg)
    for r in (teacher, res):  # the teacher is measured too: it is a landmark on the plots
        m = r["measure"]
        folder = home / "runs" / r["hash"]
        assert m["size"]["fp32_bytes"] == os.path.getsize(folder / "weights.safetensors")
        assert m["size"]["params"] == r["params"] and m["size"]["int8_bytes"] == os.path.getsize(folder / "model.int8.onnx")
        assert m["compute"]["flops"] == 2 * m["compute"]["macs"] > 0
        for k in ("torch", "onnx", "onnx_int8"):
            assert m["latency"][k]["p95_ms"] >= m["latency"][k]["median_ms"] > 0, k
        assert m["latency"]["torch_batch"]["samples_per_s"] > 0 and m["threads"] == 1
        assert m["onnx"]["verified"] and 0 <= m["int8"]["accuracy"] <= 1
        for k in ("onnx", "int8", "pt2", "card_md", "card_json"):
            assert os.path.isfile(m["exports"][k]), k
        assert {b["profile"] for b in m["budgets"]} >= {"mcu", "phone", "cpu-server"}
        e = r["energy"]
        assert e["available"] and e["label"] in ("measured", "estimated") and e["total_kwh"] >= 0
        inf = e["phases"]["inference"]
        assert inf["available"] and inf["predictions"] > 0 and inf["kwh_per_1000"] >= 0
    assert set(teacher["energy"]["phases"]) >= {"teacher_training", "teacher_logits", "inference"}
    phases = res["energy"]["phases"]
    assert set(phases) >= {"teacher_training", "teacher_logits", "student_training", "inference"}
    assert phases["teacher_training"]["reused"] and not phases["student_training"]["reused"]
    assert res["energy"]["saved_kwh"] == pytest.approx(
        phases["teacher_training"]["kwh"] + phases["teacher_logits"]["kwh"])
    assert "teacher_agreement" in res["measure"]["int8"]
    stored = json.loads((home / "runs" / res["hash"] / "result.json").read_text())
    assert stored["measure"]["size"] == res["measure"]["size"] and stored["energy"]["label"] == res["energy"]["label"]
    card = json.loads((home / "runs" / res["hash"] / "model_card.json").read_text())
    assert card["dataset"]["name"] == "digits" and card["method"]["name"] == "kd"
    assert card["temperature"] == 3.0 and card["alpha"] == 0.7 and card["teacher"]["hash"] == teacher["hash"]
    assert card["metrics"]["accuracy"] == res["metrics"]["accuracy"] and card["energy"]["label"] == res["energy"]["label"]
    md = (home / "runs" / res["hash"] / "model_card.md").read_text()
    assert "ort.InferenceSession" in md and "torch.export.load" in md and res["energy"]["label"] in md
    text = "\n".join(format_measurements(res))
    for word in ("FLOPs", "ONNX Runtime", "int8", "student_training", "kWh per 1,000 predictions", "budgets"):
        assert word in text, word


def test_measure_command_on_a_saved_run(home, capsys):
    from distill_core.cli import main

    teacher, _ = tiny_runs(pt2=False, energy=False)
    r = runner.run_one(teacher)
    assert main(["--home", str(home), "measure", r["hash"][:6], "--no-energy", "--latency-seconds", "0.03"]) == 0
    out = capsys.readouterr().out
    assert "FLOPs" in out and "profile" in out and "mcu" in out
    measured = json.loads((home / "measure" / r["hash"] / "measure.json").read_text())
    assert measured["measure"]["compute"]["flops"] == r["measure"]["compute"]["flops"]
    assert main(["--home", str(home), "measure", str(home / "runs" / r["hash"] / "weights.safetensors")]) == 0
    w = home / "loose.safetensors"
    w.write_bytes((home / "runs" / r["hash"] / "weights.safetensors").read_bytes())
    assert main(["--home", str(home), "measure", str(w)]) == 2  # no --arch / --dataset: a clear error
    assert "needs --arch and --dataset" in capsys.readouterr().err
