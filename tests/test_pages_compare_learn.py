"""Compare and Learn pages (AppTest) on a store of real tiny runs, built through the jobs API.

The store holds a digits temperature sweep (2 temperatures x 2 seeds, with scratch baselines),
QAD from one of its KD students, Hinton's omitted-class experiment (class 3 left out of the
students' transfer set) and a moons decision-boundary playground. Runs execute in this process (claim + execute_run), one thread.
"""
import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the pages import `ui`
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from distill_core import analysis as A  # noqa: E402
from distill_core import saved_runs, teaching  # noqa: E402
from distill_core.run_config import RunConfig  # noqa: E402

TEACHER = {"arch": "mlp", "hidden": [64]}
OMIT = 3


@pytest.fixture(scope="module")
def store_home(tmp_path_factory):
    from distill_core.jobs import Store, queue
    from distill_core.jobs.queue import claim
    from distill_core.jobs.worker import execute_run

    home = tmp_path_factory.mktemp("lab")
    (home / "settings.json").write_text(json.dumps({"autostart": False}))  # pages must not start worker pools here
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISTILL_HOME", str(home))
        mp.setenv("DISTILL_MEASURE", json.dumps({"exporter": "torchscript"}))  # all measured; the fast exporter
        mp.chdir(home)  # CodeCarbon writes nothing outside the run folders, but keep the cwd clean
        store = Store(home)
        queue.submit(store, {"name": "sweep", "dataset": "digits", "teacher": TEACHER, "students": [{"arch": "mlp", "hidden": [16]}],
                      "methods": ["kd"], "temperatures": [2.0, 8.0], "seeds": [0, 1], "train": {"epochs": 3}})
        queue.submit(store, {"name": "int8", "dataset": "digits", "teacher": TEACHER, "students": [{"arch": "mlp", "hidden": [16]}],
                      "methods": [{"name": "qad", "epochs": 2}], "temperatures": [2.0], "seeds": [0], "train": {"epochs": 3}})
        queue.submit(store, {"name": "omitted-class", "dataset": "digits", "teacher": TEACHER, "students": ["logistic"],
                      "methods": ["kd"], "temperatures": [8.0], "seeds": [0], "transfer": {"omit_class": OMIT},
                      "train": {"epochs": 3}})
        queue.submit(store, {"name": "playground", "dataset": "moons", "dataset_knobs": {"n_samples": 300, "noise": 0.25},
                      "teacher": {"arch": "mlp", "hidden": [32, 32]}, "students": [{"arch": "mlp", "hidden": [4]}],
                      "methods": ["kd"], "temperatures": [4.0], "seeds": [0], "train": {"epochs": 20, "lr": 0.01}})
        while (run := claim(store, 1)) is not None:
            assert execute_run(store, run, threads=1, log=None) == "done", store.get_run(run["id"])["error"]
    return home


@pytest.fixture
def lab(store_home, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(store_home))
    return store_home


def app(page: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / page), default_timeout=120)


def arr(v):
    """A Plotly trace array from the JSON spec (plain list, or base64 typed array)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v if v is not None else [])


def figures(at) -> dict[str, dict]:
    """Plotly figures by the key they were drawn with."""
    out = {}
    for el in at.get("plotly_chart"):
        out[el.proto.id] = json.loads(el.proto.spec)  # "$$ID-<hash>-<key>"
    return out


def figure(at, key: str) -> dict:
    found = [f for k, f in figures(at).items() if k.endswith(f"-{key}")]
    assert found, f"no figure {key!r} among {list(figures(at))}"
    return found[0]


def no_exceptions(at):
    assert not at.exception, [e.message for e in at.exception]


def digits_frame(home):
    from distill_core.jobs import Store

    f = A.add_training_energy(Store(home).results_frame())
    return f[f["dataset"] == "digits"]


# -- Compare -------------------------------------------------------------------------------------------


def check_tradeoffs(at, expected, average: bool):
    """Every trade-off figure: one point per configuration (or run), the frontier as computed."""
    costs = A.cost_columns(expected)
    drawn = 0
    for key, c in costs.items():
        if c["column"] is None:
            continue
        fig = figure(at, f"tradeoff-{key}")
        col, acc = c["column"], c["accuracy"]  # an int8 cost is drawn against the deployed int8 accuracy
        pts = A.aggregate_seeds(expected, list(dict.fromkeys([acc, col]))) if average else expected
        xcol, ycol = (f"{col}_mean", f"{acc}_mean") if average else (col, acc)
        pts = pts[pts[xcol].notna() & pts[ycol].notna()]
        traces = [t for t in fig["data"] if t.get("name") != "Pareto frontier"]
        xs = np.concatenate([arr(t["x"]) for t in traces])
        ys = np.concatenate([arr(t["y"]) for t in traces])
        assert len(xs) == len(pts), key
        # Same points, as (x, y) pairs in one order; pytest.approx refuses nested sequences.
        np.testing.assert_allclose(np.array(sorted(zip(xs, ys))),
                                   np.array(sorted(zip(pts[xcol], pts[ycol]))), rtol=1e-6, atol=1e-12)
        front = [t for t in fig["data"] if t.get("name") == "Pareto frontier"][0]
        want = pts[A.pareto_mask(pts[xcol], pts[ycol])].sort_values([xcol, ycol], ascending=[True, False])
        assert arr(front["x"]) == pytest.approx(want[xcol].to_numpy())
        assert arr(front["y"]) == pytest.approx(want[ycol].to_numpy())
        groups = {t["legendgroup"].split(",")[0] for t in traces}
        assert {"teacher", "scratch", "kd"} <= groups  # landmarks and the distilled students
        drawn += 1
    assert drawn >= 6  # params, bytes, FLOPs, latencies, energy: measured by every real run


def test_compare_tradeoffs_averaged_and_per_run(lab):
    expected = digits_frame(lab)
    assert len(expected) == 10  # teacher, 4 kd + 2 scratch (sweep), QAD from one kd, kd + scratch (omitted class)
    at = app("compare.py").run()
    no_exceptions(at)
    check_tradeoffs(at, expected, average=True)
    # error bars: the spread over the two seeds of each sweep configuration
    fig = figure(at, "tradeoff-params")
    kd = [t for t in fig["data"] if t.get("legendgroup", "").startswith("kd")]
    assert any(np.nanmax(arr(t["error_y"]["array"])) > 0 for t in kd)
    at.toggle(key="cmp-average").set_value(False).run()
    no_exceptions(at)
    check_tradeoffs(at, expected, average=False)


def test_compare_sweep_gap_energy_budget_table(lab):
    expected = digits_frame(lab)
    at = app("compare.py").run()
    sweep = figure(at, "temperature-sweep")
    lines = [t for t in sweep["data"] if t["name"].startswith("mlp(hidden=[16]") and t["name"].endswith("· kd")]
    assert len(lines) == 2  # accuracy and agreement
    assert arr(lines[0]["x"]).tolist() == [2.0, 8.0]
    kd = expected[(expected["method"] == "kd") & (expected["model"] == "mlp(hidden=[16], dropout=0.0)")]
    assert arr(lines[0]["y"]) == pytest.approx(kd.groupby("temperature")["accuracy"].mean().to_numpy())

    gaps = A.gap_closed_table(expected)
    bars = figure(at, "gap-closed")
    xs = np.concatenate([arr(t["x"]) for t in bars["data"] if t["type"] == "bar"])  # horizontal bars
    assert sorted(xs) == pytest.approx(sorted(gaps["gap_mean"].dropna()))
    for _, r in gaps[gaps["gap_mean"].isna()].iterrows():  # undefined: said so, not drawn
        assert any(r["reason"] in w.value for w in at.warning)

    energy = figure(at, "energy-phases")
    assert {t["name"].split(",")[0] for t in energy["data"]} >= {"teacher training", "student training", "inference"}
    assert any("estimated" in c.value or "measured" in c.value for c in at.caption)
    labels = [m.label for m in at.metric]
    assert any(lbl.startswith("CO2eq in") for lbl in labels)

    from distill_core.measure.budgets import load_profiles

    profiles = load_profiles(lab)
    best = A.best_that_fits(expected, profiles[next(iter(profiles))])  # the page's default profile
    if best is not None:
        assert any(best["label"] in s.value for s in at.success)
    else:
        assert any("No selected run fits" in w.value for w in at.warning)
    assert at.get("download_button")  # CSV of the selected runs and each figure as HTML


def test_compare_filters(lab):
    at = app("compare.py").run()
    at.multiselect(key="cmp-method-digits").set_value(["scratch"]).run()
    no_exceptions(at)
    fig = figure(at, "tradeoff-params")
    groups = {t["legendgroup"].split(",")[0] for t in fig["data"] if t.get("name") != "Pareto frontier"}
    assert groups == {"teacher", "scratch"}
    at.selectbox(key="cmp-dataset").set_value("moons").run()
    no_exceptions(at)
    fig = figure(at, "tradeoff-params")
    n = sum(len(arr(t["x"])) for t in fig["data"] if t.get("name") != "Pareto frontier")
    assert n == 3  # teacher, scratch and distilled student of the playground


def test_compare_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(tmp_path))
    at = app("compare.py").run()
    no_exceptions(at)
    assert any("No finished runs yet" in i.value for i in at.info)


# -- Learn ---------------------------------------------------------------------------------------------


def test_learn_widgets_on_real_runs(lab):
    at = app("learn.py").run()
    no_exceptions(at)
    # the digits teacher comes first (toy sets last); its cached test logits drive the first tabs
    from distill_core.jobs import Store
    from distill_core.teachers import TeacherCache, reusable

    teacher = [t for t in reusable(lab) if t["dataset"] == "digits"][0]
    logits = TeacherCache(lab).logits(teacher["hash"])["test"].numpy()
    at.number_input(key="learn-sample").set_value(5).run()
    at.slider(key="learn-T").set_value(8.0).run()
    no_exceptions(at)
    soft = figure(at, "learn-soft")
    bars = arr(soft["data"][0]["y"])
    assert bars == pytest.approx(teaching.soften(logits[5], 8.0).numpy(), abs=1e-6)
    assert f"entropy {teaching.entropy(teaching.soften(logits[5], 8.0)).item():.2f} bits" in soft["layout"]["title"]["text"]

    dark = figure(at, "learn-dark")
    z = np.array(arr(dark["data"][0]["z"]), dtype=float)
    assert z.shape == (10, 10)
    assert np.isnan(np.diag(z)).all()  # the diagonal is hidden by default
    from distill_core.data.cache import load_data

    y = load_data(teacher["config"]["dataset"]).y_test.numpy()
    want = teaching.dark_knowledge(logits, y, 4.0, 10)
    off = ~np.eye(10, dtype=bool)
    assert z[off] == pytest.approx(want[off], abs=1e-6)

    # KD loss anatomy: the page's numbers are kd_loss on the first batch of the chosen student
    at.select_slider(key="learn-loss-batch").set_value(64).run()
    pick = at.selectbox(key="learn-loss-student").value
    run = Store(lab).get_run(pick)
    config = RunConfig.from_dict(run["config"])
    s_logits, yy = saved_runs.test_logits(config, saved_runs.run_weights(lab, config), 64)
    parts = teaching.kd_anatomy(s_logits, logits[:64], yy, 4.0, 0.9)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["soft = T²·KL"] == f"{parts['soft']:.4f}"
    assert metrics["hard = CE"] == f"{parts['hard']:.4f}"
    assert metrics["α·soft + (1−α)·hard"] == f"{parts['total']:.4f}"

    # decision boundaries: teacher, scratch and distilled student side by side
    b = figure(at, "learn-boundaries")
    heat = [t for t in b["data"] if t["type"] == "heatmap"]
    assert len(heat) == 3
    titles = [a["text"] for a in b["layout"]["annotations"]]
    assert "teacher" in titles[0] and "scratch" in titles[1] and "distilled at T = 4" in titles[2]

    # omitted class: a bias on class 3 brings it back
    omitted = figure(at, "learn-omitted")
    curve = [t for t in omitted["data"] if t["name"] == f"distilled: class {OMIT}"][0]
    assert arr(curve["y"])[-1] > arr(curve["y"])[0]
    before = {m.label: m.value for m in at.metric}[f"distilled: accuracy on class {OMIT}"]
    at.slider(key="om-bias").set_value(10.0).run()
    after = {m.label: m.value for m in at.metric}[f"distilled: accuracy on class {OMIT}"]
    assert float(after.rstrip("%")) > float(before.rstrip("%"))

    assert at.dataframe  # paper presets: published beside measured


def test_learn_int8_tab_shows_the_four_variants_and_the_grid(lab):
    from distill_core.jobs import Store

    at = app("learn.py").run()
    no_exceptions(at)
    qad = digits_frame(lab).query("method == 'qad'")
    assert len(qad) == 1
    result = Store(lab).get_run(int(qad["run_id"].iloc[0]))["result"]
    table = teaching.int8_variants(result)
    assert table["variant"].tolist() == ["fp32", "dynamic", "static", "qad"] and table["accuracy"].notna().all()
    assert table["bytes"].iloc[1:].lt(table["bytes"].iloc[0]).all()  # every int8 file is smaller than fp32
    fig = figure(at, "int8-variants")
    assert arr(fig["data"][0]["y"]) == pytest.approx(table["accuracy"].to_numpy())
    assert arr(fig["data"][1]["y"]) == pytest.approx(table["bytes"].to_numpy())
    grid = figure(at, "int8-grid")
    ticks = [t for t in grid["data"] if t["name"] == "int8 grid"][0]
    assert len(arr(ticks["x"])) == 25  # zoomed on ±12 steps of the coarsest channel
    start = RunConfig.from_dict(Store(lab).get_run(int(qad["run_id"].iloc[0]))["config"]).start
    layer = saved_runs.quantised_layers(start, saved_runs.run_weights(lab, start))[at.selectbox(key="int8-layer").value]
    step = teaching.int8_grid(layer)["step"].max()
    assert np.diff(arr(ticks["x"])) == pytest.approx(step)


def test_omitted_class_left_out_of_the_students_training_only(lab):
    from distill_core.jobs import Store

    runs = [Store(lab).get_run(r["id"]) for r in Store(lab).list_runs()]
    omitted = [r for r in runs if (r["config"].get("transfer") or {}).get("omit_class") == OMIT]
    assert {r["config"]["method"]["name"] for r in omitted} == {"kd", "scratch"}
    teacher = omitted[0]["config"]["teacher"]
    assert "transfer" not in teacher  # the teacher saw every class
    scratch = [r for r in omitted if r["config"]["method"]["name"] == "scratch"][0]
    # never trained on a 3, the scratch student never predicts one; the teacher does
    assert scratch["result"]["metrics"]["per_class_accuracy"][OMIT] == 0.0
    assert scratch["result"]["teacher_accuracy"] > 0
    normal = [r for r in runs if r["role"] == "student" and "transfer" not in r["config"]][0]
    assert scratch["result"]["metrics"]["n_test"] == normal["result"]["metrics"]["n_test"]  # the test set keeps it
    assert sum(scratch["result"]["metrics"]["confusion"][OMIT]) > 0


def test_learn_playground_submits_a_background_job(lab, monkeypatch):
    from distill_core.jobs import Store, queue

    store = Store(lab)
    before = {e["id"] for e in store.experiments()}
    at = app("learn.py").run()
    at.selectbox(key="pg-ds").set_value("circles")
    [b for b in at.button if b.label == "Train in the background"][0].click().run()
    no_exceptions(at)
    new = [e for e in store.experiments() if e["id"] not in before]
    assert len(new) == 1 and new[0]["name"] == "playground" and new[0]["spec"]["dataset"] == "circles"
    runs = store.list_runs(experiment=new[0]["id"])
    assert len(runs) == 3 and {r["status"] for r in runs} == {"queued"}  # queued, not trained by the page
    for r in runs:
        queue.delete(store, r["id"])


def test_learn_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(tmp_path))
    at = app("learn.py").run()
    no_exceptions(at)
    assert any("No trained teacher" in i.value for i in at.info)
    assert any(b.label == "Train a quick teacher" for b in at.button)
    assert any("No QAD run in the store yet" in i.value for i in at.info)  # the int8 tab offers one


def test_transfer_config_students_only_and_validated():
    from distill_core.config import ExperimentSpec, expand
    from distill_core.errors import ConfigError

    base = {"dataset": "digits", "teacher": TEACHER, "students": ["logistic"], "methods": ["kd"], "train": {"epochs": 1}}
    plain = expand(ExperimentSpec.from_dict(base))
    runs = expand(ExperimentSpec.from_dict({**base, "transfer": {"omit_class": 3}}))
    assert [r.role for r in runs] == ["teacher", "student", "student"]
    assert "transfer" not in runs[0].to_dict() and all(r.transfer == {"omit_class": 3} for r in runs[1:])
    assert runs[0].hash == plain[0].hash  # the same teacher is reused
    assert {r.hash for r in runs[1:]}.isdisjoint(r.hash for r in plain[1:])
    assert all("transfer" not in r.to_dict() for r in plain)  # experiments without it keep their hashes
    for bad in ({"omit_class": 10}, {"omit_class": -1}, {"omit_class": "3"}, {"drop": 3}, [3]):
        with pytest.raises(ConfigError, match="transfer"):
            expand(ExperimentSpec.from_dict({**base, "transfer": bad}))
