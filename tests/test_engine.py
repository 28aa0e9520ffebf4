import math
from dataclasses import replace

import pytest
import torch

from distill_core import teachers
from distill_core.config import ExperimentSpec, expand
from distill_core.data.cache import load_data
from distill_core.engine import runner
from distill_core.engine.train import train_model
from distill_core.errors import Cancelled, DistillError
from distill_core.evaluate import evaluate_logits, expected_calibration_error
from distill_core.measure.phases import PhaseRecorder
from distill_core.methods import make_method
from distill_core.train_params import train_settings

TINY = {"epochs": 3, "batch_size": 64, "lr": 0.003, "threads": 1}


def tiny_spec(**kw):
    base = dict(dataset="digits", teacher={"arch": "mlp", "hidden": [64]}, students=[{"arch": "mlp", "hidden": [16]}],
                methods=["kd"], temperatures=[4.0], seeds=[0], train=TINY)
    base.update(kw)
    return ExperimentSpec.from_dict(base)


def test_expansion_counts_and_dedup():
    runs = expand(tiny_spec(students=[{"arch": "mlp", "hidden": [16]}, "mlp-small"], methods=["kd", "label-smoothing"],
                            temperatures=[2, 4, 4], seeds=[0, 1]))
    roles = [r.role for r in runs]
    assert roles[0] == "teacher" and roles.count("teacher") == 1
    # per student: kd x 2 temperatures x 2 seeds + label smoothing x 2 seeds + scratch x 2 seeds
    assert len(runs) == 1 + 2 * (4 + 2 + 2)
    assert len({r.hash for r in runs}) == len(runs)
    # threads do not change a run's identity; the seed does
    a, b = runs[1], replace(runs[1], train={**runs[1].train, "threads": 2})
    assert a.hash == b.hash
    assert a.hash != replace(a, seed=99).hash


@pytest.mark.parametrize("bad,match", [
    (dict(dataset="nope"), "unknown data set"),
    (dict(students=[]), "at least one student"),
    (dict(temperatures=[0]), "temperatures: 0.0 is outside"),
    (dict(alphas=[1.5]), "alphas: 1.5 is outside"),
    (dict(methods=["magic"]), "unknown method 'magic'"),
    (dict(train={"epochs": 0}), "epochs must be >= 1"),
    (dict(students=["cnn"], dataset="moons"), "not vector inputs"),
])
def test_bad_experiments_are_refused_before_anything_runs(bad, match):
    with pytest.raises(DistillError, match=match):
        expand(tiny_spec(**bad))


def test_same_seed_same_numbers(home):
    runs = expand(tiny_spec())
    first = [runner.run_one(r) for r in runs]
    import shutil

    shutil.rmtree(home / "teachers")  # retrain the teacher too
    second = [runner.run_one(r) for r in runs]
    for a, b in zip(first, second):
        assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
        assert [h["loss"] for h in a["train"]["history"]] == [h["loss"] for h in b["train"]["history"]]
        assert all(math.isfinite(h["loss"]) for h in a["train"]["history"])


def test_teacher_trained_once_and_logits_computed_once(home, monkeypatch):
    calls = {"train": [], "logits": 0}
    real_train, real_logits = runner.train_model, teachers.all_logits

    def counting_train(model, data, settings, method, **kw):
        calls["train"].append((kw["phase"], kw.get("teacher") is not None))
        return real_train(model, data, settings, method, **kw)

    def counting_logits(*a, **kw):
        calls["logits"] += 1
        return real_logits(*a, **kw)

    monkeypatch.setattr(runner, "train_model", counting_train)  # students
    monkeypatch.setattr(teachers, "train_model", counting_train)  # teachers
    monkeypatch.setattr(teachers, "all_logits", counting_logits)
    runs = expand(tiny_spec(temperatures=[2.0, 4.0]))
    results = [runner.run_one(r) for r in runs]
    assert [c[0] for c in calls["train"]].count("teacher") == 1
    assert calls["logits"] == 1
    # with cached logits and no augmentation the teacher model is not run per batch
    students = [c for c in calls["train"] if c[0] == "student"]
    assert students and all(c[1] is True for c in students)  # teacher passed for the rare uncached case
    assert all(r["teacher_cached"] for r in results[1:])
    # a second sweep neither retrains the teacher nor recomputes its logits
    calls["train"].clear()
    runner.run_one(expand(tiny_spec(temperatures=[8.0]))[1])
    assert [c[0] for c in calls["train"]] == ["student"] and calls["logits"] == 1


def test_cached_logits_mean_the_teacher_is_not_run(home, monkeypatch):
    runs = expand(tiny_spec())
    runner.run_one(runs[0])
    data = load_data(runs[0].dataset)
    got = teachers.obtain(runs[0], teachers.TeacherCache(home), PhaseRecorder())
    assert got.cached
    teacher, logits = got.model, got.logits
    forward_calls = []
    teacher.register_forward_hook(lambda *a: forward_calls.append(1))
    student = teachers.build(runs[1], data)
    train_model(student, data, train_settings(TINY), make_method("kd"), teacher=teacher,
                teacher_logits=logits["train"], seed=0)
    assert forward_calls == []
    train_model(student, data, train_settings({**TINY, "augment": True}), make_method("kd"), teacher=teacher,
                teacher_logits=logits["train"], seed=0)
    assert forward_calls  # augmentation: the teacher sees each augmented batch


def test_cached_soft_targets_train_the_same_student_as_the_logits(home, monkeypatch):
    """With cached logits a KD-loss method trains from soft-target rows made once and a
    closed-form gradient (methods/kd.py); the same run through the logits and autograd ends
    with the same weights and the same curves, within float rounding."""
    from distill_core.methods.base import Method

    runs = expand(tiny_spec())
    runner.run_one(runs[0])
    data = load_data(runs[0].dataset)
    got = teachers.obtain(runs[0], teachers.TeacherCache(home), PhaseRecorder())
    m = make_method("kd", temperature=3.0, alpha=0.8)
    made = []
    real = type(m).soft_targets
    monkeypatch.setattr(type(m), "soft_targets", lambda self, *a: made.append(1) or real(self, *a))
    seen = []  # what each step's loss got of the teacher: (logits given, rows given)
    loss = type(m).loss
    monkeypatch.setattr(type(m), "loss", lambda self, s, t, *a: seen.append((t.logits is not None, t.soft is not None))
                        or loss(self, s, t, *a))
    settings = train_settings({**TINY, "optimizer": "sgd", "lr": 0.05})  # SGD: a gradient off by a factor shows
    results, given = {}, {}
    for path in ("soft", "logits"):
        if path == "logits":
            monkeypatch.setattr(type(m), "soft_targets", Method.soft_targets)
        torch.manual_seed(0)
        student = teachers.build(runs[1], data)
        seen.clear()
        r = train_model(student, data, settings, m, teacher=got.model, teacher_logits=got.logits["train"], seed=0)
        results[path], given[path] = (student.state_dict(), r.history), set(seen)
    assert made == [1]  # once per run, not per step
    # the rows instead of the logits (no batch of logits gathered for nothing), or the logits alone
    assert given == {"soft": {(False, True)}, "logits": {(True, False)}}
    for key, w in results["soft"][0].items():
        torch.testing.assert_close(w, results["logits"][0][key], rtol=0, atol=1e-5)
    for a, b in zip(results["soft"][1], results["logits"][1]):
        for k in ("loss", "soft", "ce"):
            assert a[k] == pytest.approx(b[k], rel=1e-5)
        assert a["val_accuracy"] == b["val_accuracy"]


def test_cancellation_between_steps(home):
    runs = expand(tiny_spec())
    data = load_data(runs[0].dataset)
    model = teachers.build(runs[0], data)
    steps = {"n": 0}

    def stop():
        steps["n"] += 1
        return steps["n"] > 5

    with pytest.raises(Cancelled):
        train_model(model, data, train_settings(TINY), make_method("scratch"), should_stop=stop)
    assert steps["n"] == 6


def test_progress_events_and_early_stopping(home):
    runs = expand(tiny_spec(train={**TINY, "epochs": 40, "patience": 2, "lr": 0.05}))
    data = load_data(runs[0].dataset)
    model = teachers.build(runs[0], data)
    events = []
    res = train_model(model, data, train_settings({**TINY, "epochs": 40, "patience": 2, "lr": 0.05}),
                      make_method("scratch"), on_progress=events.append)
    ends = [e for e in events if e.get("epoch_end")]
    assert len(ends) == len(res.history)
    assert all({"phase", "epoch", "step", "losses", "val_accuracy", "elapsed"} <= set(e) for e in ends)
    assert res.stopped_early and len(res.history) < 40
    assert res.best_val_accuracy == max(h["val_accuracy"] for h in res.history)
    assert res.kept_epoch == res.best_epoch  # early stopping keeps the best epoch's weights
    assert _val(model, data) == res.best_val_accuracy
    plain = train_model(teachers.build(runs[0], data), data, train_settings({**TINY, "epochs": 4}), make_method("scratch"))
    assert plain.kept_epoch == 4  # without early stopping the model ends with the last epoch's weights


def _val(model, data):
    from distill_core.engine.train import _val_accuracy

    return _val_accuracy(model, data.x_val, data.y_val)


def test_metrics_against_hand_computation():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0, 2])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    m = evaluate_logits(logits, y, teacher)
    assert m["accuracy"] == 0.5 and m["errors"] == 2
    assert m["confusion"] == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert m["per_class_accuracy"] == [0.5, 1.0, 0.0]
    assert m["teacher_agreement"] == 0.75
    p = logits.softmax(1)
    assert m["nll"] == pytest.approx(-sum(torch.log(p[i, y[i]]).item() for i in range(4)) / 4, rel=1e-6)
    pt = teacher.softmax(1)
    kl = sum((pt[i] * (pt[i].log() - p[i].log())).sum().item() for i in range(4)) / 4
    assert m["teacher_kl"] == pytest.approx(kl, rel=1e-5)
    assert "top5_accuracy" not in m  # fewer than 10 classes
    # ECE: one bin per sample's confidence; |acc - conf| weighted by bin share
    conf = p.max(1).values
    correct = (p.argmax(1) == y).float()
    ece, table = expected_calibration_error(p, y, bins=15)
    by_bin = {}
    for c, ok in zip(conf.tolist(), correct.tolist()):
        b = min(14, int(c * 15 - 1e-12))
        by_bin.setdefault(b, []).append((c, ok))
    expect = sum(len(v) / 4 * abs(sum(o for _, o in v) / len(v) - sum(c for c, _ in v) / len(v)) for v in by_bin.values())
    assert ece == pytest.approx(expect, abs=1e-6)
    assert sum(row["count"] for row in table) == 4


def test_a_users_file_is_part_of_the_runs_identity(home, tmp_path):
    import numpy as np

    from distill_core.errors import DataError

    def write(shift):
        rng = np.random.default_rng(0)
        rows = ["a,b,label"] + [f"{x + shift:.3f},{y:.3f},{int(x > 0)}" for x, y in rng.normal(size=(90, 2))]
        (tmp_path / "mine.csv").write_text("\n".join(rows))

    write(0.0)
    spec = tiny_spec(dataset="csv", dataset_knobs={"path": str(tmp_path / "mine.csv")},
                     teacher={"arch": "mlp", "hidden": [8]}, students=[{"arch": "mlp", "hidden": [4]}])
    before = expand(spec)
    write(0.5)  # edited in place
    after = expand(spec)
    assert before[0].dataset["sha256"] != after[0].dataset["sha256"]
    assert before[0].hash != after[0].hash  # a new teacher, not the cached one
    with pytest.raises(DataError, match="changed after the experiment was submitted"):
        runner.run_one(before[0])  # submitted before the edit, run after it
    assert runner.run_one(after[0])["metrics"]["accuracy"] > 0


def test_uploaded_teacher_weights_are_checked_against_what_was_submitted(home, tmp_path):
    from distill_core.errors import ModelError
    from distill_core.models import build_model, save_weights

    spec = {"arch": "mlp", "hidden": [16]}
    path = save_weights(build_model(spec, (1, 8, 8), 10), tmp_path / "t.safetensors")
    runs = expand(tiny_spec(teacher={"weights": str(path), "model": spec}))
    assert runs[0].weights["sha256"]
    save_weights(build_model(spec, (1, 8, 8), 10), path)  # replaced by other weights
    with pytest.raises(ModelError, match="changed after the experiment was submitted"):
        runner.run_one(runs[0])
    fresh = expand(tiny_spec(teacher={"weights": str(path), "model": spec}))
    result = runner.run_one(fresh[0])
    assert result["train"] is None and 0 <= result["metrics"]["accuracy"] <= 1
