"""Figures that depend only on the architecture are measured once and shared (measure/shared.py),
and the .pt2 program is made on demand (measure/on_demand.py, `export ID --pt2`)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from distill_core import paths
from distill_core.config import ExperimentSpec, expand
from distill_core.data.cache import load_data
from distill_core.engine import runner
from distill_core.jobs import cli, queue
from distill_core.jobs.store import JobError, Store
from distill_core.jobs.worker import run_inline
from distill_core.measure import measure_run, measure_settings
from distill_core.measure.shared import SharedFigures, graph_fingerprint, shared_figures
from distill_core.measure.compute import architecture_fingerprint
from distill_core.models import build_model

TINY = {"epochs": 2, "batch_size": 64, "lr": 0.003, "threads": 1}
# Every part on but .pt2, short timings (a DISTILL_MEASURE in the environment changes nothing here).
LIGHT = {"latency_seconds": 0.03, "inference_seconds": 0.1, "throughput_batch": 32, "power_secs": 0.1, "latency": True,
         "energy": True, "onnx": True, "int8": True, "pt2": False, "card": True, "budgets": True, "threads": 1,
         "exporter": "torchscript", "int8_mode": "static", "calibration_samples": 64, "share": True}
SHARED = ["compute", "inference_phase", "onnx", "onnx_batch", "torch", "torch_batch"]


def two_seed_runs(**measure):
    """A teacher and one student architecture distilled with two seeds: two runs of one shape."""
    spec = ExperimentSpec.from_dict(dict(dataset="digits", teacher={"arch": "mlp", "hidden": [32]},
                                         students=[{"arch": "mlp", "hidden": [16]}], methods=["kd"], temperatures=[3.0],
                                         seeds=[0, 1], train=TINY, baseline=False))
    return [replace(r, measure={**LIGHT, **measure}) for r in expand(spec)]


def test_a_second_run_of_an_architecture_carries_the_first_runs_figures(tmp_path):
    teacher, first, second = two_seed_runs()
    runner.run_one(teacher, tmp_path)
    a = runner.run_one(first, tmp_path)
    b = runner.run_one(second, tmp_path)
    ma, mb = a["measure"], b["measure"]
    assert ma["shared"]["carried"] == {} and set(SHARED) <= set(ma["shared"]["measured"])
    # the second run timed nothing again: it carries the first's figures and names it. Its int8
    # latency is carried too where its int8 graph is the first's; a seed's deployable edits (a
    # float output where no further from fp32) can make another graph, timed for itself.
    def int8_graphs(m):
        return {k.split(":")[1] for k in [*m["shared"]["measured"], *m["shared"]["carried"]] if k.startswith("int8:")}

    same_int8 = int8_graphs(ma) == int8_graphs(mb)
    assert mb["shared"]["measured_by"] == [a["hash"]]
    assert mb["shared"]["measured"] == ([] if same_int8 else [f"int8:{g}:{k}" for g in int8_graphs(mb) for k in ("latency", "latency_batch")])
    assert set(SHARED) <= set(mb["shared"]["carried"]) and set(mb["shared"]["carried"].values()) == {a["hash"]}
    assert not {"flops", "torch_latency", "inference_loop", "onnx_latency"} & set(mb["part_seconds"])
    for key in ("torch", "torch_batch", "onnx", "onnx_batch", *(("onnx_int8", "onnx_int8_batch") if same_int8 else ())):
        assert mb["latency"][key] == ma["latency"][key], key
    assert mb["compute"] == ma["compute"]
    # whichever graph the second seed made, the entry keeps the first's int8 timings under its
    # graph: a later run with that graph carries them
    entry = json.loads((paths.shared_measures(tmp_path) / f"{ma['shared']['key']}.json").read_text())
    g = graph_fingerprint(ma["int8"]["path"])
    later = SharedFigures(entry, "later").take([f"int8:{g}:latency", f"int8:{g}:latency_batch"])
    assert later == [ma["latency"]["onnx_int8"], ma["latency"]["onnx_int8_batch"]]
    # per-run figures stay per run: its own int8 file, accuracy and agreement
    assert mb["int8"]["path"] != ma["int8"]["path"] and Path(mb["int8"]["path"]).is_file()
    assert mb["int8"]["accuracy"] == pytest.approx(b["measure"]["int8"]["accuracy"])
    assert b["metrics"]["accuracy"] != a["metrics"]["accuracy"] or b["hash"] != a["hash"]
    # its inference energy is the first run's, shown as shared and not counted in its total
    ea, eb = a["energy"], b["energy"]
    assert "inference" in a["phases"] and "inference" not in b["phases"]
    assert eb["phases"]["inference"]["reused"] and eb["phases"]["inference"]["shared_from"] == a["hash"]
    assert eb["inference_kwh_per_1000"] == pytest.approx(ea["inference_kwh_per_1000"])
    assert eb["total_kwh"] == pytest.approx(sum(p["kwh"] for k, p in eb["phases"].items() if not p["reused"]))
    card = (Path(b["artifacts"]["folder"]) / paths.CARD_MD).read_text()
    assert f"measured once, by run `{a['hash']}`" in card


def test_other_threads_an_other_architecture_or_sharing_off_measure_again(tmp_path):
    data = load_data({"name": "digits"})
    settings = {**LIGHT, "energy": False, "int8": False, "card": False, "budgets": False}
    names = iter(f"run{i}" for i in range(10))

    def measure(arch, **given):
        model = build_model(arch, data.info.input_shape, data.info.num_classes)
        name = next(names)
        return measure_run(model, data, tmp_path / name, settings={**settings, **given}, shared_dir=tmp_path / "shared",
                           run=name)["shared"]

    small = {"arch": "mlp", "hidden": [16]}
    first = measure(small)  # run0
    assert first["carried"] == {} and "torch" in first["measured"]
    again = measure(small)  # run1: same shape, other weights
    assert again["measured"] == [] and again["measured_by"] == ["run0"] and again["carried"]["torch"] == "run0"
    for changed in (measure(small, threads=2), measure({"arch": "mlp", "hidden": [17]}),
                    measure(small, latency_seconds=0.04)):
        assert changed["carried"] == {} and "torch" in changed["measured"], changed
    assert measure(small, share=False) == {"available": False, "reason": "turned off (measure.share = false)"}


def test_a_broken_entry_is_measured_again(tmp_path):
    data = load_data({"name": "digits"})
    model = build_model({"arch": "mlp", "hidden": [8]}, data.info.input_shape, data.info.num_classes)
    settings = {**LIGHT, "energy": False, "int8": False, "onnx": False, "card": False, "budgets": False}
    shared = tmp_path / "shared"
    key = measure_run(model, data, tmp_path / "a", settings=settings, shared_dir=shared, run="a")["shared"]["key"]
    (shared / f"{key}.json").write_text("{not json")
    again = measure_run(model, data, tmp_path / "b", settings=settings, shared_dir=shared, run="b")["shared"]
    assert again["carried"] == {} and "torch" in again["measured"]
    assert json.loads((shared / f"{key}.json").read_text())["figures"]["torch"]["measured_by"] == "b"


def test_two_workers_at_once_measure_an_architecture_once(tmp_path):
    model = build_model({"arch": "mlp", "hidden": [8]}, (64,), 10)
    settings = measure_settings(LIGHT)
    calls, results = [], {}

    def worker(name):
        with shared_figures(tmp_path, model, (64,), 1, settings, 32, name) as (shared, _):
            figure = shared.get("torch")
            if figure is None:
                calls.append(name)
                time.sleep(0.3)  # measuring, while the other waits on the lock
                figure = {"median_ms": 1.0}
                shared.put("torch", figure)
            results[name] = shared.summary("k")

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    other = ({"a", "b"} - set(calls)).pop()
    assert results[other]["measured_by"] == calls


def test_fingerprints_see_the_shape_not_the_weights(tmp_path):
    from distill_core.measure.export import export_onnx

    make = lambda hidden, seed: (torch.manual_seed(seed), build_model({"arch": "mlp", "hidden": hidden}, (64,), 10).eval())[1]
    a, b, c = make([16], 0), make([16], 1), make([17], 0)
    assert architecture_fingerprint(a) == architecture_fingerprint(b) != architecture_fingerprint(c)
    x = torch.randn(8, 64)
    files = [export_onnx(m, x[:2], tmp_path / f"{i}.onnx", x, exporter="torchscript")["path"] for i, m in enumerate((a, b, c))]
    assert graph_fingerprint(files[0]) == graph_fingerprint(files[1]) != graph_fingerprint(files[2])


# -- .pt2 on demand ---------------------------------------------------------------------------------

def test_pt2_is_made_on_demand_and_recorded_in_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_HOME", str(tmp_path))
    monkeypatch.setenv("DISTILL_MEASURE", json.dumps({**LIGHT, "energy": False}))
    store = Store()
    spec = {"dataset": "digits", "teacher": {"arch": "mlp", "hidden": [16]}, "students": [{"arch": "mlp", "hidden": [8]}],
            "methods": ["kd"], "baseline": False, "teacher_train": {"epochs": 1}, "train": {"epochs": 1}}
    _, ids = queue.submit(store, spec)
    run_inline(store)
    student = store.get_run(ids[1])
    folder = Path(student["folder"])
    assert not (folder / paths.PT2).exists()
    assert "Files tab" in student["result"]["measure"]["pt2"]["reason"]  # says how to make it

    assert cli.main(["export", "--home", str(tmp_path), str(ids[1]), "--pt2"]) == 0
    assert "model.pt2" in capsys.readouterr().out
    after = store.get_run(ids[1])["result"]
    assert after["measure"]["pt2"]["ok"] and after["measure"]["pt2"]["on_demand"]
    assert after["artifacts"]["pt2"] == str(folder / paths.PT2)
    assert json.loads((folder / paths.RESULT).read_text())["measure"]["pt2"]["ok"]
    assert "model.pt2" in (folder / paths.CARD_MD).read_text()
    program = torch.export.load(str(folder / paths.PT2)).module()
    data = load_data({"name": "digits"})
    assert program(data.x_test[:1]).shape == (1, 10)

    assert cli.main(["export", "--home", str(tmp_path), "999", "--pt2"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["export", "--home", str(tmp_path), str(ids[1])]) == 2  # nothing named to make
    with pytest.raises(JobError, match="not done"):
        queue.make_pt2(store, queue.submit(store, spec, force=True)[1][1])


def test_a_dynamo_graph_left_by_one_worker_serves_the_next(tmp_path, monkeypatch):
    from distill_core.measure import export as export_mod

    monkeypatch.setattr(export_mod, "_GRAPHS", type(export_mod._GRAPHS)())  # this process has none
    x = torch.randn(16, 64)
    first = build_model({"arch": "mlp", "hidden": [16]}, (64,), 10).eval()
    a = export_mod.export_onnx(first, x[:2], tmp_path / "a.onnx", x, graph_dir=tmp_path / "shared")
    assert a["ok"] and a["graph"] == "exported" and len(list((tmp_path / "shared").glob("graph-*.onnx"))) == 1
    export_mod._GRAPHS.clear()  # another worker process: only the folder is shared
    second = build_model({"arch": "mlp", "hidden": [16]}, (64,), 10).eval()
    b = export_mod.export_onnx(second, x[:2], tmp_path / "b.onnx", x, graph_dir=tmp_path / "shared")
    assert b["ok"] and b["verified"] and b["graph"] == "reused" and b["exporter"] == "dynamo"


def test_once_filed_runs_carry_the_figures_without_waiting_on_the_lock(tmp_path):
    from distill_core.files import try_lock

    model = build_model({"arch": "mlp", "hidden": [8]}, (64,), 10)
    settings = measure_settings(LIGHT)
    with shared_figures(tmp_path, model, (64,), 1, settings, 32, "a") as (shared, key):
        shared.put("torch", {"median_ms": 1.0})
    held = try_lock(tmp_path / f".{key}.lock")  # another worker busy measuring a run of it
    try:
        t = time.monotonic()
        with shared_figures(tmp_path, model, (64,), 1, settings, 32, "b") as (shared, _):
            assert shared.get("torch") == {"median_ms": 1.0}
        assert time.monotonic() - t < 5  # the lock is waited on (up to a minute) only before the first entry
    finally:
        held.close()


def test_the_first_run_lets_the_others_carry_its_figures_once_published(tmp_path):
    """The first run of an architecture holds the others back only while it measures the shared
    figures: once it publishes them, a second worker carries them during its per-run work."""
    model = build_model({"arch": "mlp", "hidden": [8]}, (64,), 10)
    settings = measure_settings(LIGHT)
    published, second_done, seen = threading.Event(), threading.Event(), {}

    def second():
        published.wait(10)
        with shared_figures(tmp_path, model, (64,), 1, settings, 32, "b") as (shared, _):
            seen["torch"] = shared.get("torch")
        second_done.set()

    other = threading.Thread(target=second)
    other.start()
    with shared_figures(tmp_path, model, (64,), 1, settings, 32, "a") as (shared, key):
        shared.put("torch", {"median_ms": 1.0})
        shared.publish()
        published.set()
        assert second_done.wait(10)  # it did not wait for this block to end
        shared.put("int8:g:latency", {"median_ms": 0.5})  # measured after publishing: filed on leaving
    other.join(10)
    assert seen["torch"] == {"median_ms": 1.0}
    figures = json.loads((tmp_path / f"{key}.json").read_text())["figures"]
    assert set(figures) == {"torch", "int8:g:latency"} and figures["torch"]["measured_by"] == "a"
