"""The dashboard's teacher choices (AppTest): an ONNX file and a file of outputs, checked under
their widgets; a scikit-learn teacher through the tabular preset; several teachers; and an
ensemble's members beside it on Runs, Run detail and Compare (a tiny ensemble run in-process).

Budget: about 40 s on two shared cores.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from onnx_models import linear_onnx
from test_pages import APP, TIMEOUT, button, errors, no_autostart, texts

pytestmark = pytest.mark.timeout(300)


def new_experiment() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/new_experiment.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def empty(home):
    no_autostart(home)
    return home


def test_onnx_and_outputs_teachers_are_checked_under_their_widgets(empty, tmp_path):
    from distill_core.jobs import Store

    at = new_experiment()
    at.radio(key="ne_teacher_mode").set_value("An ONNX model").run()
    flat = linear_onnx(tmp_path / "flat.onnx", input_shape=("N", 64))
    at.file_uploader(key="ne_to_file").upload("flat.onnx", flat.read_bytes(), "application/octet-stream").run()
    assert any("this data set gives (N, 1, 8, 8)" in e for e in errors(at)) and button(at, "ne_launch") is None
    good = linear_onnx(tmp_path / "good.onnx")
    at.file_uploader(key="ne_to_file").set_value(("good.onnx", good.read_bytes(), "application/octet-stream")).run()
    assert "The file fits this data set: an ONNX model" in texts(at), errors(at)
    at.multiselect(key="ne_methods").set_value(["kd", "fitnets"]).run()
    assert any("fitnets cannot distil into student 1: it needs the teacher's feature maps, and the teacher is an ONNX model"
               in e for e in errors(at))
    at.multiselect(key="ne_methods").set_value(["kd", "dkd"]).run()
    assert "This launches 4 runs" in texts(at)  # the teacher, a baseline, kd and dkd
    button(at, "ne_launch").click().run()
    runs = Store(empty).list_runs()
    assert len(runs) == 4 and runs[0]["label"].startswith("teacher onnx ") and "ONNX file teacher" in runs[1]["label"]

    at.radio(key="ne_teacher_mode").set_value("A file of its outputs").run()
    np.savez(tmp_path / "short.npz", logits=np.zeros((10, 10)))
    at.file_uploader(key="ne_tf_file").upload("short.npz", (tmp_path / "short.npz").read_bytes(), "application/octet-stream").run()
    assert any("10 row(s), but digits has 1797 samples" in e for e in errors(at)) and button(at, "ne_launch") is None


def test_the_tabular_preset_and_several_teachers(empty):
    from distill_core.jobs import Store

    at = new_experiment()
    at.selectbox(key="ne_preset").set_value("tabular-gbdt-to-mcu")
    button(at, "ne_load_preset").click().run()
    assert at.selectbox(key="ne_dataset").value == "breast-cancer"
    assert at.selectbox(key="ne_t_choice").value == "custom: gradient-boosting"
    assert "This launches 11 runs" in texts(at)  # the teacher, then 5 seeds x (scratch, kd)
    assert "custom: gradient-boosting" not in at.selectbox(key="ne_s0_choice").options  # a student is a network
    at.radio(key="ne_teacher_mode").set_value("Several teachers").run()
    assert [at.selectbox(key=f"ne_e{i}_choice").value for i in range(3)] == [
        "mlp-medium", "custom: gradient-boosting", "custom: random-forest"]  # three different teachers to start with
    assert "This launches 14 runs" in texts(at), errors(at)  # the ensemble, its 3 members, 10 students
    button(at, "ne_launch").click().run()
    labels = [r["label"] for r in Store(empty).list_runs()]
    assert labels[0].startswith("teacher ensemble mean-logits 3") and labels[2].startswith("teacher gradient-boosting")
    assert "(scikit-learn)" in labels[3] and all("ensemble teacher" in x for x in labels[4:])


@pytest.fixture(scope="module")
def ensemble_home(tmp_path_factory):
    """A home with a finished ensemble of three (an MLP, a forest, boosted trees) on moons and its
    students, run in this process."""
    from distill_core.jobs import Store, queue
    from distill_core.jobs.worker import execute_run

    home = tmp_path_factory.mktemp("ensemble")
    no_autostart(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setenv("DISTILL_MEASURE", "quick")
        store = Store(home)
        queue.submit(store, {"name": "three", "dataset": "moons", "dataset_knobs": {"n_samples": 300},
                             "teachers": [{"arch": "mlp", "hidden": [16]}, {"arch": "random-forest", "n_estimators": 10},
                                          {"arch": "gradient-boosting", "max_iter": 20}],
                             "students": [{"arch": "mlp", "hidden": [4]}], "methods": ["kd"], "seeds": [0],
                             "train": {"epochs": 3, "batch_size": 64}})
        while (run := queue.claim(store, os.getpid())) is not None:
            assert execute_run(store, run, threads=1, log=None) == "done", store.get_run(run["id"])["error"]
    return home


def test_an_ensemble_is_shown_with_its_members(ensemble_home, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(ensemble_home))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    traces = {t.get("name") for el in at.get("plotly_chart") for t in json.loads(el.proto.spec)["data"]}
    assert {"ensemble member, mlp", "ensemble member, random-forest", "ensemble member, gradient-boosting"} <= traces
    assert any(name and name.startswith("teacher, ensemble") for name in traces)
    notes = " ".join(a.get("text", "") for el in at.get("plotly_chart")
                     for a in json.loads(el.proto.spec)["layout"].get("annotations", []))
    assert "ensemble (sum of members)" in notes and "member" in notes

    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    shown = list(at.dataframe[0].value["run"])
    assert "teacher ensemble mean-logits 3" in shown and any(x.endswith("ensemble teacher") for x in shown)
    at.query_params["run"] = "1"
    at.switch_page("pages/run_detail.py").run()
    assert not at.exception, at.exception
    assert "kind **ensemble**" in texts(at) and "Members" in texts(at)
    members = at.dataframe[0].value
    assert list(members["kind"]) == ["trained", "sklearn", "sklearn"] and members["test accuracy"].between(0, 1).all()
    at.query_params["run"] = "5"
    at.switch_page("pages/run_detail.py").run()
    assert not at.exception and "(ensemble)" in texts(at)  # a student names its teacher's kind
