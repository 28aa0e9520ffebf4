"""Teachers of every kind, end to end on small data the tests make: the lab's own teacher
exported to ONNX and distilled from as an ONNX file, that ONNX teacher's outputs as a file (the
student is bit for bit the same), a random forest on a CSV, an ensemble of three; and every bad
ONNX or outputs file refused with a message naming it, before anything is queued.

Budget: about 40 s on two shared cores (tiny models, a few epochs, measurement quick).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import TensorProto
from safetensors.torch import load_file

from distill_core import analysis, onnx_files, teachers
from distill_core.config import ExperimentSpec, expand
from distill_core.data import run_entry
from distill_core.data.cache import load_data
from distill_core.engine.runner import run_one
from distill_core.errors import DataError, DistillError, ModelError
from distill_core.jobs import Store, queue
from distill_core.jobs.worker import execute_run
from distill_core.uploads import save_upload
from onnx_models import linear_onnx

DIGITS = {"dataset": "digits", "teacher": {"arch": "cnn", "channels": [4, 8]}, "students": [{"arch": "mlp", "hidden": [16]}],
          "methods": ["kd"], "temperatures": [2.0], "seeds": [0], "baseline": False,
          "train": {"epochs": 3, "batch_size": 128}, "teacher_train": {"epochs": 3, "batch_size": 128}}


LEAN = {"int8": False, "card": False}  # measured otherwise as quick (conftest): ONNX export and latency stay


def run_lean(config):
    return run_one(config, measure=LEAN)


def runs_of(spec: dict, **changes):
    return expand(ExperimentSpec.from_dict({**spec, **changes}))


def weights(result: dict) -> dict:
    return load_file(result["artifacts"]["weights"])


# -- the three routes on digits ---------------------------------------------------------------------------


def test_onnx_teacher_from_the_labs_export_and_its_outputs_file(home, tmp_path):
    original = runs_of(DIGITS)
    first = [run_lean(r) for r in original]
    exported = first[0]["measure"]["exports"]["onnx"]  # the lab's own exporter, verified against PyTorch

    as_onnx = runs_of(DIGITS, teacher={"onnx": exported})
    assert teachers.kind_of(as_onnx[0]) == "onnx" and as_onnx[0].source["sha256"]
    second = [run_lean(r) for r in as_onnx]
    t = second[0]
    assert t["teacher"]["kind"] == "onnx" and t["teacher"]["outputs_taken_as"].startswith("logits")
    assert abs(t["metrics"]["accuracy"] - first[0]["metrics"]["accuracy"]) < 1e-9  # the same teacher, run elsewhere
    assert t["measure"]["latency"]["onnx"]["median_ms"] > 0 and t["measure"]["size"]["onnx_bytes"] > 0
    assert "black-box" in t["measure"]["compute"]["reason"]  # FLOPs: not counted, and said so, never 0
    assert abs(second[1]["metrics"]["accuracy"] - first[1]["metrics"]["accuracy"]) <= 0.005  # same seed
    assert second[1]["teacher_kind"] == "onnx"

    # The ONNX teacher's outputs, one row per sample in the data set's order, as a teacher of its own.
    path = teachers.export_outputs(home, as_onnx[0], tmp_path / "outputs.npz")
    data = load_data(as_onnx[0].dataset)
    assert np.load(path)["logits"].shape == (data.n_rows, 10)
    as_file = runs_of(DIGITS, teacher={"outputs": str(path)})
    third = [run_lean(r) for r in as_file]
    assert third[0]["teacher"]["kind"] == "outputs" and third[0]["measure"]["available"] is False
    a, b = weights(second[1]), weights(third[1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit

    # Logit methods work with a teacher without a network; feature methods are refused, saying which work.
    logit = runs_of(DIGITS, teacher={"outputs": str(path)}, methods=["kd", "dkd", "dist", "logit-std"])
    assert sorted(r.method_name for r in logit[1:]) == ["dist", "dkd", "kd", "logit-std"]
    assert runs_of(DIGITS, teacher={"outputs": str(path)}, methods=[{"name": "takd", "assistant": "mlp-small"}])[1].teacher.role == "assistant"
    with pytest.raises(DistillError, match=r"fitnets cannot distil.*teacher is an ONNX model.*Methods that work here: .*kd"):
        runs_of(DIGITS, teacher={"onnx": exported}, methods=["fitnets"])
    with pytest.raises(DistillError, match="name the assistant"):
        runs_of(DIGITS, teacher={"onnx": exported}, methods=["takd"])
    with pytest.raises(DistillError, match="augment"):
        runs_of(DIGITS, teacher={"outputs": str(path)}, train={"epochs": 1, "augment": True})
    edited = tmp_path / "edited.onnx"
    edited.write_bytes(open(exported, "rb").read())
    later = runs_of(DIGITS, teacher={"onnx": str(edited)})
    linear_onnx(edited)  # changed after submission: refused by the worker, not used
    with pytest.raises(ModelError, match="changed after the experiment was submitted"):
        run_lean(later[0])


def test_probabilities_and_a_fixed_batch_are_read_and_said(home, tmp_path):
    path = linear_onnx(tmp_path / "probs.onnx", softmax=True, batch=7)
    runs = runs_of(DIGITS, teacher={"onnx": str(path)})
    got = run_lean(runs[0])
    assert "probabilities (detected" in got["teacher"]["outputs_taken_as"] and got["teacher"]["fixed_batch"] == 7
    logits = teachers.TeacherCache(home).logits(runs[0].hash)
    assert torch.allclose(logits["test"].exp().sum(1), torch.ones(len(logits["test"])), atol=1e-4)


# -- scikit-learn teachers on a table ------------------------------------------------------------------------


def table(tmp_path, n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 0.5)).astype(int)
    df = pd.DataFrame(x, columns=list("abcd")).assign(label=y, sample=[f"s{i:03d}" for i in range(n)])
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return path


def test_random_forest_teacher_on_a_csv_and_outputs_aligned_by_id(home, tmp_path):
    csv = table(tmp_path)
    spec = {"dataset": "csv", "dataset_knobs": {"path": str(csv), "id_column": "sample"},
            "teacher": {"arch": "random-forest", "n_estimators": 15}, "students": [{"arch": "mlp", "hidden": [8]}],
            "methods": ["kd"], "seeds": [0], "baseline": False, "train": {"epochs": 3, "batch_size": 64}}
    runs = runs_of(spec)
    got = [run_lean(r) for r in runs]
    folder = teachers.TeacherCache(home).folder(runs[0].hash)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "logits.safetensors", "meta.json", "model.onnx"]
    assert got[0]["teacher"]["kind"] == "sklearn" and got[0]["measure"]["onnx"]["exporter"] == "skl2onnx"
    assert got[0]["measure"]["latency"]["onnx"]["median_ms"] > 0 and got[0]["metrics"]["accuracy"] > 0.6
    data = load_data(runs[0].dataset)
    info = onnx_files.check_onnx(folder / "model.onnx", data.info.input_shape, 2)
    probs = onnx_files.run(onnx_files.session(folder / "model.onnx"), info, data.x_test.numpy())
    cached = teachers.TeacherCache(home).logits(runs[0].hash)["test"]
    assert np.allclose(np.log(np.clip(probs, 1e-7, 1)), cached.numpy(), atol=1e-4)  # the ONNX file is the model

    # Its outputs as a CSV with the data set's ids, rows shuffled: aligned by id, the same teacher logits.
    full = np.exp(teachers.outputs_files.in_data_order(teachers.TeacherCache(home).logits(runs[0].hash), data))
    ids = pd.read_csv(csv)["sample"]
    shuffled = pd.DataFrame(full, columns=["p0", "p1"]).assign(sample=ids).sample(frac=1, random_state=1)
    shuffled.to_csv(tmp_path / "outs.csv", index=False)
    again = runs_of(spec, teacher={"outputs": str(tmp_path / "outs.csv"), "id_column": "sample", "values": "probabilities"})
    run_lean(again[0])
    assert torch.allclose(teachers.TeacherCache(home).logits(again[0].hash)["train"],
                          teachers.TeacherCache(home).logits(runs[0].hash)["train"], atol=1e-5)

    assert runs[0].dataset["id_column"] == "sample"
    assert run_entry("csv", {"path": str(csv), "id_column": ""}) == {"name": "csv", "path": str(csv)}  # old runs keep their hashes
    with pytest.raises(DistillError, match="scikit-learn model: it can teach"):
        runs_of(spec, students=["gradient-boosting"])
    with pytest.raises(DistillError, match="works on vector inputs, not image inputs"):
        runs_of(DIGITS, teacher="gradient-boosting")


# -- an ensemble of three ---------------------------------------------------------------------------------------


def test_ensemble_of_three_teachers_with_its_members(home):
    spec = {"dataset": "moons", "dataset_knobs": {"n_samples": 300},
            "teachers": [{"arch": "mlp", "hidden": [16]}, {"arch": "random-forest", "n_estimators": 10},
                         {"arch": "gradient-boosting", "max_iter": 20}],
            "students": [{"arch": "mlp", "hidden": [4]}], "methods": ["kd"], "seeds": [0],
            "train": {"epochs": 3, "batch_size": 64}}
    store = Store(home)
    exp, ids = queue.submit(store, spec)
    rows = {r["id"]: r for r in store.list_runs()}
    ensemble, members = ids[0], ids[1:4]
    assert [rows[i]["label"].split()[1].split("(")[0] for i in ids[:4]] == ["ensemble", "mlp", "random-forest",
                                                                            "gradient-boosting"]
    assert all(rows[m]["depends_on"] == ensemble for m in members)  # the ensemble makes them; their runs wait
    assert "ensemble teacher" in rows[ids[4]]["label"]
    while (run := queue.claim(store, os.getpid())) is not None:
        assert execute_run(store, run, threads=1, log=None) == "done", store.get_run(run["id"])["error"]
    frame = analysis.with_ensembles(store.results_frame())
    ens = frame[frame.run_id == ensemble].iloc[0]
    assert ens.teacher_kind == "ensemble" and set(frame[frame.run_id.isin(members)].member_of) == {ens.model}
    assert all(store.get_run(m)["result"]["teacher_cached"] for m in members)  # made once, by the ensemble
    about = store.get_run(ensemble)["result"]["teacher"]
    assert [m["kind"] for m in about["members"]] == ["trained", "sklearn", "sklearn"]
    cache = teachers.TeacherCache(home)
    mean = torch.stack([cache.logits(m["hash"])["test"] for m in about["members"]]).mean(0)
    assert torch.allclose(cache.logits(store.get_run(ensemble)["hash"])["test"], mean)
    lat = "measure.latency.onnx.median_ms"
    assert ens.costs_from_members and ens[lat] == pytest.approx(frame[frame.run_id.isin(members)][lat].sum())


# -- bad input ---------------------------------------------------------------------------------------------------


def refused(spec: dict, path, words: str, store=None):
    """expand (and submit) refuse the experiment with a message naming the file; nothing is queued."""
    before = len(store.list_runs()) if store else 0
    with pytest.raises(DistillError) as e:
        queue.submit(store, spec) if store else runs_of(spec)
    assert str(path) in str(e.value) and __import__("re").search(words, str(e.value)), str(e.value)
    if store:
        assert len(store.list_runs()) == before


def test_bad_onnx_files_are_refused_before_anything_trains(home, tmp_path):
    store = Store(home)
    spec = lambda p: {**DIGITS, "teacher": {"onnx": str(p)}}
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"certainly not a protobuf \x00\xff" * 10)
    refused(spec(junk), junk, "not an ONNX model", store)
    flat = linear_onnx(tmp_path / "flat.onnx", input_shape=("N", 64))
    refused(spec(flat), flat, r"input 'x' has shape \(N, 64\); this data set gives \(N, 1, 8, 8\)", store)
    three = linear_onnx(tmp_path / "three.onnx", n_out=3)
    refused(spec(three), three, "gives 3 scores per sample, but the data set has 10 classes", store)
    custom = linear_onnx(tmp_path / "custom.onnx", domain="com.example.custom")
    refused(spec(custom), custom, "needs a custom-op library", store)
    broken = onnx.load(str(linear_onnx(tmp_path / "ok.onnx")))
    broken.graph.node[1].input[0] = "nowhere"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    refused(spec(tmp_path / "broken.onnx"), tmp_path / "broken.onnx", "fails the ONNX checker", store)
    for location in ("../secret.bin", str(tmp_path / "abs.bin")):
        model = onnx.load(str(tmp_path / "ok.onnx"))
        w = model.graph.initializer[0]
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=location)
        sub = tmp_path / "models"
        sub.mkdir(exist_ok=True)
        onnx.save(model, str(sub / "ext.onnx"))
        refused(spec(sub / "ext.onnx"), sub / "ext.onnx", "outside the model's folder", store)
    with pytest.raises(DataError, match="more than the 0.001 MB upload limit"):
        save_upload(home, "big.onnx", (tmp_path / "ok.onnx").read_bytes(), limit_mb=0.001)
    refused({**spec(tmp_path / "ok.onnx"), "teacher": {"onnx": str(tmp_path / "ok.onnx"), "max_mb": 0.001}},
            tmp_path / "ok.onnx", "more than max_mb", store)


def test_bad_outputs_files_are_refused_before_anything_trains(home, tmp_path):
    store = Store(home)
    n, k = 1797, 10
    spec = lambda p, **o: {**DIGITS, "teacher": {"outputs": str(p), **o}}
    rng = np.random.default_rng(0)

    def npz(name, a):
        np.savez(tmp_path / name, logits=a)
        return tmp_path / name

    refused(spec(npz("rows.npz", rng.normal(size=(n - 1, k)))), tmp_path / "rows.npz", "1796 row.*1797 samples", store)
    refused(spec(npz("cols.npz", rng.normal(size=(n, 3)))), tmp_path / "cols.npz", "3 column.*10 classes", store)
    bad = rng.normal(size=(n, k))
    bad[5, 2] = np.nan
    refused(spec(npz("nan.npz", bad)), tmp_path / "nan.npz", "NaN or infinite values", store)
    p = rng.uniform(0, 1, size=(n, k)) / 5
    refused(spec(npz("sums.npz", p)), tmp_path / "sums.npz", "probabilities do not sum to 1", store)
    refused(spec(npz("sums2.npz", p), values="probabilities"), tmp_path / "sums2.npz", "do not sum to 1", store)
    df = pd.DataFrame(rng.normal(size=(n, k))).assign(id=[str(i) for i in range(n)])
    df.loc[3, "id"] = "no-such-sample"
    df.to_csv(tmp_path / "ids.csv", index=False)
    refused(spec(tmp_path / "ids.csv", id_column="id"), tmp_path / "ids.csv", "1 unknown id.*no-such-sample", store)
    df.loc[3, "id"] = "4"
    df.to_csv(tmp_path / "twice.csv", index=False)
    refused(spec(tmp_path / "twice.csv", id_column="id"), tmp_path / "twice.csv", "4 appear more than once", store)
    (tmp_path / "text.npz").write_text("not a zip")
    refused(spec(tmp_path / "text.npz"), tmp_path / "text.npz", "not a valid .npz", store)
    assert store.list_runs() == []
