"""The papers' CIFAR presets: they expand with every method and the recipe, and the CIFAR-100
one runs to the end on the CPU through the CLI on a generated archive (a smoke version)."""
from __future__ import annotations

import json

import pytest

from cifar_files import write_archive
from distill_core.cli import main
from distill_core.config import expand
from distill_core.presets import PRESETS, preset_spec

# The smoke run measures nothing heavy: ONNX, int8, latency and the card are tested elsewhere.
LIGHT = {"energy": False, "pt2": False, "onnx": False, "int8": False, "latency": False, "card": False, "budgets": False}


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("c100"), "cifar100", "python", n_train=400, n_test=100)


def test_cifar100_preset_expands_every_method_with_the_recipe(cifar100, home):
    spec = preset_spec("cifar100-resnet32x4-resnet8x4")
    spec.dataset_knobs = {**spec.dataset_knobs, "path": str(cifar100), "subset": 2}
    runs = expand(spec)
    methods = [r.method_name for r in runs if r.role == "student"]
    assert sorted(methods) == sorted(["kd", "dkd", "dist", "logit-std", "at", "fitnets", "scratch"])
    teacher = runs[0]
    assert teacher.role == "teacher" and teacher.model["arch"] == "resnet-cifar" and teacher.model["depth"] == 32
    for r in runs:
        t = r.train
        assert (t["recipe"], t["optimizer"], t["lr"], t["momentum"], t["weight_decay"], t["schedule"], t["augment"],
                t["epochs"], t["batch_size"]) == ("cifar", "sgd", 0.05, 0.9, 5e-4, "multistep", True, 240, 64)
    by = {r.method_name: r.method for r in runs}
    assert by["at"]["beta"] == 2000.0 and by["fitnets"]["weight"] == 100.0 and by["dkd"]["beta"] == 8.0
    published = {p["run"]: p["value"] for p in PRESETS["cifar100-resnet32x4-resnet8x4"]["published"]}
    assert published["teacher"] == 0.7942 and published["kd"] == 0.7333 and published["crd"] == 0.7551


def test_cifar10_preset_expands(tmp_path, home):
    archive = write_archive(tmp_path, "cifar10", "binary", n_train=100, n_test=20)
    spec = preset_spec("cifar10-resnet56-resnet20")
    spec.dataset_knobs = {**spec.dataset_knobs, "path": str(archive)}
    runs = expand(spec)
    assert [(r.role, r.method_name) for r in runs] == [("teacher", "scratch"), ("student", "kd"), ("student", "scratch")]
    assert runs[0].model["depth"] == 56 and runs[1].model["depth"] == 20


def test_cifar100_preset_smoke_run_on_the_cpu(cifar100, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_MEASURE", json.dumps(LIGHT))
    args = ["--home", str(tmp_path / "home"), "run", "--preset", "cifar100-resnet32x4-resnet8x4",
            "--data", f"path={cifar100}", "--data", "subset=2", "--data", "labels=coarse",
            "--epochs", "1", "--method", "kd", "--threads", "1"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    runs = {(r["role"], r["config"]["method"]["name"]): r for r in out["runs"]}
    assert set(runs) == {("teacher", "scratch"), ("student", "kd"), ("student", "scratch")}
    kd = runs[("student", "kd")]["train"]
    assert kd["teacher_forward_per_batch"] and kd["teacher_seconds"] > 0
    assert kd["accel"]["data"] == "uint8 (normalised per batch)" and kd["accel"]["precision"] == "fp32"
    assert runs[("teacher", "scratch")]["params"] == 7_413_300  # resnet32x4 at 20 (coarse) classes
    rows = {r["run"]: r for r in out["published"]}
    assert rows["teacher"]["published"] == "79.42%" and rows["kd"]["measured here"].endswith("%")
    assert rows["dkd"]["measured here"] == "not run" and "not implemented" in rows["crd"]["published on"]
    # the readable table, from the runs now reused
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Published figures" in text and "73.33%" in text and "teacher_fwd_s" in text
