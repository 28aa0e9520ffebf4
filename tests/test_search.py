"""Budget-driven search (distill_core/search): the space and its bad inputs, the pruning rule on
synthetic curves, and one real search on the moons toy set (8 trials, 2 workers) whose driver
is killed with its workers, resumed, stopped and resumed again. On it: a non-empty front whose members fit the budget
by their own measurement, a candidate over the budget that never trained, no finished trial
repeated, scratch twins, the CLI's report and the Search page (AppTest).

Budget: about 45 s on two shared cores, most of it the real search (two pool starts included).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from distill_core.constants import DONE, SCRATCH, STUDENT
from distill_core.data import load_dataset
from distill_core.errors import ConfigError
from distill_core.jobs import LocalExecutor, Store, queue
from distill_core.measure import check_budgets
from distill_core.models import build_model, normalise_spec
from distill_core.search import study as studies
from distill_core.search.driver import Driver, start_detached
from distill_core.search.pruning import PruningRule, hopeless
from distill_core.search.report import report, seed_delta
from distill_core.search.space import build_space
from distill_core.search.spec import SearchSpec, make_plan

APP = str(Path(__file__).resolve().parents[1] / "app.py")
BUDGET = {"name": "tiny", "size_of": "fp32", "max_bytes": 4096}  # fp32 weights in 4 KB: mlp 64-64 does not fit
MOONS = {"dataset": "moons", "teacher": {"arch": "mlp", "hidden": [32]}, "teacher_train": {"epochs": 40},
         "train": {"epochs": 5, "batch_size": 64},
         "space": {"students": {"mlp": {"hidden": {"depth": [1, 2], "width": [2, 64]}}}, "methods": ["kd"]},
         "budget": BUDGET, "objectives": ["params"], "trials": 8, "confirm_seeds": 2}
OVER = {"mlp.hidden.depth": 2, "mlp.hidden.0": 64, "mlp.hidden.1": 64, "temperature": 4.0, "alpha": 0.9, "lr": 0.003}
TrialState = optuna.trial.TrialState


def spec(**changes) -> SearchSpec:
    return SearchSpec.from_dict({**json.loads(json.dumps(MOONS)), **changes})


# -- the space, and what a search refuses -----------------------------------------------------------


def test_space_comes_from_the_registries_and_the_users_narrowing():
    plan = make_plan(spec(space={}))
    archs = [f.arch for f in plan.space.families]
    assert archs == ["linear", "mlp"]  # the convolutional families take no 2-D points
    assert any("cnn takes signal and image inputs" in n for n in plan.space.notes)
    given = plan.space.as_given()
    assert given["students"]["mlp"]["hidden"] == {"depth": [1, 3], "width": [64, 1024]}  # from hidden=[256, 256]
    assert "at" not in given["methods"] and "takd" not in given["methods"]  # no feature maps; an assistant per run
    narrow = make_plan(spec()).space
    assert narrow.as_given()["students"] == {"mlp": {"hidden": {"depth": [1, 2], "width": [2, 64]}, "dropout": 0.0}}
    assert [c.model["hidden"] for c in narrow.smallest()] == [[2]]


def test_the_space_keeps_to_what_each_architecture_builds():
    """A rule an architecture's factory checks (the CIFAR ResNet's depth is 6n + 2, its widths
    are four numbers) narrows the range the registry's defaults gave."""
    info = load_dataset("digits").info
    space = build_space({"students": {"resnet-cifar": None}, "methods": ["kd"]}, info, normalise_spec("cnn-small"), 1e-3)
    knobs = space.families[0].knobs
    assert knobs["depth"].kind == "choice" and all((d - 2) % 6 == 0 for d in knobs["depth"].choices)
    assert knobs["widths"].depth.value == 4
    (smallest,) = space.smallest()
    build_model(smallest.model, info.input_shape, info.num_classes)


@pytest.mark.parametrize("teacher", [{"teacher": "random-forest"}, {"teachers": ["random-forest", "mlp-small"]}])
def test_a_teacher_without_a_network_gets_only_the_logit_methods(teacher):
    """A scikit-learn teacher, or an ensemble, gives only its outputs: the feature methods that fit
    an MLP teacher (fitnets, rkd, pkt) leave the space, and the notes say why."""
    with_network = make_plan(spec(teacher="mlp-small", space={"students": {"mlp": None}})).space
    assert "fitnets" in with_network.families[0].method.choices
    plan = make_plan(spec(**teacher, space={"students": {"mlp": None}}))
    assert set(plan.space.families[0].method.choices) == {"kd", "logit-std", "dkd", "dist"}
    assert any("gives only its outputs" in n for n in plan.space.notes)
    assert plan.experiment(plan.space.smallest()[0]).teachers == teacher.get("teachers", [])


@pytest.mark.parametrize("changes, message", [
    ({"space": {"students": {}}}, "students is empty"),
    ({"space": {"students": {"mlp": {"hidden": {"width": [64, 8]}}}}}, "the range [64, 8] is empty"),
    ({"space": {"students": {"cnn": {}}}}, "cnn takes signal and image inputs"),
    ({"space": {"methods": []}}, "methods is empty"),
    ({"space": {"methods": ["scratch"]}}, "does not learn from the teacher"),
    ({"space": {"temperature": [0, 4]}}, "temperature must be >= 0.1"),
    ({"space": {"students": {"mlp": {"depth": 3}}}}, "mlp has no knob depth"),
    ({"objectives": []}, "choose one or two costs"),
    ({"objectives": ["params", "flops", "int8_bytes"]}, "at most two costs"),
    ({"objectives": ["train_kwh"]}, "depends on training"),
    ({"time_limit": 0}, "0 minutes leaves no time"),
    ({"space": {"students": {"random-forest": None}}}, "random-forest is a scikit-learn model: it can teach"),
    ({"teacher": {"onnx": "missing.onnx"}}, "teacher ONNX model missing.onnx: no such file"),
    ({"budget": "watch"}, "no profile 'watch'"),
    ({"name": "no spaces"}, "not a usable search name"),
])
def test_bad_searches_say_what_to_change(changes, message):
    with pytest.raises(ConfigError) as exc:
        make_plan(spec(**changes))
    assert message in str(exc.value)


def test_a_budget_nothing_meets_is_refused_before_anything_trains(home):
    name = studies.create(home, spec(budget={"size_of": "fp32", "max_bytes": 16}, name="impossible"))
    with pytest.raises(ConfigError) as exc:
        Driver(home, name, log=lambda line: None).run()
    assert "Nothing in this space fits" in str(exc.value) and "the smallest mlp" in str(exc.value)
    assert Store(home).list_runs() == []  # not even the teacher was queued
    assert studies.load(home, name).user_attrs["state"] == studies.FAILED


# -- pruning --------------------------------------------------------------------------------------------


def test_pruning_stops_a_clearly_worse_trial_and_spares_a_cheap_one():
    good = [0.60, 0.80, 0.90, 0.93, 0.95]
    finished = [([100.0], good), ([120.0], [0.62, 0.78, 0.91, 0.94, 0.96])]
    rule = PruningRule.for_epochs(5)
    assert rule.warmup == 2
    assert hopeless([0.30], [150.0], finished, rule) is None  # before the warm-up
    why = hopeless([0.30, 0.35], [150.0], finished, rule)  # costlier and far behind at epoch 2
    assert why and "trails 0.790" in why
    assert hopeless([0.30, 0.35], [50.0], finished, rule) is None  # cheaper than both: it may be a front member
    assert hopeless([0.58, 0.77], [150.0], finished, rule) is None  # within the margin
    assert hopeless([0.30, 0.35], [110.0], finished, rule) is None  # only one peer costs no more
    assert hopeless([0.3] * 5, [150.0], finished, rule) is None  # at its last epoch stopping saves nothing


def test_the_driver_prunes_from_the_runs_progress_events(home):
    """Two finished trials (added to the study) and one running trial whose epochs report a
    validation accuracy far below theirs: the driver cancels its run and tells Optuna it was pruned."""
    name = studies.create(home, spec(name="prune", sampler="random"))
    study = studies.load(home, name)
    for curve in ([0.8, 0.9, 0.95, 0.96, 0.97], [0.82, 0.91, 0.94, 0.96, 0.97]):
        study.add_trial(optuna.trial.create_trial(values=[curve[-1], 0.0], user_attrs={"curve": curve}))
    study.enqueue_trial({**OVER, "mlp.hidden.depth": 1, "mlp.hidden.0": 8})  # within the budget
    driver = Driver(home, name, log=lambda line: None)
    driver.prepare()
    driver.ask()
    (number, flight), = driver.flights.items()
    store = Store(home)
    teacher = store.get_run(flight.run_id)["depends_on"]
    store.finish(teacher, {"note": "stands in for a trained teacher"})
    assert queue.claim(store, 1)["id"] == flight.run_id
    store.add_events(flight.run_id, [{"phase": "start"}] + [
        {"phase": STUDENT, "epoch": e, "epochs": 5, "val_accuracy": 0.3, "epoch_end": True} for e in (1, 2)])
    driver.poll()
    assert not driver.flights
    trial = studies.load(home, name).trials[number]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["outcome"] == "pruned"
    assert "trails" in trial.user_attrs["reason"] and trial.user_attrs["curve"] == [0.3, 0.3]
    assert store.run_status(flight.run_id) == ("running", True)  # its worker is asked to stop


def test_seed_delta():
    assert seed_delta({0: 0.9, 1: 0.8}, {0: 0.85, 1: 0.8, 2: 0.7}) == pytest.approx((0.025, 0.0354, 2), abs=1e-4)
    assert seed_delta({0: 0.9}, {1: 0.8})[2] == 0


# -- one real search, stopped and resumed -------------------------------------------------------------


def wait_for_complete(home, name: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(t.state == TrialState.COMPLETE for t in studies.load(home, name).trials) < n:
        assert time.monotonic() < deadline, f"fewer than {n} trials finished in {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The moons search with two workers, a candidate over the budget asked first (Optuna's
    enqueue_trial), in three sessions: a background driver is killed once three trials have
    finished and its worker pool shuts down (a crash and a restart: the runs it was training are
    left interrupted); a new pool and a driver resume it and are stopped (Stop) after five; a
    last driver resumes it to the end."""
    home = tmp_path_factory.mktemp("search")
    (home / "settings.json").write_text(json.dumps({"autostart": False}))
    mp = pytest.MonkeyPatch()
    mp.setenv("DISTILL_MEASURE", "quick")
    quiet = {"log": lambda line: None, "poll": 0.2}
    try:
        name = studies.create(home, spec(name="moons"))
        studies.load(home, name).enqueue_trial(OVER)
        with LocalExecutor(home, workers=2, threads=1, quiet=True, log=None):
            pid = start_detached(home, name)
            wait_for_complete(home, name, 3)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        crashed = studies.load(home, name)
        before = {t.number: (t.values, t.user_attrs["run_id"]) for t in crashed.trials if t.state == TrialState.COMPLETE}
        left_running = [t.number for t in crashed.trials if t.state == TrialState.RUNNING]
        crash_time = time.time()
        with LocalExecutor(home, workers=2, threads=1, quiet=True, log=None):
            second = Driver(home, name, **quiet)
            thread = threading.Thread(target=second.run)
            thread.start()
            wait_for_complete(home, name, 5)
            second.stop.set()
            thread.join(60)
            stopped = studies.load(home, name).user_attrs["state"]
            final = Driver(home, name, **quiet).run()
    finally:
        mp.undo()
    return {"home": home, "name": name, "before": before, "left_running": left_running, "stopped": stopped,
            "final": final, "crash_time": crash_time}


def test_search_finds_a_front_that_fits_the_budget(searched):
    r = report(searched["home"], searched["name"])
    assert searched["final"] == studies.FINISHED and r.state == studies.FINISHED, (r.state, r.message)
    assert len(r.front) >= 1, r.trials
    store = Store(searched["home"])
    for _, member in r.front.iterrows():
        result = store.get_run(int(member["run_id"]))["result"]
        fits = check_budgets(result["measure"], {"tiny": BUDGET | {"latency_of": "onnx", "max_latency_ms": 0.0}})[0]
        assert fits["fits"] is True, fits  # by the trained model's own measurement
        assert member["val_accuracy"] == pytest.approx(
            result["train"]["history"][result["train"]["kept_epoch"] - 1]["val_accuracy"])
    assert r.best is not None and r.best["on_front"]
    assert r.twin is not None and r.twin.n == 2 and set(r.twin.scratch) == {0, 1}, r.twin  # the best, on two seeds
    assert set(r.twins) == {int(n) for n in r.front["number"]}, (r.twins, r.front)  # every member got its scratch twin


def test_a_candidate_over_the_budget_is_never_trained(searched):
    trials = studies.load(searched["home"], searched["name"]).trials
    over = trials[0]  # the enqueued one: mlp 64-64, 4.5 K parameters in fp32 > 4 KB
    assert over.state == TrialState.PRUNED and over.user_attrs["outcome"] == "rejected"
    assert "before training" in over.user_attrs["reason"] and "run_id" not in over.user_attrs
    store = Store(searched["home"])
    configs = {r["id"]: store.get_run(r["id"])["config"] for r in store.list_runs(role=STUDENT)}
    assert {"arch": "mlp", "hidden": [64, 64], "dropout": 0.0} not in [c["model"] for c in configs.values()]
    # Counting runs: the distilled students on the search's seed are exactly the trials' own runs
    # (the scratch twins and the best student's second seed are the only other student runs).
    own = {rid for rid, c in configs.items() if c["method"]["name"] != SCRATCH and c["seed"] == 0}
    assert own == {t.user_attrs["run_id"] for t in trials if "run_id" in t.user_attrs}


def test_resume_continues_the_same_study_without_repeating_finished_trials(searched):
    """After the driver was killed and the workers restarted, and after a Stop: the same study
    goes on, its finished trials untouched and never trained again, the interrupted ones
    trained again, eight trials in all."""
    assert searched["stopped"] == studies.STOPPED and len(searched["before"]) >= 3
    study = studies.load(searched["home"], searched["name"])
    store = Store(searched["home"])
    for number, (values, run_id) in searched["before"].items():
        t = study.trials[number]
        assert t.state == TrialState.COMPLETE and t.values == values and t.user_attrs["run_id"] == run_id
        run = store.get_run(run_id)
        assert run["attempts"] == 1 and run["finished"] < searched["crash_time"]  # trained once, before the crash
    for number in searched["left_running"]:  # interrupted by the restart, then followed to their end
        assert study.trials[number].user_attrs["outcome"] in ("complete", "pruned", "abandoned")
    trained = [t for t in study.trials if t.user_attrs.get("outcome") in ("complete", "pruned", "failed")]
    assert len(trained) == 8  # the eight asked for, across the three sessions
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    done_hashes = [r["hash"] for r in store.list_runs(status=DONE, role=STUDENT)]
    assert len(done_hashes) == len(set(done_hashes))


def test_cli_shows_the_search(searched, capsys):
    from distill_core.cli import main

    assert main(["search", "--home", str(searched["home"]), "--show", searched["name"]]) == 0
    out = capsys.readouterr().out
    assert "Best student that fits tiny" in out and "front (" in out and "Distillation helped it by" in out
    assert main(["search", "--home", str(searched["home"]), "--list"]) == 0
    assert "moons" in capsys.readouterr().out


def test_cli_flags_make_a_search():
    from distill_core.cli import build_parser
    from distill_core.search.cli import spec_from_args

    args = build_parser().parse_args([
        "search", "--dataset", "moons", "--data", "noise=0.3", "--teacher", "mlp:hidden=32", "--student", "mlp",
        "--method", "kd", "--budget", '{"size_of": "fp32", "max_bytes": 4096}', "--objective", "params",
        "--objective", "onnx_ms", "--trials", "3", "--time-limit", "2.5", "--no-prune", "--epochs", "2"])
    got = spec_from_args(args)
    assert (got.dataset, got.dataset_knobs, got.teacher) == ("moons", {"noise": "0.3"}, {"arch": "mlp", "hidden": "32"})
    assert got.space == {"students": {"mlp": None}, "methods": ["kd"]} and got.objectives == ["params", "onnx_ms"]
    assert (got.budget, got.trials, got.time_limit, got.prune, got.train) == (
        {"size_of": "fp32", "max_bytes": 4096}, 3, 2.5, False, {"epochs": 2})
    make_plan(got)  # and it checks
    several = spec_from_args(build_parser().parse_args(
        ["search", "--teacher", "random-forest", "--teacher", "onnx:path=t.onnx", "--ensemble", "mean-probabilities"]))
    assert (several.teachers, several.ensemble) == (["random-forest", {"onnx": "t.onnx"}], "mean-probabilities")


def test_search_page_shows_the_finished_search(searched, monkeypatch):
    monkeypatch.setenv("DISTILL_HOME", str(searched["home"]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/search.py").run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    # the candidates rejected before training, as the study records them: the enqueued one, and any
    # other the sampler proposed over the budget (which depends on the order the parallel trials ended)
    rejected = [t for t in studies.load(searched["home"], searched["name"]).trials
                if t.user_attrs.get("outcome") == "rejected"]
    assert len(rejected) >= 1
    assert metrics["state"] == "finished" and metrics["trained"] == "8/8" and metrics["rejected"] == str(len(rejected))
    page = "\n".join(str(e.value) for e in at.success)
    assert "Best student that fits tiny" in page and "(2 seeds)" in page
    assert len(at.get("plotly_chart")) == 2  # trials against the cost with the front, and the curves
    front = at.dataframe[0].value
    assert len(front) == len(report(searched["home"], searched["name"]).front)
    assert [b for b in at.button if b.key == "sr_resume"] == []  # finished: nothing to resume


def test_search_page_says_why_a_search_cannot_start(home, monkeypatch):
    (home / "settings.json").write_text(json.dumps({"autostart": False}))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/search.py").run()
    at.text_input(key="sr_time").set_value("0").run()
    assert any("0 minutes leaves no time" in str(e.value) for e in at.error)
    assert [b for b in at.button if b.key == "sr_start"][0].disabled
    assert studies.summaries(home) == []
