"""Page tests (streamlit.testing.v1.AppTest): every page on an empty store and on a store with
finished, running and failed runs; the New-experiment form's validation and submit; the quick
demo; cancel / retry / delete; uploads; settings. Plus the library helpers the pages draw from.

The store with runs is built once for the module from tiny real runs (two epochs of small MLPs
on digits, run in-process by the jobs layer's own `execute_run`); the running and failed runs
are claimed through the scheduler and left running or ended through the store's own API.
Worker autostart is off in every home here, so nothing trains in the background.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 90

TINY = {"name": "tiny", "dataset": "digits", "teacher": {"arch": "mlp", "hidden": [32]},
        "students": [{"arch": "mlp", "hidden": [8]}], "methods": [{"name": "kd"}], "temperatures": [4.0],
        "alphas": [0.9], "seeds": [0], "train": {"epochs": 2, "batch_size": 128}}
FAILURE = "student training diverged at epoch 2 (loss nan); try a lower learning rate"


def no_autostart(home: Path) -> None:
    (home / "settings.json").write_text(json.dumps({"autostart": False}))


def texts(at) -> str:
    """Everything written on the page, as one string."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "info", "warning", "success", "text"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def errors(at) -> list[str]:
    return [str(e.value) for e in at.error]


def open_page(page: str | None = None, query: dict | None = None) -> AppTest:
    """The app from its entry point, then the page (as a user would navigate)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.query_params.update(query or {})
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def button(at, key: str):
    found = [b for b in at.button if b.key == key]
    return found[0] if found else None


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A home with a finished teacher, a finished KD student and its scratch baseline, one
    running run with progress events and one failed run with a traceback."""
    from distill_core.jobs import Store, queue
    from distill_core.jobs.queue import claim
    from distill_core.jobs.worker import execute_run

    home = tmp_path_factory.mktemp("lab")
    no_autostart(home)
    old_cwd = os.getcwd()
    os.chdir(home)  # CodeCarbon may write next to the working directory
    mp = pytest.MonkeyPatch()
    mp.delenv("DISTILL_MEASURE", raising=False)  # full measurement: energy, exports, card, as in use
    try:
        store = Store(home)
        queue.submit(store, TINY)
        while (run := claim(store, os.getpid())) is not None:
            assert execute_run(store, run, threads=1, log=None) == "done"
        more = {**TINY, "name": "more", "students": [{"arch": "mlp", "hidden": [4]}, {"arch": "mlp", "hidden": [6]}],
                "baseline": False}
        queue.submit(store, more)
        failed = claim(store, os.getpid())
        queue.end(store, failed["id"], "failed", FAILURE, "Traceback (most recent call last):\n  ...\nFloatingPointError: " + FAILURE)
        running = claim(store, os.getpid())
        store.add_events(running["id"], [
            {"phase": "start"},
            {"phase": "student", "epoch": 1, "epochs": 2, "step": 10, "steps": 20, "losses": {"loss": 2.1, "soft": 1.0}},
            {"phase": "student", "epoch": 1, "epochs": 2, "step": 10, "steps": 20, "losses": {"loss": 1.9},
             "val_accuracy": 0.31, "epoch_end": True},
            {"phase": "student", "epoch": 2, "epochs": 2, "step": 15, "steps": 20, "losses": {"loss": 1.5}},
        ])
    finally:
        os.chdir(old_cwd)
        mp.undo()
    done = {r["label"]: r["id"] for r in store.list_runs(status="done")}
    return {"home": home, "store": store, "failed": failed["id"], "running": running["id"],
            "kd": next(i for label, i in done.items() if "kd" in label),
            "teacher": next(i for label, i in done.items() if label.startswith("teacher"))}


@pytest.fixture
def lab_home(lab, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(lab["home"]))
    return lab


@pytest.fixture
def empty(home):
    no_autostart(home)
    return home


PAGES = ["pages/new_experiment.py", "pages/runs.py", "pages/run_detail.py", "pages/settings.py"]


# ------------------------------------------------------------------------------- every page


def test_every_page_renders_on_an_empty_store(empty):
    at = open_page()
    assert button(at, "demo") is not None  # the quick demo is one click away
    assert "No finished runs yet" in texts(at)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not errors(at), (page, errors(at))
    at.switch_page("pages/runs.py").run()
    assert "No runs match" in texts(at)
    at.switch_page("pages/run_detail.py").run()
    assert "No runs yet" in texts(at)


def test_every_page_renders_with_finished_running_and_failed_runs(lab_home):
    at = open_page()
    assert [m.value for m in at.metric][:4] == ["0", "1", "3", "1"]  # queued, running, done, failed
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    for extra in ("pages/compare.py", "pages/learn.py"):  # the trade-off pages, when they exist
        if (ROOT / extra).is_file():
            at.switch_page(extra).run()
            assert not at.exception, (extra, [e.value for e in at.exception])


def test_runs_page_shows_status_progress_live_curves_and_errors(lab_home):
    at = open_page("pages/runs.py")
    table = at.dataframe[0].value
    statuses = " ".join(table["status"])
    assert "done" in statuses and "running" in statuses and "failed" in statuses
    running = table[table["id"] == lab_home["running"]].iloc[0]
    assert running["progress"] == pytest.approx(15 / 20)
    assert table[table["id"] == lab_home["kd"]].iloc[0]["progress"] == 1.0
    assert table[table["id"] == lab_home["kd"]].iloc[0]["node"] == socket.gethostname()  # where it trained
    page = texts(at)
    assert "Training now (1)" in page  # the live section, with its curves
    assert len(at.get("plotly_chart")) >= 1
    assert FAILURE in "\n".join(errors(at))  # the failed run's error, with its traceback below
    assert any("FloatingPointError" in str(code.value) for code in at.code)


def test_run_detail_of_a_finished_student_shows_figures_measurements_and_downloads(lab_home):
    at = open_page("pages/run_detail.py", {"run": str(lab_home["kd"])})
    assert not errors(at), errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["test accuracy"].endswith("%") and metrics["agreement"].endswith("%")
    assert metrics["KL to teacher"] != "unavailable"
    # curves, confusion, per-class accuracy, reliability, samples (6 by default), energy
    assert len(at.get("plotly_chart")) >= 4 + 6
    labels = [b.label for b in at.get("download_button")]
    for what in ("ONNX model (fp32)", "ONNX model (int8, deployed)", "weights (.safetensors)", "model card (Markdown)",
                 "model card (JSON)", "run config (JSON)"):
        assert f"Download {what}" in labels
    page = texts(at)
    assert f"node {socket.gethostname()}" in page
    assert "estimated" in page or "measured" in page or "Energy** unavailable" in page
    assert "unavailable: 0" not in page


def test_run_detail_says_a_one_seed_difference_rests_on_one_seed(lab_home):
    at = open_page("pages/run_detail.py", {"run": str(lab_home["kd"])})
    delta = next(m for m in at.metric if m.label == "test accuracy").proto.delta
    assert delta.endswith("pts vs scratch (seed 0)")
    assert "resting on 1 seed: its spread is unknown" in texts(at)  # TINY has one seed


def test_run_detail_predictions_follow_the_temperature(lab_home):
    at = open_page("pages/run_detail.py", {"run": str(lab_home["kd"])})
    before = [chart.proto.spec for chart in at.get("plotly_chart")]
    at.slider(key="detail_T").set_value(1.0).run()
    after = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert not at.exception and len(before) == len(after)
    changed = sum(x != y for x, y in zip(before, after))
    assert changed == 6  # the six sample charts (teacher and student bars), and nothing else


def test_run_detail_of_failed_running_and_missing_runs(lab_home):
    at = open_page("pages/run_detail.py", {"run": str(lab_home["failed"])})
    assert FAILURE in "\n".join(errors(at))
    assert button(at, "detail_retry") is not None
    at = open_page("pages/run_detail.py", {"run": str(lab_home["running"])})
    assert not errors(at) and len(at.get("plotly_chart")) == 1  # live curves only
    at = open_page("pages/run_detail.py", {"run": "999"})
    assert "There is no run #999" in "\n".join(errors(at))
    at = open_page("pages/run_detail.py", {"run": "abc"})
    assert "is not a run id" in "\n".join(errors(at))


def test_run_detail_of_a_teacher_says_what_does_not_apply(lab_home):
    at = open_page("pages/run_detail.py", {"run": str(lab_home["teacher"])})
    assert not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["agreement"] == "unavailable"  # shown as unavailable, never as 0
    assert "unavailable" in texts(at)  # the teacher's own softened predictions: no teacher of its own


# ------------------------------------------------------------------------------- new experiment


def test_bad_form_values_show_their_message_and_queue_nothing(empty):
    from distill_core.jobs import Store

    at = open_page("pages/new_experiment.py")
    assert button(at, "ne_launch") is not None  # the default experiment is valid
    at.text_input(key="ne_temps").set_value("2, abc").run()
    assert "temperatures: 'abc' is not a number" in errors(at)
    assert button(at, "ne_launch") is None
    at.text_input(key="ne_temps").set_value("4").run()
    at.number_input(key="ne_tr__epochs").set_value(0).run()
    assert any("epochs must be >= 1, got 0" in e for e in errors(at))
    at.number_input(key="ne_tr__epochs").set_value(3).run()
    at.selectbox(key="ne_s0_choice").set_value("custom: mlp").run()
    at.text_input(key="ne_s0_mlp__hidden").set_value("64, 0").run()
    assert any("hidden must be >= 1, got 0" in e for e in errors(at))
    assert button(at, "ne_launch") is None
    assert Store(empty).queue_state() == dict.fromkeys(Store(empty).queue_state(), 0)


def test_every_registered_method_gets_its_form(empty):
    from distill_core.methods import ALPHA, METHODS, TEMPERATURE

    names = [m.name for m in METHODS if m.name != "scratch"]
    at = open_page("pages/new_experiment.py")
    at.multiselect(key="ne_methods").set_value(names).run()
    assert not at.exception
    labels = " ".join(e.label for e in at.expander)
    for m in METHODS:
        if m.name == "scratch":
            continue
        assert f"**{m.name}**: {m.description}" in labels
        for p in m.params:  # every knob has its widget, except the swept temperature and alpha
            if p not in (TEMPERATURE, ALPHA):
                assert any(w.key == f"ne_m_{m.name}__{p.name}" for w in at.get("text_input") + at.get("number_input")
                           + at.get("selectbox") + at.get("checkbox")), (m.name, p.name)
    # a method that cannot work with these models says so, and nothing can be launched
    at.selectbox(key="ne_s0_choice").set_value("custom: mlp").run()
    assert any("cannot distil into student 1" in e for e in errors(at)) and button(at, "ne_launch") is None


def test_valid_submit_queues_the_expected_runs(empty):
    from distill_core.jobs import Store

    at = open_page("pages/new_experiment.py")
    at.text_input(key="ne_temps").set_value("2, 4").run()
    at.text_input(key="ne_seeds").set_value("0, 1").run()
    # 1 teacher + 2 seeds x (1 scratch baseline + 2 temperatures of kd) = 7 runs
    assert "This launches 7 runs" in texts(at)
    at.text_input(key="ne_name").set_value("page test").run()
    button(at, "ne_launch").click().run()
    assert not at.exception and not errors(at)
    store = Store(empty)
    runs = store.list_runs()
    assert len(runs) == 7 and {r["status"] for r in runs} == {"queued"}
    assert sorted(r["role"] for r in runs).count("teacher") == 1
    assert store.experiments()[0]["name"] == "page test"
    assert "Experiment #1 queued" in texts(at)


def test_presets_and_experiment_files_load_into_the_form(empty):
    at = open_page("pages/new_experiment.py")
    spec = json.loads((ROOT / "assets" / "example_experiment.json").read_text())
    at.file_uploader(key="ne_json_file").upload("sweep.json", json.dumps(spec).encode(), "application/json").run()
    assert not at.exception
    assert at.text_input(key="ne_temps").value == "1, 2, 4, 8"
    assert at.text_input(key="ne_seeds").value == "0, 1"
    assert "This launches 11 runs" in texts(at)  # 1 teacher + 2 seeds x (1 baseline + 4 temperatures)
    at.file_uploader(key="ne_json_file").set_value(("bad.json", b"{not json", "application/json")).run()
    assert any("bad.json: not valid JSON" in e for e in errors(at))
    at.file_uploader(key="ne_json_file").set_value(("odd.json", b'{"colour": 1}', "application/json")).run()
    assert any("unknown experiment field(s) colour" in e for e in errors(at))
    at.selectbox(key="ne_preset").set_value("mnist1d-cnn-to-mlp")
    button(at, "ne_load_preset").click().run()
    assert at.selectbox(key="ne_dataset").value == "mnist1d"


def test_uploaded_csv_becomes_the_data_set_and_limits_are_enforced(empty):
    at = open_page("pages/new_experiment.py")
    data = (ROOT / "assets" / "sample.csv").read_bytes()
    at.file_uploader(key="ne_data_file").upload("iris.csv", data, "text/csv").run()
    assert not at.exception and not errors(at), errors(at)
    assert at.selectbox(key="ne_dataset").value == "csv"
    saved = Path(at.text_input(key="ne_ds_csv__path").value)
    assert saved.parent == empty / "uploads" and saved.read_bytes() == data
    assert "3 classes" in texts(at)
    # a CSV whose label column is missing: the data set's own message, nothing to launch
    at.file_uploader(key="ne_data_file").set_value(("bad.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert any("label" in e for e in errors(at)) and button(at, "ne_launch") is None
    # over the upload limit from Settings
    (empty / "settings.json").write_text(json.dumps({"autostart": False, "upload_mb": 1}))
    at.file_uploader(key="ne_data_file").set_value(("big.csv", b"x" * (2 * 1024 * 1024), "text/csv")).run()
    assert any("more than the 1 MB upload limit" in e for e in errors(at))


def test_teacher_weights_upload_is_checked_against_the_architecture(empty, tmp_path):
    from distill_core.models import build_model, save_weights

    good = save_weights(build_model("mlp-small", (1, 8, 8), 10), tmp_path / "t.safetensors")
    at = open_page("pages/new_experiment.py")
    at.radio(key="ne_teacher_mode").set_value("Upload teacher weights").run()
    at.selectbox(key="ne_tu_choice").set_value("mlp-medium").run()
    at.file_uploader(key="ne_tw_file").upload("t.safetensors", good.read_bytes()).run()
    assert any("weights do not fit this architecture" in e for e in errors(at))
    at.selectbox(key="ne_tu_choice").set_value("mlp-small").run()
    assert "The weights fit this architecture." in texts(at)
    assert button(at, "ne_launch") is not None


def test_reusing_a_trained_teacher_queues_no_teacher_training(lab_home):
    at = open_page("pages/new_experiment.py")
    at.radio(key="ne_teacher_mode").set_value("Reuse a trained teacher").run()
    assert not at.exception and not errors(at), errors(at)
    picked = at.selectbox(key="ne_t_reuse")
    assert "mlp" in picked.format_func(picked.value)  # the lab's trained MLP teacher
    page = texts(at)
    assert "This launches 3 runs" in page and "1 of them already finished and will be reused" in page


def test_quick_demo_queues_the_preset(empty):
    from distill_core.jobs import Store
    from distill_core.presets import preset_spec
    from distill_core.config import expand

    at = open_page()
    button(at, "demo").click().run()
    assert not at.exception and not errors(at)
    runs = Store(empty).list_runs()
    assert preset_spec("digits-quick").seeds == [0, 1, 2]  # mean and spread, not one seed's noise
    # one teacher, then the scratch and the distilled student on each of three seeds
    assert len(runs) == len(expand(preset_spec("digits-quick"))) == 7
    assert [r["role"] for r in runs].count("teacher") == 1
    assert "0/7 runs done" in "\n".join(str(p.proto.text) for p in at.get("progress"))


def test_home_shows_the_demo_with_mean_and_spread_over_its_seeds(empty):
    """A finished three-seed demo: Home gives each student's mean ± spread and the difference
    seed by seed, as analysis.seeds_summary computes them from the store."""
    import numpy as np

    from distill_core import analysis
    from distill_core.jobs import Store, queue
    from distill_core.jobs.queue import claim
    from distill_core.jobs.worker import execute_run

    store = Store(empty)
    queue.submit(store, {**TINY, "name": "digits-quick", "seeds": [0, 1, 2]})  # the demo's shape, tiny models
    while (run := claim(store, os.getpid())) is not None:
        assert execute_run(store, run, threads=1, log=None) == "done"
    frame = store.results_frame()
    at = open_page()
    page = texts(at)
    assert "7/7 runs done" in "\n".join(str(p.proto.text) for p in at.get("progress"))
    kd = frame[frame["method"] == "kd"].sort_values("seed")["accuracy"].to_numpy()
    scratch = frame[(frame["method"] == "scratch") & (frame["role"] == "student")].sort_values("seed")["accuracy"].to_numpy()
    assert f"{100 * kd.mean():.1f} % ± {100 * kd.std(ddof=1):.1f} over 3 seeds" in page
    assert f"{100 * scratch.mean():.1f} % ± {100 * scratch.std(ddof=1):.1f} over 3 seeds" in page
    d = kd - scratch
    assert f"{100 * d.mean():+.1f} ± {100 * d.std(ddof=1):.1f} pts vs scratch over 3 seeds" in page
    assert page.count("over 3 seeds") >= 3 and analysis.seeds_summary(frame)[0] in page
    assert np.isfinite(d).all()


# ------------------------------------------------------------------------------- runs actions


def test_cancel_retry_and_delete_from_the_runs_page(empty):
    from distill_core.jobs import Store, queue

    store = Store(empty)
    _, ids = queue.submit(store, TINY)
    at = open_page("pages/runs.py")
    at.multiselect(key="runs_selected").set_value([ids[2]]).run()
    button(at, "act_cancel").click().run()
    assert store.get_run(ids[2])["status"] == "cancelled"
    at.multiselect(key="runs_selected").set_value([ids[2]]).run()
    button(at, "act_retry").click().run()
    assert store.get_run(ids[2])["status"] == "queued"
    at.multiselect(key="runs_selected").set_value([ids[2]]).run()
    button(at, "act_delete").click().run()
    assert not at.exception
    assert store.get_run(ids[2]) is None
    assert at.multiselect(key="runs_selected").value == []
    # retrying a queued run is refused with the store's message
    at.multiselect(key="runs_selected").set_value([ids[1]]).run()
    button(at, "act_retry").click().run()
    assert any("only failed, cancelled or interrupted runs can be retried" in e for e in errors(at))


# ------------------------------------------------------------------------------- settings


def test_settings_validate_and_persist(empty):
    at = open_page("pages/settings.py")
    at.text_input(key="set__country").set_value("XX").run()
    assert any("3-letter ISO code" in e for e in errors(at))
    assert button(at, "set_save").disabled
    at.text_input(key="set__country").set_value("fra").run()
    at.number_input(key="set__workers").set_value(1).run()
    button(at, "set_save").click().run()
    saved = json.loads((empty / "settings.json").read_text())
    assert saved["country"] == "FRA" and saved["workers"] == 1 and saved["autostart"] is False


def test_settings_choose_the_ray_executor_and_say_when_ray_is_missing(empty, monkeypatch):
    at = open_page("pages/settings.py")
    at.selectbox(key="set__executor").set_value("ray").run()
    at.text_input(key="set__ray_address").set_value("http://my-cluster").run()
    assert any("ray://host:port" in e for e in errors(at)) and button(at, "set_save").disabled
    at.text_input(key="set__ray_address").set_value("ray://10.0.0.5:10001").run()
    assert button(at, "set_ray_check") is not None and not errors(at)
    button(at, "set_save").click().run()
    saved = json.loads((empty / "settings.json").read_text())
    assert saved["executor"] == "ray" and saved["ray_address"] == "ray://10.0.0.5:10001" and saved["ray_retries"] == 1

    # The connection check (run for real on a cluster in test_ray.py) as the page shows it.
    from distill_core.jobs import ray_executor

    asked = []
    nodes = [{"node": "10.0.0.5 (1a2b3c4d)", "alive": True, "cpus": 8.0, "gpus": 1.0}]

    def check(address, num_cpus=None):
        asked.append(address)
        if address.endswith(":10002"):
            raise ray_executor.ExecutorError("no Ray cluster answers at ray://10.0.0.5:10002")
        return {"ray": "2.x", "alive": 1, "cpus": 8.0, "gpus": 1.0, "nodes": nodes}

    monkeypatch.setattr(ray_executor, "check_connection", check)
    button(at, "set_ray_check").click().run()
    assert asked == ["ray://10.0.0.5:10001"] and any("1 live node(s), 8 CPU(s), 1 GPU(s)" in str(x.value) for x in at.success)
    assert list(at.dataframe[0].value["node"]) == ["10.0.0.5 (1a2b3c4d)"]
    at.text_input(key="set__ray_address").set_value("ray://10.0.0.5:10002").run()
    button(at, "set_ray_check").click().run()
    assert any("no Ray cluster answers" in e for e in errors(at))

    monkeypatch.setitem(sys.modules, "ray", None)  # where Ray is not installed
    at = open_page("pages/settings.py")
    assert any("requirements-ray.txt" in str(w.value) for w in at.warning)  # the saved choice is refused, saying why
    at.selectbox(key="set__executor").set_value("ray").run()
    assert any("not installed here: pip install -r requirements-ray.txt" in e for e in errors(at))
    assert button(at, "set_save").disabled and button(at, "set_ray_check") is None


def test_switching_the_home_folder(empty, tmp_path):
    other = tmp_path / "other-home"
    at = open_page("pages/settings.py")
    at.text_input(key="set_home").set_value(str(other))
    button(at, "set_home_go").click().run()
    assert other.is_dir() and f"now uses {other}" in texts(at)
    assert f"`{other}`" in texts(at) or str(other) in texts(at)


# ------------------------------------------------------------------------------- library helpers of the pages


def test_progress_helpers():
    from distill_core.progress import curves_from_events, progress_fraction, progress_text

    assert progress_fraction("done", None) == 1.0
    assert progress_fraction("queued", None) == 0.0
    assert progress_fraction("running", {"step": 5, "steps": 20}) == 0.25
    assert progress_fraction("running", {"step": 20, "steps": 20}) < 1.0  # measuring after training
    measuring = {"phase": "measuring", "teacher_cached": True}  # trained; the bar does not fall back to 0
    assert progress_fraction("running", measuring) == 0.99 and progress_text("running", measuring) == "measuring"
    curves = curves_from_events([{"phase": "start"}, {"phase": "student", "step": 3, "losses": {"loss": 2.0}},
                                 {"phase": "student", "step": 6, "epoch": 1, "losses": {"loss": 1.0},
                                  "val_accuracy": 0.5, "epoch_end": True}])
    assert curves["student"]["loss"] == [2.0, 1.0] and curves["student"]["val_accuracy"] == [0.5]


def test_model_summary_and_time_estimate():
    from distill_core.config import ExperimentSpec, expand
    from distill_core.estimates import calibration, compare_to_teacher, estimate_runs, model_summary, spec_key

    t = model_summary("cnn-small", (1, 8, 8), 10)
    s = model_summary({"arch": "mlp", "hidden": [16]}, (1, 8, 8), 10)
    assert s["params"] == 64 * 16 + 16 + 16 * 10 + 10 and s["flops"] == 2 * (64 * 16 + 16 * 10)
    ratio = compare_to_teacher(s, t)
    assert ratio["compression"] == pytest.approx(t["params"] / s["params"])
    configs = expand(ExperimentSpec(dataset="digits", teacher="cnn-small", students=[{"arch": "mlp", "hidden": [16]}],
                                    seeds=[0, 1], train={"epochs": 5}))
    summaries = {spec_key(m): model_summary(m, (1, 8, 8), 10) for m in ("cnn-small", {"arch": "mlp", "hidden": [16]})}
    est = estimate_runs(configs, 1169, summaries, workers=2)
    assert len(est["runs"]) == 5 and est["serial_seconds"] > est["wall_seconds"] > 0
    skipped = estimate_runs(configs, 1169, summaries, skip={est["runs"][0]["hash"]})
    assert skipped["runs"][0]["seconds"] == 0 and skipped["serial_seconds"] < est["serial_seconds"]
    assert calibration([]) == (1.0, 0)
    assert calibration([(1.0, 2.0), (2.0, 4.0), (1.0, float("nan"))]) == (2.0, 2)


def test_run_detail_names_the_run_whose_shared_figures_it_carries_and_makes_pt2_on_demand(lab_home):
    store = lab_home["store"]
    done = [store.get_run(r["id"]) for r in store.list_runs(status="done", role="student")]
    carrier = next(r for r in done if r["result"]["measure"]["shared"].get("measured_by"))
    measurer = next(r for r in done if r["hash"] == carrier["result"]["measure"]["shared"]["measured_by"][0])
    at = open_page("pages/run_detail.py", {"run": str(carrier["id"])})
    assert not errors(at), errors(at)
    page = texts(at)
    assert f"they were measured once, by run #{measurer['id']}" in page
    energy = next(d.value for d in at.dataframe if "this run" in d.value.columns)
    assert f"shared by run #{measurer['id']}" in list(energy["this run"])  # its inference energy, not spent again
    assert "Download torch.export program (.pt2)" not in [b.label for b in at.get("download_button")]
    button(at, "make_pt2").click().run()
    assert not errors(at), errors(at)
    assert "Download torch.export program (.pt2)" in [b.label for b in at.get("download_button")]
    assert store.get_run(carrier["id"])["result"]["measure"]["pt2"]["ok"]


def test_the_background_warm_up_waits_for_the_first_page(monkeypatch):
    """ui/warmup.py's background work starts once a page is drawn (app.py calls page_drawn after
    the page's script), not beside the first page, or after FIRST_VISIT_WAIT with no visit."""
    import threading

    from ui import warmup

    for drawn, wait in ((True, 30.0), (False, 0.2)):
        ran = threading.Event()
        monkeypatch.setattr(warmup, "_first_page", threading.Event())
        monkeypatch.setattr(warmup, "FIRST_VISIT_WAIT", wait)
        monkeypatch.setattr(warmup, "_steps", lambda: {"step": ran.set})
        worker = threading.Thread(target=warmup._run, daemon=True)
        worker.start()
        if drawn:
            assert not ran.wait(0.3)  # no page yet: nothing warms beside it
            warmup.page_drawn()
        assert ran.wait(5)
        worker.join(5)


def test_app_tells_the_warm_up_when_its_page_is_drawn(empty, monkeypatch):
    import threading

    from ui import warmup

    monkeypatch.setattr(warmup, "_first_page", threading.Event())
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and warmup._first_page.is_set()
